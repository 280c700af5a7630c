// The operator commands of `reprise`: ls, show, submit, watch, cancel, rerun
// and workers. They
// talk to a coordinator over gRPC like any other client. Every command takes
// --json for scripts; human output is tables with relative times.
import { parseArgs } from "node:util";
import { parseCommandLine } from "./args.js";
import type { ParseArgsConfig } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { toJson } from "@bufbuild/protobuf";
import { Client } from "@reprise/client";
import { ExecutionSchema, ExecutionService, ExecutionState, AttemptState, ListWorkersResponseSchema, RetryRule, createServiceClient } from "@reprise/wire";
import type { Attempt, Execution, RetryPolicy, ServiceClient } from "@reprise/wire";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { ConfigError, parseDurationMs, readPem } from "./config.js";
import { clockTime, duration, paint, relative, stateText, table, terminalStyle } from "./format.js";
import { describePolicy as describeFields } from "./policy-text.js";
import type { Style } from "./format.js";
import { durationToMs, msToDuration, timestampToMs } from "../coordinator/time.js";
import { RULE_NAMES } from "../coordinator/policy.js";
import { stateName } from "../coordinator/snapshot.js";
import { RERUNNABLE_STATES } from "../store/store.js";
import { labelsFromPairs } from "../api/validate.js";

/** Exit codes: 0 ok (and, for submit --wait, succeeded); 1 the execution did not succeed; 2 usage; 3 the call failed. */
export const EXIT = { ok: 0, notSucceeded: 1, usage: 2, callFailed: 3 } as const;

const COMMON = {
  addr: { type: "string" },
  token: { type: "string" },
  "tls-ca": { type: "string" },
  "tls-client-cert": { type: "string" },
  "tls-client-key": { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean" },
} as const satisfies ParseArgsConfig["options"];

const COMMON_HELP = `Common options:
  --addr HOST[:PORT] the coordinator (default 127.0.0.1:50051, or REPRISE_ADDR; port 50051 when none is given)
  --token TOKEN      bearer token when the coordinator requires one (or REPRISE_TOKEN)
  --tls-ca FILE      connect with TLS, trusting this CA (PEM) (or REPRISE_TLS_CA)
  --tls-client-cert FILE, --tls-client-key FILE
                     the certificate and key (PEM) to present to a coordinator that requires one
                     (reprise serve --tls-client-ca) (or REPRISE_TLS_CLIENT_CERT, REPRISE_TLS_CLIENT_KEY)
  --json             machine-readable output (proto3 JSON)
`;

interface Context {
  client: ServiceClient<typeof ExecutionService>;
  /** How to reach the coordinator, for the @reprise/client Client that follows executions. */
  connection: { address: string; credentials: grpc.ChannelCredentials; token: string | undefined };
  metadata: grpc.Metadata;
  style: Style;
  json: boolean;
  out: (text: string) => void;
}

const DEFAULT_PORT = 50051;

/** The address to dial: HOST alone means the coordinator's default port, not the transport's (443). */
export function coordinatorAddress(raw: string): string {
  const trimmed = raw.trim();
  if (/:\d+$/.test(trimmed) && !/^[^\[]*:.*:/.test(trimmed)) return trimmed; // host:port, [v6]:port
  if (/^\[.*\]:\d+$/.test(trimmed)) return trimmed;
  if (/^\[.*\]$/.test(trimmed)) return `${trimmed}:${DEFAULT_PORT}`;
  if (trimmed.includes(":")) return `[${trimmed}]:${DEFAULT_PORT}`; // a bare IPv6 address
  return `${trimmed}:${DEFAULT_PORT}`;
}

/** A copy of a failed call's error with other details. */
function withDetails(error: object, details: string): unknown {
  return Object.assign(Object.create(Object.getPrototypeOf(error) as object) as object, error, { details });
}

/**
 * A call that could not reach the coordinator fails with UNAVAILABLE and the
 * transport's own words, which end in an empty "Resolution note:"; one refused
 * for want of a token says nothing of how to give one. Say what each means
 * instead, and what to do.
 */
function explainCallError(error: unknown, address: string, tls: boolean): unknown {
  if (typeof error !== "object" || error === null) return error;
  const code = (error as { code?: unknown }).code;
  const details = String((error as { details?: unknown }).details ?? "");
  if (code === grpc.status.UNAUTHENTICATED && /token is required/.test(details)) {
    return withDetails(error, `${details}; give one with --token or REPRISE_TOKEN`);
  }
  if (code !== grpc.status.UNAVAILABLE || !/No connection established/.test(details)) return error;
  const lastError = /Last error: (?:Error: )?([^]*?)\.? Resolution note/.exec(details)?.[1]?.trim() ?? "";
  if (/wrong version number|packet length too long/.test(lastError)) {
    return withDetails(error, `the coordinator at ${address} does not serve TLS; leave out --tls-ca and REPRISE_TLS_CA`);
  }
  if (tls && /alert certificate required/i.test(lastError)) {
    return withDetails(error, `the coordinator at ${address} requires a client certificate (reprise serve --tls-client-ca); give --tls-client-cert and --tls-client-key`);
  }
  if (tls && /alert|handshake/i.test(lastError)) {
    return withDetails(error, `the TLS handshake with ${address} failed: ${lastError}`);
  }
  if (tls && /certificate|self.signed|altnames|does not match/i.test(lastError)) {
    return withDetails(error, `the coordinator at ${address} answered with a certificate that --tls-ca does not verify: ${lastError}`);
  }
  if (!tls && /^Failed to connect/.test(lastError)) {
    return withDetails(error, `something at ${address} closed the connection. If the coordinator serves TLS (reprise serve --tls-cert), connect with --tls-ca`);
  }
  const refused = /ECONNREFUSED/.test(lastError);
  const unknownHost = /ENOTFOUND|EAI_AGAIN|Name resolution failed/i.test(details);
  const why = refused ? "connection refused" : unknownHost ? "the host name does not resolve" : "no connection could be made";
  return withDetails(error, `nothing answers at ${address} (${why}). Is the coordinator running there? Start one with: reprise serve --listen ${address}`);
}

type ConnectionValues = { addr?: string; token?: string; "tls-ca"?: string; "tls-client-cert"?: string; "tls-client-key"?: string; json?: boolean };

/** A PEM file given by a flag or, failing that, by its environment variable; errors name whichever was used. */
function pemOption(values: ConnectionValues, flag: "tls-ca" | "tls-client-cert" | "tls-client-key", env: string, kind: "certificate" | "private key"): Buffer | null {
  const path = values[flag] ?? process.env[env];
  return path ? readPem(path, values[flag] === undefined ? env : `--${flag}`, kind) : null;
}

function credentialsOf(values: ConnectionValues): grpc.ChannelCredentials {
  const ca = pemOption(values, "tls-ca", "REPRISE_TLS_CA", "certificate");
  const cert = pemOption(values, "tls-client-cert", "REPRISE_TLS_CLIENT_CERT", "certificate");
  const key = pemOption(values, "tls-client-key", "REPRISE_TLS_CLIENT_KEY", "private key");
  if ((cert === null) !== (key === null)) throw new ConfigError("--tls-client-cert and --tls-client-key: give both or neither");
  if (cert !== null && ca === null) throw new ConfigError("--tls-client-cert: needs --tls-ca, the CA that signed the coordinator's certificate");
  return ca ? grpc.credentials.createSsl(ca, key, cert) : grpc.credentials.createInsecure();
}

function connect(values: ConnectionValues): Context {
  const address = coordinatorAddress(values.addr ?? process.env.REPRISE_ADDR ?? `127.0.0.1:${DEFAULT_PORT}`);
  const credentials = credentialsOf(values);
  const metadata = new grpc.Metadata();
  const token = values.token ?? process.env.REPRISE_TOKEN;
  if (token) metadata.set("authorization", `Bearer ${token}`);
  return {
    client: createServiceClient(ExecutionService, address, credentials),
    connection: { address, credentials, token },
    metadata,
    style: terminalStyle(process.stdout),
    json: values.json ?? false,
    out: (text) => process.stdout.write(text),
  };
}

const ms = (t: Timestamp | undefined) => (t ? timestampToMs(t) : null);

const attemptStateName = (state: AttemptState) => AttemptState[state] ?? String(state);
const isTerminal = (state: ExecutionState) => state !== ExecutionState.PENDING && state !== ExecutionState.RUNNING;
const asJson = (execution: Execution) => toJson(ExecutionSchema, execution);

export function describePolicy(policy: RetryPolicy | undefined): string {
  // A duration left out is null: it may mean a default (docs in policy-text.ts).
  const given = (d: Duration | undefined) => (d ? durationToMs(d) : null);
  const fields = policy && {
    limit: policy.limit,
    unlimited: policy.unlimited,
    backoffMinMs: given(policy.backoffMin),
    backoffMaxMs: given(policy.backoffMax),
    coefficient: policy.backoffCoefficient,
    jitter: policy.jitter,
    maxElapsedMs: given(policy.maxElapsed) ?? 0,
  };
  return describeFields(fields, duration);
}

function failureText(attempt: Attempt | Execution): string {
  const failure = attempt.failure;
  if (!failure) return "";
  return failure.message ? `${failure.type}: ${failure.message.split("\n")[0]}` : failure.type;
}

/** Why a pending execution waits after its last attempt: the rule that set the time, or "re-run" when that attempt had ended it. */
function waitRule(last: Attempt): string | undefined {
  if (last.retryRule === RetryRule.UNSPECIFIED) return undefined;
  return last.retryAt !== undefined ? RULE_NAMES[last.retryRule] : "re-run";
}

/**
 * What followed attempt i, and which rule decided it: the delay and its rule
 * (backoff, retry_after, snooze, budget), or why no retry followed (no retries
 * left, non-retryable, max_elapsed), then a cancellation or a re-run that
 * came after.
 */
export function retryNote(execution: Execution, i: number, now: number): string {
  const attempt = execution.attempts[i]!;
  if (attempt.state === AttemptState.RUNNING || attempt.state === AttemptState.SUCCEEDED || attempt.state === AttemptState.CANCELLED) return "";
  const next = execution.attempts[i + 1];
  const last = next === undefined;
  const finished = ms(attempt.finishedAt)!;
  const policy = describePolicy(attempt.retryPolicy);
  const retryAt = ms(attempt.retryAt);
  let note: string;
  let scheduled: boolean;
  switch (attempt.retryRule) {
    case RetryRule.SNOOZE:
      note = `snoozed; due again after ${duration(retryAt! - finished)} (snooze)`;
      scheduled = true;
      break;
    case RetryRule.BACKOFF:
    case RetryRule.RETRY_AFTER:
      note = `${last && execution.state === ExecutionState.PENDING ? "retrying" : "retried"} after ${duration(retryAt! - finished)} (${RULE_NAMES[attempt.retryRule]}; ${policy})`;
      scheduled = true;
      break;
    case RetryRule.BUDGET: {
      const computed = ms(attempt.retryComputedAt)!;
      note = `retry deferred by the task's retry budget: after ${duration(retryAt! - finished)}, not ${duration(computed - finished)} (budget; ${policy})`;
      scheduled = true;
      break;
    }
    case RetryRule.MAX_ELAPSED:
      note = `no retry: it would start past max_elapsed (max_elapsed; ${policy})`;
      scheduled = false;
      break;
    case RetryRule.NON_RETRYABLE:
      note = `non-retryable; ended (${policy})`;
      scheduled = false;
      break;
    case RetryRule.LIMIT:
      note = `retryable; no retries left (${policy})`;
      scheduled = false;
      break;
    default: {
      // Recorded before rules were kept: read it from what followed.
      const retryable = !(attempt.state === AttemptState.FAILED && attempt.failure?.nonRetryable);
      const nextAt = next ? ms(next.scheduledAt) : execution.state === ExecutionState.PENDING ? ms(execution.nextAttemptAt) : null;
      scheduled = retryable && (nextAt !== null || (last && execution.state === ExecutionState.CANCELLED));
      if (!retryable) note = `non-retryable; ended (${policy})`;
      else if (nextAt !== null) note = `retryable; retried after ${duration(nextAt - finished)} (${policy})`;
      else note = scheduled ? `retryable (${policy})` : `retryable; no retries left (${policy})`;
    }
  }
  if (last && execution.state === ExecutionState.CANCELLED && scheduled) {
    const when = retryAt ?? ms(execution.finishedAt)!;
    return `${note}; cancelled before it ran${retryAt !== null ? ` (it was due ${relative(when, now)})` : ""}`;
  }
  if (next !== undefined && !scheduled) return `${note}; then re-run`;
  return note;
}

export function renderExecution(execution: Execution, style: Style, now: number): string {
  const created = ms(execution.createdAt)!;
  const lines = [
    `${paint(style, "bold", execution.id)}  ${execution.task}  ${stateText(style, stateName(execution.state))}`,
    `created   ${clockTime(created)} (${relative(created, now)})`,
  ];
  const finished = ms(execution.finishedAt);
  if (finished !== null) lines.push(`finished  ${clockTime(finished)} (${relative(finished, now)}), after ${duration(finished - created)}`);
  const next = ms(execution.nextAttemptAt);
  if (next !== null) lines.push(`next      attempt ${execution.attempts.length + 1} ${relative(next, now)} (${clockTime(next)})`);
  lines.push(`policy    ${describePolicy(execution.retryPolicy)}`);
  if (execution.idempotencyKey) lines.push(`key       ${execution.idempotencyKey}`);
  const labels = Object.entries(execution.labels);
  if (labels.length > 0) lines.push(`labels    ${labels.map(([k, v]) => `${k}=${v}`).join(" ")}`);
  if (execution.arguments && execution.arguments.data.length > 0) lines.push(`arguments ${payloadText(execution.arguments)}`);
  if (execution.result) lines.push(`result    ${payloadText(execution.result)}`);
  if (execution.failure) lines.push(`failure   ${paint(style, "red", failureText(execution))}`);
  let text = lines.join("\n") + "\n";
  if (execution.attempts.length > 0) {
    const rows = execution.attempts.map((attempt, i) => {
      const started = ms(attempt.startedAt)!;
      const ended = ms(attempt.finishedAt);
      return [
        String(attempt.number),
        stateText(style, attemptStateName(attempt.state)),
        attempt.workerId,
        `${clockTime(started)} (${relative(started, now)})`,
        ended === null ? `${duration(now - started)} so far` : duration(ended - started),
        failureText(attempt),
        retryNote(execution, i, now),
      ];
    });
    text += "\n" + table(style, ["#", "STATE", "WORKER", "STARTED", "DURATION", "ERROR", "THEN"], rows);
  }
  return text;
}

function payloadText(payload: { data: Uint8Array; contentType: string }): string {
  const text = new TextDecoder().decode(payload.data);
  const shown = payload.contentType === "application/json" || /^[\x20-\x7e\s]*$/.test(text) ? text : `<${payload.data.length} bytes ${payload.contentType}>`;
  return shown.length > 200 ? `${shown.slice(0, 200)}…` : shown;
}

// ---- commands --------------------------------------------------------------

async function ls(args: string[]): Promise<number> {
  const { values } = parseCommandLine({
    args,
    options: {
      ...COMMON,
      task: { type: "string" },
      state: { type: "string" },
      label: { type: "string", multiple: true },
      limit: { type: "string" },
      retrying: { type: "boolean" },
    },
  });
  if (values.help) {
    process.stdout.write(`Usage: reprise ls [--task T] [--state S] [--label k=v]... [--retrying] [--limit N]\n\nLists executions, newest first.\n  --state S      pending, running, succeeded, failed, abandoned, timed_out or cancelled\n  --label k=v    only executions submitted with this label (repeatable: all of them)\n  --retrying     only executions waiting for a retry or a snooze (pending after an attempt),\n                 soonest first, with the rule that set the time: backoff, retry_after, snooze, budget or re-run\n  --limit N      at most N rows (default 50)\n\n${COMMON_HELP}`);
    return EXIT.ok;
  }
  const limit = values.limit === undefined ? 50 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new ConfigError("--limit: must be a whole number from 1 to 1000");
  let state = ExecutionState.UNSPECIFIED;
  if (values.state !== undefined) {
    state = ExecutionState[values.state.toUpperCase() as keyof typeof ExecutionState] as ExecutionState;
    if (state === undefined || values.state.toUpperCase() === "UNSPECIFIED") throw new ConfigError(`--state: unknown state ${JSON.stringify(values.state)}`);
  }
  if (values.retrying) {
    if (state !== ExecutionState.UNSPECIFIED && state !== ExecutionState.PENDING) throw new ConfigError("--retrying lists PENDING executions; leave out --state");
    state = ExecutionState.PENDING;
  }
  const labels = labelOptions(values.label);
  const c = connect(values);
  try {
    let executions: Execution[] = [];
    let pageToken = "";
    // Pages can come back short (a list of SUCCEEDED or by label reads a
    // bounded window per page), so read until there are enough. --retrying
    // filters and orders on the client, so it reads every PENDING execution
    // (up to 100 pages) to find the soonest.
    // On a terminal, a long read of PENDING executions shows how far it has got.
    const progress = values.retrying && process.stderr.isTTY ? (read: number) => process.stderr.write(`\rreading PENDING executions: ${read}`) : null;
    let read = 0;
    for (let page = 0; page < 100; page++) {
      const pageSize = values.retrying ? 1000 : limit - executions.length;
      const reply = await c.client.listExecutions({ task: values.task ?? "", state, labels, pageSize, pageToken }, { metadata: c.metadata });
      executions.push(...(values.retrying ? reply.executions.filter((e) => e.attempts.length > 0) : reply.executions));
      pageToken = reply.nextPageToken;
      if (pageToken === "" || (!values.retrying && executions.length >= limit)) break;
      read += reply.executions.length;
      progress?.(read);
    }
    if (progress && read > 0) process.stderr.write("\r\x1b[K");
    if (values.retrying) executions.sort((a, b) => (ms(a.nextAttemptAt) ?? 0) - (ms(b.nextAttemptAt) ?? 0));
    executions = executions.slice(0, limit);
    if (c.json) {
      c.out(JSON.stringify(executions.map(asJson), null, 2) + "\n");
      return EXIT.ok;
    }
    const now = Date.now();
    const rows = executions.map((e) => {
      const next = ms(e.nextAttemptAt);
      const finished = ms(e.finishedAt);
      const last = e.attempts.at(-1);
      const rule = next !== null && last !== undefined ? waitRule(last) : undefined;
      const when =
        next !== null
          ? `next ${relative(next, now)}${rule ? ` (${rule})` : ""}`
          : finished !== null
            ? `ended ${relative(finished, now)}`
            : e.state === ExecutionState.RUNNING
              ? "running"
              : "";
      return [e.id, e.task, stateText(c.style, stateName(e.state)), String(e.attempts.length), when, duration(now - ms(e.createdAt)!), last ? failureText(last) : ""];
    });
    c.out(executions.length === 0 ? "no executions\n" : table(c.style, ["ID", "TASK", "STATE", "ATTEMPTS", "NEXT / ENDED", "AGE", "LAST ERROR"], rows));
    await warnWaitingWithoutWorkers(c, values.task);
    return EXIT.ok;
  } finally {
    c.client.raw.close();
  }
}

/** Repeated --label key=value options as a map. */
function labelOptions(options: string[] | undefined): Record<string, string> {
  return labelsFromPairs(options ?? [], "key=value", (problem) => new ConfigError(`--label: ${problem}`));
}

function requireId(positionals: string[], command: string): string {
  if (positionals.length !== 1) throw new ConfigError(`${command}: give exactly one execution id, for example: reprise ${command} 0b7e…`);
  return positionals[0]!;
}

async function show(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine({ args, options: COMMON, allowPositionals: true });
  if (values.help) {
    process.stdout.write(`Usage: reprise show ID\n\nShows an execution and its attempt timeline: each attempt's state, worker, start,\nduration, error, whether it was retryable, and the delay and policy that followed.\n\n${COMMON_HELP}`);
    return EXIT.ok;
  }
  const id = requireId(positionals, "show");
  const c = connect(values);
  try {
    const { execution } = await c.client.getExecution({ executionId: id }, { metadata: c.metadata });
    c.out(c.json ? JSON.stringify(asJson(execution!), null, 2) + "\n" : renderExecution(execution!, c.style, Date.now()));
    return EXIT.ok;
  } finally {
    c.client.raw.close();
  }
}

async function cancel(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine({ args, options: COMMON, allowPositionals: true });
  if (values.help) {
    process.stdout.write(`Usage: reprise cancel ID\n\nCancels an execution: a pending one never runs; a running one is told to stop at its\nnext heartbeat. An ended execution is left as it is.\n\n${COMMON_HELP}`);
    return EXIT.ok;
  }
  const id = requireId(positionals, "cancel");
  const c = connect(values);
  try {
    const { execution } = await c.client.cancelExecution({ executionId: id }, { metadata: c.metadata });
    c.out(c.json ? JSON.stringify(asJson(execution!), null, 2) + "\n" : `${execution!.id}  ${stateText(c.style, stateName(execution!.state))}\n`);
    return EXIT.ok;
  } finally {
    c.client.raw.close();
  }
}

/** The --state values of rerun: failed, abandoned, timed_out and cancelled. */
const RERUNNABLE = RERUNNABLE_STATES.map((state) => stateName(state).toLowerCase());
/** Re-runs in flight at once during `rerun --state`. */
const RERUN_CONCURRENCY = 16;
/** The most executions one `rerun --state` lists. */
const RERUN_MAX = 100_000;

async function rerun(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine({
    args,
    options: { ...COMMON, task: { type: "string" }, state: { type: "string" }, since: { type: "string" }, rate: { type: "string" }, yes: { type: "boolean", short: "y" } },
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(`Usage: reprise rerun ID
       reprise rerun --state S [--task T] [--since D] [--rate N] [--yes]

Runs executions that ended FAILED, ABANDONED, TIMED_OUT or CANCELLED again. Each keeps
its id, its attempts and its idempotency key; its next attempt is due at once and its
retry limit counts afresh.
  ID             re-run this one execution
  --state S      re-run every execution in state S: failed, abandoned, timed_out or cancelled
  --task T       only executions of task T
  --since D      only those that ended in the last D: 30m, 1h, 2d (seconds when bare)
  --rate N       at most N re-runs a second, so that the work they start comes back gradually
                 (default: as fast as the coordinator answers)
  --yes, -y      do not ask; without it, rerun --state says how many it will re-run and asks

${COMMON_HELP}`);
    return EXIT.ok;
  }
  const many = values.state !== undefined || values.task !== undefined || values.since !== undefined || values.rate !== undefined;
  if (positionals.length > 0 && many) throw new ConfigError("rerun: give either one execution id or --state (with --task, --since and --rate), not both");
  if (positionals.length === 0 && values.state === undefined) {
    throw new ConfigError("rerun: give an execution id, or --state to re-run many, for example: reprise rerun --task charge_card --state failed --since 1h");
  }
  if (positionals.length > 0) {
    const id = requireId(positionals, "rerun");
    const c = connect(values);
    try {
      const { execution } = await c.client.rerunExecution({ executionId: id }, { metadata: c.metadata });
      c.out(c.json ? JSON.stringify(asJson(execution!), null, 2) + "\n" : `${execution!.id}  ${stateText(c.style, stateName(execution!.state))}  attempt ${execution!.attempts.length + 1} due now\n`);
      return EXIT.ok;
    } finally {
      c.client.raw.close();
    }
  }
  const stateFlag = values.state!.toLowerCase();
  if (!RERUNNABLE.includes(stateFlag)) throw new ConfigError(`--state: must be one of ${RERUNNABLE.join(", ")}; got ${JSON.stringify(values.state)}`);
  const state = ExecutionState[stateFlag.toUpperCase() as keyof typeof ExecutionState] as ExecutionState;
  const sinceMs = values.since === undefined ? null : secondsOrDuration(values.since);
  if (sinceMs === null && values.since !== undefined) throw new ConfigError(`--since: must be seconds or a duration with a unit, such as 30m, 1h or 2d; got ${JSON.stringify(values.since)}`);
  const rate = values.rate === undefined ? Infinity : Number(values.rate);
  if (!(rate > 0)) throw new ConfigError(`--rate: must be a positive number of re-runs a second; got ${JSON.stringify(values.rate)}`);
  const c = connect(values);
  const say = (text: string) => process.stderr.write(text);
  try {
    const cutoff = sinceMs === null ? null : Date.now() - sinceMs;
    const ids: string[] = [];
    let pageToken = "";
    let listed = 0;
    let lastProgress = Date.now();
    do {
      const reply = await c.client.listExecutions({ task: values.task ?? "", state, pageSize: 1000, pageToken }, { metadata: c.metadata });
      for (const e of reply.executions) if (cutoff === null || (ms(e.finishedAt) ?? 0) >= cutoff) ids.push(e.id);
      listed += reply.executions.length;
      pageToken = reply.nextPageToken;
      if (Date.now() - lastProgress > 1000 && !c.json) {
        say(`listed ${listed.toLocaleString("en")} ${stateName(state)} executions so far …\n`);
        lastProgress = Date.now();
      }
    } while (pageToken !== "" && ids.length < RERUN_MAX);
    if (ids.length >= RERUN_MAX) {
      ids.length = RERUN_MAX;
      say(`reprise: more than ${RERUN_MAX.toLocaleString("en")} match; this run re-runs the newest ${RERUN_MAX.toLocaleString("en")}, run it again for the rest\n`);
    }
    const what = `${stateName(state)} execution${ids.length === 1 ? "" : "s"}${values.task ? ` of ${values.task}` : ""}${values.since ? ` that ended in the last ${values.since}` : ""}`;
    if (ids.length === 0) {
      c.out(c.json ? JSON.stringify({ rerun: [], skipped: [], failed: [] }) + "\n" : `no ${what}; nothing to re-run\n`);
      return EXIT.ok;
    }
    if (!values.yes) {
      if (!process.stdin.isTTY) throw new ConfigError(`rerun: ${ids.length.toLocaleString("en")} ${what} would be re-run; add --yes to confirm (there is no terminal to ask on)`);
      const { createInterface } = await import("node:readline/promises");
      const prompt = createInterface({ input: process.stdin, output: process.stderr });
      const answer = await prompt.question(`Re-run ${ids.length.toLocaleString("en")} ${what}? [y/N] `).finally(() => prompt.close());
      if (!/^y(es)?$/i.test(answer.trim())) {
        say("nothing re-run\n");
        return EXIT.ok;
      }
    } else if (!c.json) {
      say(`re-running ${ids.length.toLocaleString("en")} ${what}\n`);
    }
    const done: string[] = [];
    const skipped: { id: string; reason: string }[] = [];
    const failed: { id: string; reason: string }[] = [];
    let next = 0;
    lastProgress = Date.now();
    const began = Date.now();
    await Promise.all(
      Array.from({ length: Math.min(RERUN_CONCURRENCY, ids.length) }, async () => {
        while (next < ids.length) {
          const index = next++;
          const id = ids[index]!;
          // With --rate, re-run k goes out k/rate seconds after the first.
          const wait = began + (index / rate) * 1000 - Date.now();
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
          try {
            await c.client.rerunExecution({ executionId: id }, { metadata: c.metadata });
            done.push(id);
          } catch (error) {
            const code = (error as { code?: number }).code;
            const reason = String((error as { details?: string }).details ?? error);
            // Re-run or changed by someone else since it was listed.
            if (code === grpc.status.FAILED_PRECONDITION || code === grpc.status.NOT_FOUND) skipped.push({ id, reason });
            else failed.push({ id, reason });
          }
          if (Date.now() - lastProgress > 1000 && !c.json) {
            say(`re-ran ${done.length.toLocaleString("en")} of ${ids.length.toLocaleString("en")} …\n`);
            lastProgress = Date.now();
          }
        }
      }),
    );
    if (c.json) c.out(JSON.stringify({ rerun: done, skipped, failed }, null, 2) + "\n");
    else {
      c.out(`re-ran ${done.length.toLocaleString("en")} of ${ids.length.toLocaleString("en")} ${what}\n`);
      if (skipped.length > 0) c.out(`skipped ${skipped.length.toLocaleString("en")} that changed since they were listed (for example ${skipped[0]!.id}: ${skipped[0]!.reason})\n`);
      if (failed.length > 0) say(`reprise: ${failed.length.toLocaleString("en")} could not be re-run, for example ${failed[0]!.id}: ${failed[0]!.reason}\n`);
    }
    return failed.length > 0 ? EXIT.callFailed : EXIT.ok;
  } finally {
    c.client.raw.close();
  }
}

/** One line per change between two snapshots, as `submit --wait` and `watch` print them. */
export function progressLines(previous: Execution | undefined, current: Execution, style: Style, now: number): string[] {
  const lines: string[] = [];
  for (const attempt of current.attempts) {
    const before = previous?.attempts.find((a) => a.number === attempt.number);
    if (!before) lines.push(`attempt ${attempt.number} started on ${attempt.workerId || "a worker"}`);
    if (attempt.state !== AttemptState.RUNNING && (!before || before.state === AttemptState.RUNNING)) {
      const what = attemptStateName(attempt.state).toLowerCase().replace("_", " ");
      const color = attempt.state === AttemptState.SUCCEEDED ? "green" : attempt.state === AttemptState.SNOOZED ? "yellow" : "red";
      let line = `attempt ${attempt.number} ${paint(style, color, what)}`;
      if (attempt.failure) line += `: ${failureText(attempt)}`;
      const next = ms(current.nextAttemptAt);
      const finished = ms(attempt.finishedAt);
      if (current.state === ExecutionState.PENDING && next !== null && finished !== null && attempt.number === current.attempts.length) {
        const rule = waitRule(attempt);
        if (rule === "re-run") line += `; re-run, due ${relative(next, now)}`;
        else {
          const verb = attempt.state === AttemptState.SNOOZED ? "due again" : "retrying";
          line += `; ${verb} in ${duration(next - finished)} (${relative(next, now)}${rule && rule !== "snooze" ? `, ${rule}` : ""})`;
        }
      }
      lines.push(line);
    }
  }
  if (isTerminal(current.state) && (!previous || !isTerminal(previous.state))) {
    lines.push(`execution ${stateText(style, stateName(current.state))} after ${current.attempts.length} ${current.attempts.length === 1 ? "attempt" : "attempts"}`);
  }
  return lines;
}

/** Follows an execution to its end (the client re-attaches if the coordinator restarts). Returns the final snapshot. */
async function follow(c: Context, id: string, onSnapshot: (e: Execution) => void): Promise<Execution> {
  const say = (message: string) => process.stderr.write(`reprise: ${message}\n`);
  const client = new Client({ ...c.connection, logger: { debug() {}, info() {}, warn: say, error: say } });
  try {
    let last: Execution | undefined;
    for await (const snapshot of client.execution(id).watch()) {
      last = snapshot;
      onSnapshot(snapshot);
    }
    return last!;
  } finally {
    client.close();
  }
}

async function watch(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine({ args, options: COMMON, allowPositionals: true });
  if (values.help) {
    process.stdout.write(`Usage: reprise watch ID\n\nPrints every change of an execution until it ends (with --json, one snapshot per line).\nExits 0 when it succeeds and 1 otherwise.\n\n${COMMON_HELP}`);
    return EXIT.ok;
  }
  const id = requireId(positionals, "watch");
  const c = connect(values);
  try {
    // One plain call first: a coordinator that is not there, or an unknown id,
    // fails at once instead of being waited for by the re-attaching watch.
    await c.client.getExecution({ executionId: id }, { metadata: c.metadata });
    let previous: Execution | undefined;
    const final = await follow(c, id, (e) => {
      if (c.json) c.out(JSON.stringify(asJson(e)) + "\n");
      else for (const line of progressLines(previous, e, c.style, Date.now())) c.out(line + "\n");
      previous = e;
    });
    return final.state === ExecutionState.SUCCEEDED ? EXIT.ok : EXIT.notSucceeded;
  } finally {
    c.client.raw.close();
  }
}

/** "300" (seconds, as the clients count), or with a unit: "250ms", "30s", "5m", "1h", "2d". Milliseconds, or null when malformed. */
export const secondsOrDuration = (raw: string): number | null => parseDurationMs(raw, "s");

/** How long `submit --wait` waits for a first attempt before it says that no worker may serve the task. */
const NO_WORKER_WARNING_MS = 5000;

/**
 * Says on stderr which tasks (of `task` only, when given) have executions due
 * and no worker seen for them in the last minute, as Temporal's "no pollers".
 */
async function warnWaitingWithoutWorkers(c: Context, task: string | undefined): Promise<void> {
  const { tasks } = await c.client.listTasks({}, { metadata: c.metadata });
  const now = Date.now();
  for (const t of tasks) {
    if (!t.noWorker || (task !== undefined && t.name !== task)) continue;
    const due = t.due > 10_000n ? "more than 10,000 executions are" : t.due === 1n ? "1 execution is" : `${t.due} executions are`;
    const seen = t.workerLastSeenAt ? `last seen ${relative(timestampToMs(t.workerLastSeenAt), now)}` : "none seen in the last 7 days";
    process.stderr.write(`reprise: warning: ${due} due for ${t.name}, and no worker is taking them (${seen}); is a worker for ${t.name} running?\n`);
  }
}

/** Says on stderr who, if anyone, has served `task`: submit --wait when the first attempt does not come. */
async function warnNoWorker(c: Context, task: string): Promise<void> {
  const { workers } = await c.client.listWorkers({ task }, { metadata: c.metadata });
  const now = Date.now();
  const last = workers[0];
  const seen = last?.lastSeenAt ? timestampToMs(last.lastSeenAt) : null;
  process.stderr.write(
    last === undefined || seen === null
      ? `reprise: warning: no worker has declared or asked for work of ${task} in the last 7 days; is a worker for it running?\n`
      : `reprise: warning: no attempt yet; a worker last asked for work of ${task} ${relative(seen, now)} (${last.id})${now - seen > 60_000 ? "; is it still running?" : "; it may be busy"}\n`,
  );
}

interface PolicyFlags {
  retries?: string;
  backoff?: string;
  coefficient?: string;
  jitter?: string;
  "max-elapsed"?: string;
}

function retryPolicy(flags: PolicyFlags): RetryPolicy | undefined {
  const { retries, backoff } = flags;
  if (retries === undefined) {
    for (const flag of ["backoff", "coefficient", "jitter", "max-elapsed"] as const) {
      if (flags[flag] !== undefined) throw new ConfigError(`--${flag}: needs --retries`);
    }
    return undefined;
  }
  const unlimited = retries === "true";
  const limit = unlimited ? 0 : Number(retries);
  if (!unlimited && (!/^\d+$/.test(retries) || limit > 10_000)) throw new ConfigError(`--retries: must be a whole number from 0 to 10000, or "true"; got ${JSON.stringify(retries)}`);
  let rangeMs: [number, number] | undefined;
  if (backoff !== undefined) {
    const parts = backoff.split(",").map(secondsOrDuration);
    if (parts.length !== 2 || parts.some((p) => p === null) || parts[0]! > parts[1]!) {
      throw new ConfigError(`--backoff: must be MIN,MAX with MIN <= MAX, in seconds or with units, for example 300,600 or 5m,10m; got ${JSON.stringify(backoff)}`);
    }
    rangeMs = parts as [number, number];
  } else if (unlimited) {
    rangeMs = [1000, 60_000];
  }
  const coefficient = flags.coefficient === undefined ? 0 : Number(flags.coefficient);
  if (flags.coefficient !== undefined && (!Number.isFinite(coefficient) || coefficient < 1 || flags.coefficient.trim() === "")) {
    throw new ConfigError(`--coefficient: must be a number of at least 1, such as 2; got ${JSON.stringify(flags.coefficient)}`);
  }
  const jitter = flags.jitter === undefined ? 0 : Number(flags.jitter);
  if (flags.jitter !== undefined && (!Number.isFinite(jitter) || jitter < 0 || jitter > 1 || flags.jitter.trim() === "")) {
    throw new ConfigError(`--jitter: must be a fraction from 0 to 1, such as 0.5; got ${JSON.stringify(flags.jitter)}`);
  }
  const maxElapsedMs = flags["max-elapsed"] === undefined ? 0 : secondsOrDuration(flags["max-elapsed"]);
  if (maxElapsedMs === null) throw new ConfigError(`--max-elapsed: must be seconds or a duration with a unit, such as 3600, 90m or 1d; got ${JSON.stringify(flags["max-elapsed"])}`);
  return {
    $typeName: "reprise.v1.RetryPolicy",
    limit,
    unlimited,
    backoffMin: rangeMs ? msToDuration(rangeMs[0]) : undefined,
    backoffMax: rangeMs ? msToDuration(rangeMs[1]) : undefined,
    backoffCoefficient: coefficient,
    jitter,
    maxElapsed: maxElapsedMs > 0 ? msToDuration(maxElapsedMs) : undefined,
  };
}

async function submit(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine({
    args,
    options: {
      ...COMMON,
      args: { type: "string" },
      retries: { type: "string" },
      backoff: { type: "string" },
      coefficient: { type: "string" },
      jitter: { type: "string" },
      "max-elapsed": { type: "string" },
      delay: { type: "string" },
      key: { type: "string" },
      label: { type: "string", multiple: true },
      wait: { type: "boolean" },
    },
    allowPositionals: true,
  });
  if (values.help) {
    process.stdout.write(`Usage: reprise submit TASK [--args JSON] [--retries N|true] [--backoff MIN,MAX]
                     [--coefficient C] [--jitter J] [--max-elapsed D] [--delay D]
                     [--key K] [--label k=v]... [--wait]

Submits an execution of TASK and prints its id.
  --args JSON        the arguments, as JSON (default null)
  --retries N|true   N retries, or unlimited; without it the task's declared policy applies
  --backoff MIN,MAX  the delay before the first and the last retry (random within for unlimited);
                     seconds, or with a unit: 300,600 or 5m,10m
  --coefficient C    exponential backoff: retry k waits min(MAX, MIN × C^(k−1)); C ≥ 1
  --jitter J         draw each delay d uniformly from [d × (1 − J), d]; J from 0 to 1
  --max-elapsed D    schedule no retry that would start more than D after the first attempt
  --delay D          how long before the first attempt may start: seconds, or 250ms, 5m, 1h
  --key K            idempotency key: a repeat returns the existing execution
  --label k=v        a label (repeatable)
  --wait             follow it through every retry, print the result, and exit 0 only if it succeeded

${COMMON_HELP}`);
    return EXIT.ok;
  }
  if (positionals.length !== 1) throw new ConfigError("submit: give exactly one task name, for example: reprise submit send_email --args '{\"to\":\"ops\"}'");
  const raw = values.args ?? "null";
  try {
    JSON.parse(raw);
  } catch {
    throw new ConfigError(`--args: not valid JSON: ${raw}`);
  }
  const delayMs = values.delay === undefined ? 0 : secondsOrDuration(values.delay);
  if (delayMs === null) throw new ConfigError(`--delay: must be seconds or a duration with a unit, such as 90, 250ms, 5m or 1h; got ${JSON.stringify(values.delay)}`);
  const labels = labelOptions(values.label);
  const c = connect(values);
  try {
    const reply = await c.client.submit(
      {
        task: positionals[0]!,
        arguments: { data: new TextEncoder().encode(raw), contentType: "application/json" },
        retryPolicy: retryPolicy(values),
        idempotencyKey: values.key ?? "",
        delay: delayMs > 0 ? msToDuration(delayMs) : undefined,
        labels,
      },
      { metadata: c.metadata },
    );
    const execution = reply.execution!;
    if (!values.wait) {
      c.out(c.json ? JSON.stringify(asJson(execution), null, 2) + "\n" : `${execution.id}${reply.existing ? "  (existing: the key matched)" : ""}\n`);
      return EXIT.ok;
    }
    if (!c.json) process.stderr.write(`submitted ${execution.id}\n`);
    let previous: Execution | undefined;
    const nobody = setTimeout(() => {
      if (previous?.state === ExecutionState.PENDING && previous.attempts.length === 0 && ms(previous.nextAttemptAt)! <= Date.now()) {
        void warnNoWorker(c, execution.task).catch(() => undefined);
      }
    }, NO_WORKER_WARNING_MS);
    const final = await follow(c, execution.id, (e) => {
      if (!c.json) for (const line of progressLines(previous, e, c.style, Date.now())) process.stderr.write(line + "\n");
      previous = e;
    }).finally(() => clearTimeout(nobody));
    if (c.json) c.out(JSON.stringify(asJson(final), null, 2) + "\n");
    else if (final.result) c.out(new TextDecoder().decode(final.result.data) + "\n");
    return final.state === ExecutionState.SUCCEEDED ? EXIT.ok : EXIT.notSucceeded;
  } finally {
    c.client.raw.close();
  }
}

async function workers(args: string[]): Promise<number> {
  const { values } = parseCommandLine({ args, options: { ...COMMON, task: { type: "string" } } });
  if (values.help) {
    process.stdout.write(`Usage: reprise workers [--task T]\n\nLists the workers seen in the last 7 days, most recently seen first, with the tasks\neach declared or asked for work of.\n  --task T       only the workers of task T\n\n${COMMON_HELP}`);
    return EXIT.ok;
  }
  const c = connect(values);
  try {
    const reply = await c.client.listWorkers({ task: values.task ?? "" }, { metadata: c.metadata });
    if (c.json) {
      c.out(JSON.stringify(toJson(ListWorkersResponseSchema, reply), null, 2) + "\n");
      return EXIT.ok;
    }
    if (reply.workers.length === 0) {
      c.out(values.task === undefined ? "no worker seen in the last 7 days\n" : `no worker of ${values.task} seen in the last 7 days\n`);
      return EXIT.ok;
    }
    const now = Date.now();
    c.out(table(c.style, ["WORKER", "LAST SEEN", "TASKS"], reply.workers.map((w) => [w.id, relative(ms(w.lastSeenAt)!, now), w.tasks.join(", ")])));
    return EXIT.ok;
  } finally {
    c.client.raw.close();
  }
}

/** Runs a command, explaining a coordinator that cannot be reached or wants a token. */
const explained =
  (command: (args: string[]) => Promise<number>) =>
  (args: string[]): Promise<number> => {
    // Deprecation warnings are for the developers of the code that triggers
    // them, not for an operator: grpc-js gives Node an IP address as the TLS
    // server name, and Node warns about it (DEP0123) on every connection.
    process.noDeprecation = true;
    return command(args).catch((error: unknown) => {
      const { values } = parseArgs({ args, options: { addr: { type: "string" }, "tls-ca": { type: "string" } }, strict: false });
      const address = coordinatorAddress(String(values.addr ?? process.env.REPRISE_ADDR ?? `127.0.0.1:${DEFAULT_PORT}`));
      throw explainCallError(error, address, !!(values["tls-ca"] ?? process.env.REPRISE_TLS_CA));
    });
  };

export const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  ls: explained(ls),
  show: explained(show),
  submit: explained(submit),
  watch: explained(watch),
  cancel: explained(cancel),
  rerun: explained(rerun),
  workers: explained(workers),
};

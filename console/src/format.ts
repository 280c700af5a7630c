// How the console writes times, durations, states and payloads.
import type { Attempt, Execution, Failure, Payload, RetryPolicy } from "./api.js";
import { describePolicy as describeFields } from "../../server/operator/policy-text.js";

export const ms = (timestamp: string | undefined): number | null => (timestamp === undefined ? null : Date.parse(timestamp));

/** A state's short name: "EXECUTION_STATE_TIMED_OUT" is "TIMED_OUT". */
export const shortState = (state: string) => state.replace(/^(EXECUTION|ATTEMPT)_STATE_/, "");

/** A duration written for people: 850 ms, 4.2 s, 3m 05s, 2h 10m, 3d 4h. */
export function duration(milliseconds: number): string {
  const abs = Math.abs(milliseconds);
  if (abs < 1000) return `${Math.round(milliseconds)} ms`;
  if (abs < 60_000) return `${(milliseconds / 1000).toFixed(abs < 10_000 ? 1 : 0)} s`;
  const s = Math.round(abs / 1000);
  const sign = milliseconds < 0 ? "-" : "";
  if (s < 3600) return `${sign}${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  if (s < 86_400) return `${sign}${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${sign}${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

/** "in 4.2 s", "3m 05s ago", "now". */
export function relative(at: number, now: number): string {
  const delta = at - now;
  if (Math.abs(delta) < 500) return "now";
  return delta > 0 ? `in ${duration(delta)}` : `${duration(-delta)} ago`;
}

export const clockTime = (at: number) => new Date(at).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");

/** A protobuf JSON duration ("1.500s") in milliseconds. */
export const durationMs = (value: string | undefined): number => (value === undefined ? 0 : Math.round(Number.parseFloat(value) * 1000));

export function failureLine(failure: Failure | undefined): string {
  if (!failure) return "";
  const first = failure.message?.split("\n")[0] ?? "";
  return first ? `${failure.type ?? "Error"}: ${first}` : (failure.type ?? "");
}

/** The policy in words, as the CLI writes it (server/operator/policy-text.ts). */
export function describePolicy(policy: RetryPolicy | undefined): string {
  // A duration left out is null: it may mean a default (docs in policy-text.ts).
  const given = (value: string | undefined) => (value === undefined ? null : durationMs(value));
  const fields = policy && {
    limit: policy.limit ?? 0,
    unlimited: policy.unlimited ?? false,
    backoffMinMs: given(policy.backoffMin),
    backoffMaxMs: given(policy.backoffMax),
    coefficient: policy.backoffCoefficient ?? 0,
    jitter: policy.jitter ?? 0,
    maxElapsedMs: given(policy.maxElapsed) ?? 0,
  };
  return describeFields(fields, duration);
}

/** The rule that set the wait after an attempt, as the CLI and the docs name it. */
export function ruleName(attempt: Attempt): string | null {
  switch (attempt.retryRule) {
    case "RETRY_RULE_BACKOFF":
      return "backoff";
    case "RETRY_RULE_RETRY_AFTER":
      return "retry_after";
    case "RETRY_RULE_SNOOZE":
      return "snooze";
    case "RETRY_RULE_BUDGET":
      return "budget";
    case "RETRY_RULE_MAX_ELAPSED":
      return "max_elapsed";
    case "RETRY_RULE_LIMIT":
      return "no retries left";
    case "RETRY_RULE_NON_RETRYABLE":
      return "non-retryable";
    default:
      return null;
  }
}

/** A payload as text: JSON pretty-printed, other text as it is, binary by its size. */
export function payloadText(payload: Payload | undefined): string {
  if (!payload?.data) return "";
  const bytes = Uint8Array.from(atob(payload.data), (c) => c.charCodeAt(0));
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  if (!payload.contentType || payload.contentType.includes("json")) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      // Not JSON after all: shown as text.
    }
  }
  return /^[\x09\x0a\x0d\x20-\x7e\u00a0-\uffff]*$/.test(text) ? text : `<${bytes.length} bytes of ${payload.contentType || "binary"}>`;
}

/** The last attempt's failure, the most useful line about an execution that is failing. */
export const lastFailure = (execution: Execution) => failureLine(execution.failure ?? execution.attempts?.at(-1)?.failure);

/** Waiting for a retry, a snooze or after a re-run: PENDING after at least one attempt. */
export const isRetrying = (execution: Execution) => execution.state === "EXECUTION_STATE_PENDING" && (execution.attempts?.length ?? 0) > 0;

/**
 * Why a PENDING execution waits after its last attempt, as `reprise ls
 * --retrying` says it: the rule that set the time, or "re-run" when that
 * attempt had ended the execution (no retry_at) and a re-run made it due.
 */
export function waitRule(last: Attempt): string | null {
  if (!last.retryRule || last.retryRule === "RETRY_RULE_UNSPECIFIED") return null;
  return last.retryAt !== undefined ? ruleName(last) : "re-run";
}

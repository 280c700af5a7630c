// The chaos run's checks, against the rows a store holds after the run and
// against what the callers and waiters saw. Each violation is a sentence
// naming the execution. The rows come from the SQLite file here, or from
// PostgreSQL (postgres-rows.ts): the checks are the same for both stores.
import Database from "better-sqlite3";
import { fromBinary } from "@bufbuild/protobuf";
import { ExecutionState, RetryPolicySchema } from "@reprise/wire";
import { resolvePolicy, retryDelayMs } from "../../server/coordinator/policy.js";
import { AttemptStateNumber as A, ExecutionStateNumber as E } from "../../server/store/store.js";
import { CHAOS_TASKS } from "./policies.js";
import { checkWatches } from "./watches.js";
import type { RecordedWatch } from "./watches.js";

export interface ChaosFindings {
  executions: number;
  attempts: number;
  byState: Record<string, number>;
  violations: string[];
}

/** Types rather than interfaces, so that they are records (queryRows). */
export type ExecutionRow = {
  seq: number;
  id: string;
  task: string;
  state: number;
  attempt_count: number;
  finished_at: number | null;
  idempotency_key: string | null;
};

export type AttemptRow = {
  execution_seq: number;
  number: number;
  state: number;
  worker_id: string;
  started_at: number;
  scheduled_at: number;
  finished_at: number | null;
  lease_expires_at: number;
  timeout_at: number | null;
  retry_policy: Uint8Array | null;
};

/** What a store holds after a run, times in ms since the epoch. */
export interface ChaosRows {
  executions: ExecutionRow[];
  /** Ordered by execution_seq, then number. */
  attempts: AttemptRow[];
  /** The store's own execution counts by task and state, where it keeps them apart from the rows. */
  counts?: { task: string; state: number; count: number }[];
}

/** What the run's callers and waiters saw. */
export interface ChaosSeen {
  acknowledged: Set<string>;
  waited: Map<string, ExecutionState | "error">;
  /** Every submit by idempotency key: the execution id it was acknowledged with, or null if it never was. */
  submitted?: Map<string, string | null>;
  /** WatchExecution streams recorded message by message. */
  watches?: RecordedWatch[];
}

const FINAL_OF_ATTEMPT: Record<number, number> = {
  [A.succeeded]: E.succeeded,
  [A.failed]: E.failed,
  [A.abandoned]: E.abandoned,
  [A.timedOut]: E.timedOut,
  [A.cancelled]: E.cancelled,
};

export function readSqliteRows(path: string): ChaosRows {
  const db = new Database(path, { readonly: true });
  try {
    return {
      executions: db.prepare("SELECT seq, id, task, state, attempt_count, finished_at, idempotency_key FROM executions").all() as ExecutionRow[],
      attempts: db.prepare("SELECT * FROM attempts ORDER BY execution_seq, number").all() as AttemptRow[],
    };
  } finally {
    db.close();
  }
}

export function checkInvariants(path: string, seen: ChaosSeen): ChaosFindings {
  return checkRows(readSqliteRows(path), seen);
}

export function checkRows(rows: ChaosRows, seen: ChaosSeen): ChaosFindings {
  const { executions, attempts } = rows;
  const attemptsOf = new Map<number, AttemptRow[]>();
  for (const attempt of attempts) {
    let list = attemptsOf.get(attempt.execution_seq);
    if (!list) attemptsOf.set(attempt.execution_seq, (list = []));
    list.push(attempt);
  }
  const violations: string[] = [];
  const byState: Record<string, number> = {};
  const byId = new Map(executions.map((e) => [e.id, e]));

  for (const id of seen.acknowledged) if (!byId.has(id)) violations.push(`acknowledged execution ${id} is missing from the database`);

  for (const execution of executions) {
    const name = `${execution.task} ${execution.id}`;
    byState[ExecutionState[execution.state]!] = (byState[ExecutionState[execution.state]!] ?? 0) + 1;
    const list = attemptsOf.get(execution.seq) ?? [];
    const task = CHAOS_TASKS[execution.task];
    if (!task) {
      violations.push(`${name}: unknown task`);
      continue;
    }
    // Every execution reached a terminal state.
    if (execution.state === E.pending || execution.state === E.running) violations.push(`${name}: still ${ExecutionState[execution.state]} after the drain`);
    // No execution made more attempts than its limit + 1; at most once means once.
    if (list.length > task.maxAttempts) violations.push(`${name}: ${list.length} attempts, more than ${task.maxAttempts}`);
    // Attempt numbers are contiguous from 1.
    list.forEach((attempt, i) => {
      if (attempt.number !== i + 1) violations.push(`${name}: attempt numbers are not contiguous (${list.map((a) => a.number).join(",")})`);
    });
    if (execution.attempt_count !== list.length) violations.push(`${name}: attempt_count ${execution.attempt_count} but ${list.length} attempt rows`);
    // Never two attempts RUNNING, not even one after the other overlapping.
    if (list.filter((a) => a.state === A.running).length > 1) violations.push(`${name}: two attempts RUNNING`);
    // An ended execution has no attempt left RUNNING: each lease ended, by an outcome, an expiry or the cancel.
    if (execution.state !== E.pending && execution.state !== E.running && list.some((a) => a.state === A.running)) {
      violations.push(`${name}: ended ${ExecutionState[execution.state]} with an attempt still RUNNING`);
    }
    for (let i = 1; i < list.length; i++) {
      const before = list[i - 1]!;
      const after = list[i]!;
      if (before.finished_at === null || after.started_at < before.finished_at) violations.push(`${name}: attempt ${after.number} started before attempt ${before.number} ended`);
      if (after.started_at < after.scheduled_at) violations.push(`${name}: attempt ${after.number} started before it was due`);
      // The recorded delay matches the policy that decided it.
      const policy = resolvePolicy(before.retry_policy ? fromBinary(RetryPolicySchema, before.retry_policy) : undefined);
      const delay = after.scheduled_at - (before.finished_at ?? 0);
      if (!policy) violations.push(`${name}: attempt ${after.number} followed attempt ${before.number}, whose fate no policy decided`);
      else if (policy.unlimited ? delay < policy.backoffMinMs || delay > policy.backoffMaxMs : delay !== retryDelayMs(policy, before.number, Math.random)) {
        violations.push(`${name}: attempt ${after.number} was due ${delay} ms after attempt ${before.number}, not as its policy says`);
      }
    }
    for (const attempt of list) {
      // No outcome was accepted from a stale lease: reported outcomes land before the lease and timeout run out.
      if ((attempt.state === A.succeeded || attempt.state === A.failed) && attempt.finished_at !== null) {
        if (attempt.finished_at >= attempt.lease_expires_at || (attempt.timeout_at !== null && attempt.finished_at >= attempt.timeout_at)) {
          violations.push(`${name}: attempt ${attempt.number} accepted an outcome after its lease or timeout ran out`);
        }
      }
      // Abandoned only once its lease ran out (not while a heartbeat kept it), timed out only once its timeout passed.
      if (attempt.state === A.abandoned && (attempt.finished_at === null || attempt.finished_at < attempt.lease_expires_at)) {
        violations.push(`${name}: attempt ${attempt.number} (worker ${attempt.worker_id}) abandoned at ${attempt.finished_at}, before its lease ran out at ${attempt.lease_expires_at}`);
      }
      if (attempt.state === A.timedOut && (attempt.finished_at === null || attempt.timeout_at === null || attempt.finished_at < attempt.timeout_at)) {
        violations.push(`${name}: attempt ${attempt.number} timed out at ${attempt.finished_at}, before its timeout at ${attempt.timeout_at}`);
      }
    }
    // The final state follows the last attempt.
    const last = list.at(-1);
    if (last && execution.state !== E.cancelled && FINAL_OF_ATTEMPT[last.state] !== execution.state) {
      violations.push(`${name}: ended ${ExecutionState[execution.state]} but its last attempt is in state ${last.state}`);
    }
    // One end: an execution that ended with its last attempt ended in the same change, at the same moment.
    if (last && execution.state !== E.cancelled && execution.finished_at !== null && last.finished_at !== null && execution.finished_at !== last.finished_at) {
      violations.push(`${name}: ended at ${execution.finished_at} but its last attempt at ${last.finished_at}`);
    }
    if (list.some((a, i) => a.state === A.succeeded && i !== list.length - 1)) violations.push(`${name}: an attempt succeeded and another followed`);
    if (list.some((a, i) => a.state === A.cancelled && i !== list.length - 1)) violations.push(`${name}: an attempt was cancelled and another followed`);
    if (execution.state === E.cancelled && list.some((a) => a.state === A.succeeded)) violations.push(`${name}: cancelled, yet an attempt succeeded`);
  }

  // Every waiter's final state equals the stored one.
  for (const [id, state] of seen.waited) {
    const stored = byId.get(id)?.state;
    if (state !== stored) violations.push(`waiter of ${id} saw ${state === "error" ? "an error" : ExecutionState[state]} but the database says ${stored === undefined ? "nothing" : ExecutionState[stored]}`);
  }
  if (seen.submitted) violations.push(...checkSubmits(executions, seen.submitted));
  if (rows.counts) violations.push(...checkCounts(executions, rows.counts));
  if (seen.watches) violations.push(...checkWatches(seen.watches, byId));
  return { executions: executions.length, attempts: attempts.length, byState, violations };
}

/** One execution per idempotency key, the one its submit was acknowledged with, and none that no submit asked for. */
function checkSubmits(executions: ExecutionRow[], submitted: Map<string, string | null>): string[] {
  const violations: string[] = [];
  const byKey = new Map(executions.map((e) => [e.idempotency_key, e]));
  for (const [key, id] of submitted) {
    const stored = byKey.get(key);
    if (id !== null && stored !== undefined && stored.id !== id) violations.push(`submit ${key} was acknowledged as ${id}, but the database holds ${stored.id} under its key`);
  }
  for (const execution of executions) {
    if (execution.idempotency_key === null || !submitted.has(execution.idempotency_key)) {
      violations.push(`${execution.task} ${execution.id}: no submit asked for it (idempotency key ${execution.idempotency_key})`);
    }
  }
  return violations;
}

/** The store's running counts agree with its rows: no change was counted twice (an execution ended twice) or not at all. */
function checkCounts(executions: ExecutionRow[], counts: { task: string; state: number; count: number }[]): string[] {
  const actual = new Map<string, number>();
  for (const e of executions) actual.set(`${e.task} ${ExecutionState[e.state]}`, (actual.get(`${e.task} ${ExecutionState[e.state]}`) ?? 0) + 1);
  const counted = new Map(counts.filter((c) => c.count !== 0).map((c) => [`${c.task} ${ExecutionState[c.state]}`, c.count]));
  const violations: string[] = [];
  for (const key of new Set([...actual.keys(), ...counted.keys()])) {
    if ((actual.get(key) ?? 0) !== (counted.get(key) ?? 0)) violations.push(`execution counts: ${key} counted ${counted.get(key) ?? 0}, but ${actual.get(key) ?? 0} rows`);
  }
  return violations;
}

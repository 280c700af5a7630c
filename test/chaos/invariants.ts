// The chaos run's checks, against the database after the run and against what
// the waiters saw. Each violation is a sentence naming the execution.
import Database from "better-sqlite3";
import { fromBinary } from "@bufbuild/protobuf";
import { ExecutionState, RetryPolicySchema } from "@reprise/client/wire";
import { resolvePolicy, retryDelayMs } from "../../server/coordinator/policy.js";
import { AttemptStateNumber as A, ExecutionStateNumber as E } from "../../server/store/store.js";
import { CHAOS_TASKS } from "./policies.js";

export interface ChaosFindings {
  executions: number;
  attempts: number;
  byState: Record<string, number>;
  violations: string[];
}

interface ExecutionRow {
  seq: number;
  id: string;
  task: string;
  state: number;
  attempt_count: number;
  finished_at: number | null;
}

interface AttemptRow {
  execution_seq: number;
  number: number;
  state: number;
  started_at: number;
  scheduled_at: number;
  finished_at: number | null;
  lease_expires_at: number;
  timeout_at: number | null;
  retry_policy: Buffer | null;
}

const FINAL_OF_ATTEMPT: Record<number, number> = {
  [A.succeeded]: E.succeeded,
  [A.failed]: E.failed,
  [A.abandoned]: E.abandoned,
  [A.timedOut]: E.timedOut,
  [A.cancelled]: E.cancelled,
};

export function checkInvariants(
  path: string,
  seen: { acknowledged: Set<string>; waited: Map<string, ExecutionState | "error"> },
): ChaosFindings {
  const db = new Database(path, { readonly: true });
  try {
    const executions = db.prepare("SELECT seq, id, task, state, attempt_count, finished_at FROM executions").all() as ExecutionRow[];
    const attempts = db.prepare("SELECT * FROM attempts ORDER BY execution_seq, number").all() as AttemptRow[];
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
      // No outcome was accepted from a stale lease: reported outcomes land before the lease and timeout run out.
      for (const attempt of list) {
        if ((attempt.state === A.succeeded || attempt.state === A.failed) && attempt.finished_at !== null) {
          if (attempt.finished_at >= attempt.lease_expires_at || (attempt.timeout_at !== null && attempt.finished_at >= attempt.timeout_at)) {
            violations.push(`${name}: attempt ${attempt.number} accepted an outcome after its lease or timeout ran out`);
          }
        }
      }
      // The final state follows the last attempt.
      const last = list.at(-1);
      if (last && execution.state !== E.cancelled && FINAL_OF_ATTEMPT[last.state] !== execution.state) {
        violations.push(`${name}: ended ${ExecutionState[execution.state]} but its last attempt is in state ${last.state}`);
      }
      if (list.some((a, i) => a.state === A.succeeded && i !== list.length - 1)) violations.push(`${name}: an attempt succeeded and another followed`);
      if (execution.state === E.cancelled && list.some((a) => a.state === A.succeeded)) violations.push(`${name}: cancelled, yet an attempt succeeded`);
    }

    // Every waiter's final state equals the stored one.
    for (const [id, state] of seen.waited) {
      const stored = byId.get(id)?.state;
      if (state !== stored) violations.push(`waiter of ${id} saw ${state === "error" ? "an error" : ExecutionState[state]} but the database says ${stored === undefined ? "nothing" : ExecutionState[stored]}`);
    }
    return { executions: executions.length, attempts: attempts.length, byState, violations };
  } finally {
    db.close();
  }
}

// Every statement the SQLite store runs, each under the name that the hold
// metric and the plan guard (test/store-plans.test.ts) report.
import type Database from "better-sqlite3";
import type { HoldObserver } from "../../operator/holds.js";
import { LABEL_LIST_WINDOW } from "../list-page.js";
import { AttemptStateNumber, ExecutionStateNumber, RERUNNABLE_STATES } from "../store.js";

const PENDING = ExecutionStateNumber.pending;
// Hot statements bind positional parameters: binding by name costs a property
// lookup per parameter on every run.
const FINISH = `UPDATE executions SET state = ?, finished_at = ?, next_attempt_at = NULL, result = ?, result_type = ?,
  failure_type = ?, failure_message = ?, failure_stack = ?, failure_non_retryable = ?, failure_retry_after_ms = ?,
  version = version + 1`;
const RUNNING = ExecutionStateNumber.running;
const SUCCEEDED = ExecutionStateNumber.succeeded;
const RERUNNABLE = RERUNNABLE_STATES.join(", ");
const ATTEMPT_RUNNING = AttemptStateNumber.running;

/** Prepares `sql` under `name`; "raw" rows come as arrays, "pluck" rows as their first column. */
export type Prepare = (name: string, sql: string, mode?: "raw" | "pluck") => TimedStatement;

export type Statements = ReturnType<typeof prepareStatements>;

/**
 * A prepared statement that tells how long each run held the event loop. It
 * passes `arguments` on as they are: a rest parameter would copy them into a
 * new array at every run of every statement.
 */
export class TimedStatement {
  constructor(
    private readonly statement: Database.Statement,
    private readonly observe: HoldObserver,
  ) {}

  run(...params: unknown[]): Database.RunResult;
  run(): Database.RunResult {
    const started = performance.now();
    try {
      return this.statement.run.apply(this.statement, arguments as unknown as unknown[]);
    } finally {
      this.observe(performance.now() - started);
    }
  }

  get(...params: unknown[]): unknown;
  get(): unknown {
    const started = performance.now();
    try {
      return this.statement.get.apply(this.statement, arguments as unknown as unknown[]);
    } finally {
      this.observe(performance.now() - started);
    }
  }

  all(...params: unknown[]): unknown[];
  all(): unknown[] {
    const started = performance.now();
    try {
      return this.statement.all.apply(this.statement, arguments as unknown as unknown[]);
    } finally {
      this.observe(performance.now() - started);
    }
  }
}

/** The store's statements, each prepared through `s`. */
export function prepareStatements(s: Prepare) {
  const listColumns = "SELECT * FROM executions";
  return {
    taskGet: s("taskGet", "SELECT * FROM tasks WHERE name = ?"),
    taskList: s("taskList", "SELECT * FROM tasks ORDER BY name"),
    taskUpsert: s(
      "taskUpsert",
      `INSERT INTO tasks (name, retry_policy, timeout_ms, budget_per_second, budget_burst, worker_id, declared_at)
       VALUES (@name, @retry_policy, @timeout_ms, @budget_per_second, @budget_burst, @worker_id, @declared_at)
       ON CONFLICT (name) DO UPDATE SET retry_policy = excluded.retry_policy, timeout_ms = excluded.timeout_ms,
         budget_per_second = excluded.budget_per_second, budget_burst = excluded.budget_burst,
         worker_id = excluded.worker_id, declared_at = excluded.declared_at`,
    ),
    retryBucketCreate: s("retryBucketCreate", "INSERT INTO retry_buckets (task) VALUES (?) ON CONFLICT (task) DO NOTHING"),
    retryBucketGet: s("retryBucketGet", "SELECT tokens, at, booked FROM retry_buckets WHERE task = ?", "raw"),
    retryBucketPut: s(
      "retryBucketPut",
      "INSERT INTO retry_buckets (task, tokens, at, booked) VALUES (?, ?, ?, ?) ON CONFLICT (task) DO UPDATE SET tokens = excluded.tokens, at = excluded.at, booked = excluded.booked",
    ),
    executionInsert: s(
      "executionInsert",
      `INSERT INTO executions (id, task, state, arguments, arguments_type, retry_policy, next_attempt_at, created_at,
         idempotency_key, labels, run_scheduled_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    executionGet: s("executionGet", "SELECT * FROM executions WHERE id = ?"),
    executionGetBySeq: s("executionGetBySeq", "SELECT * FROM executions WHERE seq = ?"),
    executionVersion: s("executionVersion", "SELECT version FROM executions WHERE seq = ?", "pluck"),
    executionGetByKey: s("executionGetByKey", "SELECT * FROM executions WHERE idempotency_key = ?"),
    // One statement per filter, so that each walks its own index newest first.
    // The state lists repeat the indexes' `state <> 3` so that the planner
    // knows a bound state can use them. SUCCEEDED has no index: its lists
    // walk a window of seq values, which bounds the rows read per page.
    executionList: s("executionList", `${listColumns} WHERE seq < ? ORDER BY seq DESC LIMIT ?`),
    executionListByTask: s("executionListByTask", `${listColumns} WHERE task = ? AND seq < ? ORDER BY seq DESC LIMIT ?`),
    executionListByState: s(
      "executionListByState",
      `${listColumns} WHERE state = ? AND state <> ${SUCCEEDED} AND seq < ? ORDER BY seq DESC LIMIT ?`,
    ),
    executionListByTaskAndState: s(
      "executionListByTaskAndState",
      `${listColumns} WHERE task = ? AND state = ? AND state <> ${SUCCEEDED} AND seq < ? ORDER BY seq DESC LIMIT ?`,
    ),
    executionListSucceeded: s(
      "executionListSucceeded",
      `${listColumns} WHERE seq < ? AND seq >= ? AND state = ${SUCCEEDED} ORDER BY seq DESC LIMIT ?`,
    ),
    executionListSucceededByTask: s(
      "executionListSucceededByTask",
      `${listColumns} WHERE task = ? AND seq < ? AND seq >= ? AND state = ${SUCCEEDED} ORDER BY seq DESC LIMIT ?`,
    ),
    // By label: the label's index newest first, down to the window's floor, then the rest of the filter.
    executionListByLabel: s(
      "executionListByLabel",
      `SELECT e.* FROM execution_labels l JOIN executions e ON e.seq = l.execution_seq
       WHERE l.key = @key AND l.value = @value AND l.execution_seq < @before AND l.execution_seq >= @floor
         AND (@task IS NULL OR e.task = @task) AND (@state IS NULL OR e.state = @state)
         AND NOT EXISTS (SELECT 1 FROM json_each(@others) o WHERE NOT EXISTS (
           SELECT 1 FROM execution_labels x WHERE x.key = o.key AND x.value = o.value AND x.execution_seq = e.seq))
       ORDER BY l.execution_seq DESC LIMIT @limit`,
    ),
    executionLabelWindowFloor: s(
      "executionLabelWindowFloor",
      `SELECT execution_seq FROM execution_labels WHERE key = ? AND value = ? AND execution_seq < ?
       ORDER BY execution_seq DESC LIMIT 1 OFFSET ${LABEL_LIST_WINDOW - 1}`,
      "pluck",
    ),
    labelInsert: s("labelInsert", "INSERT INTO execution_labels (key, value, execution_seq) SELECT key, value, ? FROM json_each(?)"),
    executionMinSeq: s("executionMinSeq", "SELECT min(seq) FROM executions", "pluck"),
    executionMaxSeq: s("executionMaxSeq", "SELECT max(seq) FROM executions", "pluck"),
    // Only what a lease needs, as arrays: seq, id, task, arguments, arguments_type, labels, next_attempt_at, attempt_count.
    executionListDueOne: s(
      "executionListDue",
      `SELECT seq, id, task, arguments, arguments_type, labels, next_attempt_at, attempt_count FROM executions
       WHERE state = ${PENDING} AND task = ? AND next_attempt_at <= ? ORDER BY next_attempt_at, seq LIMIT ?`,
      "raw",
    ),
    executionSetRetry: s(
      "executionSetRetry",
      `UPDATE executions SET state = ${PENDING}, next_attempt_at = ?, run_failures = ?, version = version + 1 WHERE seq = ? AND state = ${RUNNING}`,
    ),
    executionRerun: s(
      "executionRerun",
      `UPDATE executions SET state = ${PENDING}, next_attempt_at = ?, run_scheduled_at = ?, run_failures = 0, finished_at = NULL,
         result = NULL, result_type = NULL, failure_type = NULL, failure_message = NULL, failure_stack = NULL,
         failure_non_retryable = NULL, failure_retry_after_ms = NULL, version = version + 1
       WHERE seq = ? AND state = ? AND state IN (${RERUNNABLE})`,
    ),
    executionFinishRunning: s("executionFinishRunning", `${FINISH} WHERE seq = ? AND state = ${RUNNING}`),
    executionFinishPending: s("executionFinishPending", `${FINISH} WHERE seq = ? AND state = ${PENDING}`),
    executionStart: s(
      "executionStart",
      `UPDATE executions SET state = ${RUNNING}, next_attempt_at = NULL, attempt_count = attempt_count + 1, version = version + 1
       WHERE seq = ? AND state = ${PENDING} AND attempt_count = ?`,
    ),
    attemptInsert: s(
      "attemptInsert",
      `INSERT INTO attempts (execution_seq, number, state, worker_id, scheduled_at, started_at, lease_secret, lease_ms,
         lease_expires_at, timeout_at)
       VALUES (?, ?, ${ATTEMPT_RUNNING}, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    // Only what deciding an attempt's fate needs, as an array (see attemptGet).
    attemptGet: s(
      "attemptGet",
      `SELECT a.execution_seq, a.number, a.state, a.worker_id, a.scheduled_at, a.started_at, a.lease_secret, a.lease_ms,
         a.lease_expires_at, a.timeout_at, e.id, e.task, e.retry_policy, e.run_failures, coalesce(e.run_scheduled_at, e.created_at)
       FROM attempts a JOIN executions e ON e.seq = a.execution_seq WHERE a.id = ?`,
      "raw",
    ),
    attemptList: s("attemptList", "SELECT * FROM attempts WHERE execution_seq = ? ORDER BY number"),
    attemptGetRunning: s("attemptGetRunning", `SELECT * FROM attempts WHERE execution_seq = ? AND state = ${ATTEMPT_RUNNING}`),
    attemptExtendLease: s(
      "attemptExtendLease",
      `UPDATE attempts SET lease_expires_at = @lease_expires_at
       WHERE id = @id AND state = ${ATTEMPT_RUNNING} AND lease_secret = @lease_secret`,
    ),
    attemptFinish: s(
      "attemptFinish",
      `UPDATE attempts SET state = ?, finished_at = ?, retry_policy = ?,
         failure_type = ?, failure_message = ?, failure_stack = ?, failure_non_retryable = ?, failure_retry_after_ms = ?,
         retry_rule = ?, retry_at = ?, retry_computed_at = ?
       WHERE id = ? AND state = ${ATTEMPT_RUNNING} AND lease_secret = ?`,
    ),
    attemptDelete: s(
      "attemptDelete",
      `DELETE FROM attempts WHERE id = @id AND state = ${ATTEMPT_RUNNING} AND lease_secret = @lease_secret
       RETURNING execution_seq, number, scheduled_at`,
    ),
    executionUnstart: s(
      "executionUnstart",
      `UPDATE executions SET state = ${PENDING}, next_attempt_at = @scheduled_at, attempt_count = @number - 1, version = version + 1
       WHERE seq = @seq AND state = ${RUNNING} AND attempt_count = @number
       RETURNING task`,
    ),
    // Two statements, each walking its own partial index in deadline order.
    // One statement with UNION (or OR) of the two plans as a scan of every
    // attempt ever made.
    attemptListLeaseExpired: s(
      "attemptListLeaseExpired",
      `SELECT id FROM attempts WHERE state = ${ATTEMPT_RUNNING} AND lease_expires_at <= ? ORDER BY lease_expires_at LIMIT ?`,
      "pluck",
    ),
    attemptListTimedOut: s(
      "attemptListTimedOut",
      `SELECT id FROM attempts WHERE state = ${ATTEMPT_RUNNING} AND timeout_at IS NOT NULL AND timeout_at <= ? ORDER BY timeout_at LIMIT ?`,
      "pluck",
    ),
    nextPendingAt: s(
      "nextPendingAt",
      `SELECT min(next_attempt_at) FROM executions WHERE state = ${PENDING} AND next_attempt_at > ?`,
      "pluck",
    ),
    nextLeaseExpiry: s("nextLeaseExpiry", `SELECT min(lease_expires_at) FROM attempts WHERE state = ${ATTEMPT_RUNNING}`, "pluck"),
    nextTimeout: s(
      "nextTimeout",
      `SELECT min(timeout_at) FROM attempts WHERE state = ${ATTEMPT_RUNNING} AND timeout_at IS NOT NULL`,
      "pluck",
    ),
    countByTaskAndState: s("countByTaskAndState", "SELECT task, state, count FROM execution_counts WHERE count <> 0"),
    countAdd: s(
      "countAdd",
      `INSERT INTO execution_counts (task, state, count) VALUES (?, ?, ?)
       ON CONFLICT (task, state) DO UPDATE SET count = count + excluded.count`,
    ),
    // Due PENDING executions are few unless workers fall behind; the delayed
    // ones (a million waiting retries, say) are the rest of the PENDING count.
    countDue: s("countDue", `SELECT count(*) FROM executions WHERE state = ${PENDING} AND next_attempt_at <= ?`, "pluck"),
    countDueOfTask: s(
      "countDueOfTask",
      `SELECT count(*) FROM (SELECT 1 FROM executions WHERE state = ${PENDING} AND task = ? AND next_attempt_at <= ? LIMIT ?)`,
      "pluck",
    ),
    // Retention: a walk in seq order that reads exactly the rows it is given.
    retentionWalk: s(
      "retentionWalk",
      "SELECT seq, task, state, created_at, finished_at, labels FROM executions WHERE seq >= ? ORDER BY seq LIMIT ?",
      "raw",
    ),
    retentionDeleteAttempts: s("retentionDeleteAttempts", "DELETE FROM attempts WHERE execution_seq = ?"),
    retentionDeleteLabel: s("retentionDeleteLabel", "DELETE FROM execution_labels WHERE key = ? AND value = ? AND execution_seq = ?"),
    retentionDeleteExecution: s(
      "retentionDeleteExecution",
      "DELETE FROM executions WHERE seq = ? AND finished_at IS NOT NULL AND finished_at < ?",
    ),
    failureAdd: s(
      "failureAdd",
      `INSERT INTO failure_minutes (task, minute, type, failures, retries) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (task, minute, type) DO UPDATE SET failures = failures + excluded.failures, retries = retries + excluded.retries`,
    ),
    failureStats: s(
      "failureStats",
      "SELECT task, type, sum(failures) AS failures, sum(retries) AS retries FROM failure_minutes WHERE minute >= ? GROUP BY task, type",
    ),
    failureForget: s("failureForget", "DELETE FROM failure_minutes WHERE minute < ?"),
    workerSeen: s(
      "workerSeen",
      `INSERT INTO worker_tasks (worker_id, task, last_seen_at) VALUES (?, ?, ?)
       ON CONFLICT (worker_id, task) DO UPDATE SET last_seen_at = max(last_seen_at, excluded.last_seen_at)`,
    ),
    // Every worker: its rows by recency; the caller groups them by worker.
    workerListRecent: s(
      "workerListRecent",
      "SELECT worker_id, task, last_seen_at FROM worker_tasks WHERE last_seen_at >= ? ORDER BY last_seen_at DESC LIMIT ?",
      "raw",
    ),
    workerListOfTask: s(
      "workerListOfTask",
      "SELECT worker_id FROM worker_tasks WHERE task = ? AND last_seen_at >= ? ORDER BY last_seen_at DESC LIMIT ?",
      "pluck",
    ),
    workerTasks: s("workerTasks", "SELECT task, last_seen_at FROM worker_tasks WHERE worker_id = ?", "raw"),
    workerForget: s("workerForget", "DELETE FROM worker_tasks WHERE last_seen_at < ?"),
  };
}

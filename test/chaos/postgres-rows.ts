// What a PostgreSQL store holds after a chaos run, as the rows the checks
// read (invariants.ts): the same columns as in SQLite, in schema `reprise`.
// node-postgres returns bigint as a string; the milliseconds and seqs are
// numbers here, as the store itself reads them.
import { queryRows } from "../cluster-helpers.js";
import type { AttemptRow, ChaosRows, ExecutionRow } from "./invariants.js";

const numberOrNull = (value: unknown) => (value === null ? null : Number(value));

/** Read once every node has stopped, so that the three reads agree. */
export async function readPostgresRows(db: string): Promise<ChaosRows> {
  const executions = (await queryRows<ExecutionRow>(db, "SELECT seq, id, task, state, attempt_count, finished_at, idempotency_key FROM executions")).map((row) => ({
    ...row,
    seq: Number(row.seq),
    finished_at: numberOrNull(row.finished_at),
  }));
  const attempts = (
    await queryRows<AttemptRow>(
      db,
      `SELECT execution_seq, number, state, worker_id, started_at, scheduled_at, finished_at, lease_expires_at, timeout_at, retry_policy
        FROM attempts ORDER BY execution_seq, number`,
    )
  ).map((row) => ({
    ...row,
    execution_seq: Number(row.execution_seq),
    started_at: Number(row.started_at),
    scheduled_at: Number(row.scheduled_at),
    finished_at: numberOrNull(row.finished_at),
    lease_expires_at: Number(row.lease_expires_at),
    timeout_at: numberOrNull(row.timeout_at),
  }));
  // The running counts: folded ones plus the changes appended since.
  const counts = (
    await queryRows<{ task: string; state: number; count: string }>(
      db,
      `SELECT task, state, sum(count) AS count FROM (
          SELECT task, state, count FROM execution_counts UNION ALL SELECT task, state, delta FROM execution_count_changes) c
        GROUP BY task, state`,
    )
  ).map((row) => ({ ...row, count: Number(row.count) }));
  return { executions, attempts, counts };
}

// Rows of the SQLite store and the records of store.ts: how each column is
// read, and how each value is bound.
import type { AttemptRecord, ExecutionRecord, FailureRecord } from "../store.js";

export type Row = Record<string, unknown>;

/** better-sqlite3 binds Buffers, not plain Uint8Arrays. */
export function blob(bytes: Uint8Array): Buffer;
export function blob(bytes: Uint8Array | null | undefined): Buffer | null;
export function blob(bytes: Uint8Array | null | undefined): Buffer | null {
  if (bytes === null || bytes === undefined) return null;
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function failureFromRow(row: Row): FailureRecord | null {
  if (row.failure_type === null) return null;
  return {
    type: row.failure_type as string,
    message: row.failure_message as string,
    stackTrace: row.failure_stack as string,
    nonRetryable: row.failure_non_retryable === 1,
    retryAfterMs: row.failure_retry_after_ms as number,
  };
}

/** failure_type, failure_message, failure_stack, failure_non_retryable, failure_retry_after_ms. */
export function failureParams(failure: FailureRecord | null | undefined): unknown[] {
  if (!failure) return [null, null, null, null, null];
  return [failure.type, failure.message, failure.stackTrace, failure.nonRetryable ? 1 : 0, failure.retryAfterMs];
}

// Most executions carry no labels: skip JSON for them.
export const labelsJson = (labels: Record<string, string>) => {
  for (const _ in labels) return JSON.stringify(labels);
  return "{}";
};
export const parseLabels = (json: string): Record<string, string> => (json === "{}" ? {} : (JSON.parse(json) as Record<string, string>));

export function executionFromRow(row: Row): ExecutionRecord {
  return {
    seq: row.seq as number,
    id: row.id as string,
    task: row.task as string,
    state: row.state as number,
    version: row.version as number,
    arguments: { data: row.arguments as Buffer, contentType: row.arguments_type as string },
    retryPolicy: (row.retry_policy as Buffer | null) ?? null,
    result: row.result === null ? null : { data: row.result as Buffer, contentType: row.result_type as string },
    failure: failureFromRow(row),
    nextAttemptAt: row.next_attempt_at as number | null,
    createdAt: row.created_at as number,
    finishedAt: row.finished_at as number | null,
    idempotencyKey: row.idempotency_key as string | null,
    labels: parseLabels(row.labels as string),
    attemptCount: row.attempt_count as number,
  };
}

export function attemptFromRow(row: Row): AttemptRecord {
  return {
    id: row.id as number,
    executionSeq: row.execution_seq as number,
    number: row.number as number,
    state: row.state as number,
    workerId: row.worker_id as string,
    scheduledAt: row.scheduled_at as number,
    startedAt: row.started_at as number,
    finishedAt: row.finished_at as number | null,
    leaseSecret: row.lease_secret as Buffer,
    leaseMs: row.lease_ms as number,
    leaseExpiresAt: row.lease_expires_at as number,
    timeoutAt: row.timeout_at as number | null,
    failure: failureFromRow(row),
    retryPolicy: (row.retry_policy as Buffer | null) ?? null,
  };
}

// Rows of both stores and the records of store.ts: how each column is read,
// and how each value is bound. The two schemas name their columns alike;
// booleans are 0/1 in SQLite and true/false in PostgreSQL, which accepts 0/1.
import type { AttemptRecord, BucketState, ExecutionRecord, FailureRecord, NewExecution, RetryBudgetRecord, RetryDecision, TaskRecord, WorkerRecord } from "./store.js";

export type Row = Record<string, unknown>;

/** Both drivers bind Buffers, not plain Uint8Arrays. */
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
    nonRetryable: Boolean(row.failure_non_retryable),
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
    runFailures: row.run_failures as number,
    runScheduledAt: (row.run_scheduled_at as number | null) ?? (row.created_at as number),
  };
}

/** The decision an attempt row records (retry_rule, retry_at, retry_computed_at); null when none. */
export function decisionFromRow(row: Row): RetryDecision | null {
  const rule = row.retry_rule as number | null;
  if (rule === null || rule === 0) return null;
  return { rule, retryAt: row.retry_at as number | null, computedAt: row.retry_computed_at as number | null };
}

/** retry_rule, retry_at, retry_computed_at. */
export function decisionParams(decision: RetryDecision | null): unknown[] {
  if (decision === null) return [null, null, null];
  return [decision.rule, decision.retryAt, decision.computedAt];
}

/** A retry bucket from tokens, at and booked (JSON `{step, runs}`, or NULL when nothing is booked); undefined while full. */
export function bucketFromRow(tokens: unknown, at: unknown, booked: unknown): BucketState | undefined {
  if (tokens === null || tokens === undefined) return undefined;
  const { step, runs } = booked === null ? { step: 0, runs: [] } : (JSON.parse(booked as string) as Pick<BucketState, "step" | "runs">);
  return { tokens: Number(tokens), at: Number(at), step, runs };
}

/** tokens, at, booked. */
export function bucketParams(bucket: BucketState): unknown[] {
  return [bucket.tokens, bucket.at, bucket.runs.length === 0 ? null : JSON.stringify({ step: bucket.step, runs: bucket.runs })];
}

/** A task row's budget columns (budget_per_second, budget_burst); null when none. */
export function budgetFromRow(perSecond: unknown, burst: unknown): RetryBudgetRecord | null {
  return perSecond === null || perSecond === undefined ? null : { perSecond: Number(perSecond), burst: Number(burst) };
}

/** A task record from a tasks row (name, retry_policy, timeout_ms, budget_*, worker_id, declared_at). */
export function taskFromRow(row: Row): TaskRecord {
  return {
    name: row.name as string,
    retryPolicy: (row.retry_policy as Buffer | null) ?? null,
    timeoutMs: row.timeout_ms as number | null,
    retryBudget: budgetFromRow(row.budget_per_second, row.budget_burst),
    workerId: row.worker_id as string,
    declaredAt: row.declared_at as number,
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
    decision: decisionFromRow(row),
  };
}

/** Where executionInsertValues puts the labels' JSON. */
export const LABELS_VALUE = 9;

/** The values of an execution insert, in the column order both stores' executionInsert statements use. */
export function executionInsertValues(params: NewExecution): unknown[] {
  return [
    params.id,
    params.task,
    params.state,
    blob(params.arguments.data),
    params.arguments.contentType,
    blob(params.retryPolicy),
    params.nextAttemptAt,
    params.createdAt,
    params.idempotencyKey,
    labelsJson(params.labels),
    params.nextAttemptAt,
  ];
}

/** The record of an execution just inserted as `seq`, built from what was inserted rather than read back. */
export function insertedExecution(seq: number, params: NewExecution): ExecutionRecord {
  // Spelled out rather than spread from params: copying with a spread and
  // adding fields cost more than the insert itself (V8 builds a new shape).
  return {
    seq,
    id: params.id,
    task: params.task,
    state: params.state,
    version: 1,
    arguments: params.arguments,
    retryPolicy: params.retryPolicy,
    result: null,
    failure: null,
    nextAttemptAt: params.nextAttemptAt,
    createdAt: params.createdAt,
    finishedAt: null,
    idempotencyKey: params.idempotencyKey,
    labels: params.labels,
    attemptCount: 0,
    runFailures: 0,
    runScheduledAt: params.nextAttemptAt!,
  };
}

/** Failures counted in one change or batch, summed by task, minute and type before they are written. */
export class FailureCounts {
  private readonly sums = new Map<string, { task: string; minute: number; type: string; failures: number; retries: number }>();

  add(params: { task: string; type: string; at: number; retried: boolean }): void {
    const minute = Math.floor(params.at / 60_000);
    const key = `${minute} ${params.task} ${params.type}`;
    let sum = this.sums.get(key);
    if (!sum) this.sums.set(key, (sum = { task: params.task, minute, type: params.type, failures: 0, retries: 0 }));
    sum.failures++;
    if (params.retried) sum.retries++;
  }

  /** The sums, and forgets them. */
  take(): { task: string; minute: number; type: string; failures: number; retries: number }[] {
    const sums = [...this.sums.values()];
    this.sums.clear();
    return sums;
  }

  get size(): number {
    return this.sums.size;
  }
}

/**
 * Workers from (worker, task, last seen) rows that come most recently seen
 * first: each with its tasks sorted, at most `limit` of them, most recently
 * seen first.
 */
export class WorkerList {
  private readonly workers = new Map<string, WorkerRecord>();

  constructor(private readonly limit: number) {}

  /** Adds one row; a new worker beyond the limit is left out. */
  add(id: string, task: string, seenAt: number): void {
    const worker = this.workers.get(id);
    if (!worker) {
      if (this.workers.size < this.limit) this.workers.set(id, { id, tasks: [task], lastSeenAt: seenAt });
    } else {
      worker.tasks.push(task);
      worker.lastSeenAt = Math.max(worker.lastSeenAt, seenAt);
    }
  }

  list(): WorkerRecord[] {
    const list = [...this.workers.values()];
    for (const worker of list) worker.tasks.sort();
    return list.sort((a, b) => b.lastSeenAt - a.lastSeenAt || (a.id < b.id ? -1 : 1));
  }
}

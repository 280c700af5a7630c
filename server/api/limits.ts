// The documented maxima of every count and duration a client can send. Values
// beyond them are INVALID_ARGUMENT (RESOURCE_EXHAUSTED for payload bytes and
// per-connection quotas). docs/limits.md lists them; keep the two in step.
// `Limits` are the ones an operator can change with `reprise serve` flags; the
// rest are fixed.

const SECOND = 1000;
const DAY = 86_400 * SECOND;

export interface Limits {
  /** The largest arguments or result payload, in bytes. */
  maxPayloadBytes: number;
  /** The most entries in one batch: submissions, outcomes, heartbeat tokens, attempts per lease, tasks per call. */
  maxBatchSize: number;
  maxTaskNameBytes: number;
  /** What a task name may contain. */
  taskNamePattern: RegExp;
  minLeaseMs: number;
  maxLeaseMs: number;
  /** LeaseAttempts calls waiting at once on one connection. */
  maxLongPollsPerConnection: number;
  /** WatchExecution streams open at once on one connection. */
  maxWatchesPerConnection: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxPayloadBytes: 1024 * 1024,
  maxBatchSize: 1000,
  maxTaskNameBytes: 256,
  // No whitespace, control or format characters: names must read plainly in logs and tables.
  taskNamePattern: /^[^\s\p{Cc}\p{Cf}]+$/u,
  minLeaseMs: 10,
  maxLeaseMs: 3600 * SECOND,
  maxLongPollsPerConnection: 64,
  maxWatchesPerConnection: 1000,
};

export const fixedLimits = {
  workerIdBytes: 256,
  executionIdBytes: 256,
  idempotencyKeyBytes: 256,
  contentTypeBytes: 256,
  labels: 64,
  labelKeyBytes: 128,
  labelValueBytes: 1024,
  failureTypeBytes: 1024,
  failureMessageBytes: 64 * 1024,
  failureStackBytes: 256 * 1024,
  retryLimit: 10_000,
  /** backoff_min, backoff_max, retry_after, delay, timeout and a snooze's delay. */
  durationMs: 365 * DAY,
  /** RetryPolicy.max_elapsed. */
  maxElapsedMs: 3650 * DAY,
  /** RetryBudget.retries_per_second and RetryBudget.burst. */
  retryBudgetRate: 1_000_000,
  retryBudgetBurst: 1_000_000,
  waitMs: 60 * SECOND,
  defaultLeaseMs: 30 * SECOND,
  defaultPageSize: 100,
  maxPageSize: 1000,
} as const;

// The documented maxima of every count and duration a client can send. Values
// beyond them are INVALID_ARGUMENT (RESOURCE_EXHAUSTED for payload bytes).
// docs/limits.md lists them; keep the two in step.

const SECOND = 1000;
const DAY = 86_400 * SECOND;

export const limits = {
  taskNameBytes: 256,
  workerIdBytes: 256,
  idempotencyKeyBytes: 256,
  contentTypeBytes: 256,
  labels: 64,
  labelKeyBytes: 128,
  labelValueBytes: 1024,
  failureTypeBytes: 1024,
  failureMessageBytes: 64 * 1024,
  failureStackBytes: 256 * 1024,
  retryLimit: 10_000,
  /** backoff_min, backoff_max, retry_after, delay and timeout. */
  durationMs: 365 * DAY,
  waitMs: 60 * SECOND,
  leaseMinMs: 100,
  leaseMaxMs: 3600 * SECOND,
  defaultLeaseMs: 30 * SECOND,
  maxAttemptsPerLease: 1000,
  tasksPerRequest: 1000,
  tokensPerHeartbeat: 10_000,
  outcomesPerReport: 10_000,
  submissionsPerBatch: 1000,
  defaultPageSize: 100,
  maxPageSize: 1000,
} as const;

// The public surface of @reprise/client. The generated wire messages and the
// grpc-js adapter are re-exported too (also at "@reprise/client/wire").
export { Worker } from "./worker.js";
export { Client } from "./client.js";
export type { SubmitOptions } from "./client.js";
export { ExecutionHandle } from "./handle.js";
export type { WaitOptions } from "./handle.js";
export { Retries, DEFAULT_BACKOFF, retryPolicy } from "./retries.js";
export type { ErrorClass, RetriesInit, RetriesOption, RetryPolicyInit, When } from "./retries.js";
export {
  AttemptAbortedError,
  ExecutionAbandonedError,
  ExecutionCancelledError,
  ExecutionError,
  ExecutionFailedError,
  ExecutionTimedOutError,
  NonRetryableError,
  RetryAfterError,
  SnoozeError,
} from "./errors.js";
export type { AbortCause } from "./errors.js";
export { jsonCodec } from "./codec.js";
export type { Codec } from "./codec.js";
export type { ClientOptions, WorkerOptions } from "./options.js";
export type { ReconnectOptions } from "./backoff.js";
export type { RetryBudgetOption, TaskContext, TaskHandler, TaskOptions } from "./task.js";
export type { Logger, LogFields } from "./log.js";
export * from "./wire.js";

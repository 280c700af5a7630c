// The typed errors of the client. Callers get one Execution*Error per way an
// execution can end badly; handlers throw RetryAfterError or NonRetryableError
// to steer what the coordinator does next, without building wire messages.
import { ExecutionState } from "@reprise/wire";
import type { Execution } from "@reprise/wire";

/** Why an execution did not succeed. `result()` rejects with a subclass. */
export abstract class ExecutionError extends Error {
  /** The failure's type: the error's name for FAILED, "Abandoned", "TimedOut" or "Cancelled". */
  readonly failureType: string;
  /** The failure's message, as the worker or the coordinator reported it. */
  readonly failureMessage: string;
  /** The stack trace reported by the worker, if any. */
  readonly failureStack: string;

  constructor(readonly execution: Execution, fallbackType: string, fallbackMessage: string) {
    const failureType = execution.failure?.type || fallbackType;
    const failureMessage = execution.failure?.message || fallbackMessage;
    // Developer tools often show only the message, so it names the task, the
    // execution and the failure.
    super(`${execution.task} (execution ${execution.id}): ${failureType}: ${failureMessage}`);
    this.failureType = failureType;
    this.failureMessage = failureMessage;
    this.failureStack = execution.failure?.stackTrace ?? "";
  }

  get executionId(): string {
    return this.execution.id;
  }
}

/** The last attempt failed non-retryably or with no retries left. */
export class ExecutionFailedError extends ExecutionError {
  override readonly name = "ExecutionFailedError";
  constructor(execution: Execution) {
    super(execution, "Error", "failed");
  }
}

/** The last attempt's lease expired with no heartbeat and no retries were left. */
export class ExecutionAbandonedError extends ExecutionError {
  override readonly name = "ExecutionAbandonedError";
  constructor(execution: Execution) {
    super(execution, "Abandoned", "the attempt was abandoned");
  }
}

/** The last attempt ran past the task's timeout and no retries were left. */
export class ExecutionTimedOutError extends ExecutionError {
  override readonly name = "ExecutionTimedOutError";
  constructor(execution: Execution) {
    super(execution, "TimedOut", "the attempt timed out");
  }
}

/** The execution was cancelled. */
export class ExecutionCancelledError extends ExecutionError {
  override readonly name = "ExecutionCancelledError";
  constructor(execution: Execution) {
    super(execution, "Cancelled", "the execution was cancelled");
  }
}

/** The error `result()` rejects with for a terminal execution that did not succeed, or null. */
export function executionError(execution: Execution): ExecutionError | null {
  switch (execution.state) {
    case ExecutionState.FAILED:
      return new ExecutionFailedError(execution);
    case ExecutionState.ABANDONED:
      return new ExecutionAbandonedError(execution);
    case ExecutionState.TIMED_OUT:
      return new ExecutionTimedOutError(execution);
    case ExecutionState.CANCELLED:
      return new ExecutionCancelledError(execution);
    default:
      return null;
  }
}

export function isTerminal(state: ExecutionState): boolean {
  return state >= ExecutionState.SUCCEEDED;
}

/**
 * Thrown by a handler to ask for a specific delay before the retry, for
 * example from an HTTP Retry-After header. It is sent as `retry_after` and
 * replaces the computed backoff for that one retry, which still counts against
 * the limit. Any error with a numeric `retryAfter` property (seconds) works the
 * same; this class is a convenience. `when` still decides whether to retry.
 */
export class RetryAfterError extends Error {
  override name = "RetryAfterError";
  /** @param retryAfter seconds before the retry may start. */
  constructor(readonly retryAfter: number, message = `retry after ${retryAfter} s`, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * Thrown by a handler to say "come back later": the attempt ends SNOOZED and
 * the execution runs again after `seconds`, without using up a retry (like
 * River's snooze). The worker has done nothing, so it is allowed whatever the
 * retry policy, at most once included; `when` does not apply.
 */
export class SnoozeError extends Error {
  override name = "SnoozeError";
  /** @param seconds how long before the execution is due again (0: at once). */
  constructor(readonly seconds: number, message = `snoozed for ${seconds} s`) {
    super(message);
    if (!Number.isFinite(seconds) || seconds < 0) throw new RangeError(`SnoozeError: seconds must be a non-negative number; got ${seconds}`);
  }
}

/**
 * Thrown by a handler to fail the execution at once, whatever its retry
 * policy and `when` say (like BullMQ's UnrecoverableError).
 */
export class NonRetryableError extends Error {
  override name = "NonRetryableError";
}

/** Why an attempt's AbortSignal fired; it is the signal's `reason`. */
export type AbortCause = "cancelled" | "lost" | "timedOut" | "stopping";

export class AttemptAbortedError extends Error {
  override readonly name = "AttemptAbortedError";
  constructor(readonly reason: AbortCause, message: string) {
    super(message);
  }
}

// What a task is to the worker: its options as the user writes them, the
// context each attempt gets, and the handler's shape.
import type { RetriesOption } from "./retries.js";

export interface TaskOptions {
  /** How the task is retried; see RetriesOption. Default: at most once. */
  retries?: RetriesOption;
  /** Seconds one attempt may run before it is TIMED_OUT (retryable). Default: no timeout. */
  timeout?: number;
  /**
   * A token bucket shared by the whole coordinator that spreads the task's
   * retries: when it is empty, a retry is deferred to when the next token
   * accrues, never dropped. Default: no budget.
   */
  retryBudget?: RetryBudgetOption;
}

export interface RetryBudgetOption {
  /** How many retries per second the bucket lets through once its burst is spent. */
  perSecond: number;
  /** How many retries may start at once before the rate applies. Default 1. */
  burst?: number;
}

export interface TaskContext {
  readonly executionId: string;
  /** The attempt's number, counting from 1. */
  readonly attempt: number;
  readonly task: string;
  readonly workerId: string;
  readonly labels: Readonly<Record<string, string>>;
  /** When the attempt times out, if the task has a timeout. */
  readonly timeoutAt: Date | undefined;
  /**
   * Fires when the execution is cancelled, when the lease is lost or the
   * attempt times out, and when `worker.stop()` runs past its grace period.
   * Its `reason` is an AttemptAbortedError saying which. Pass it on to fetch()
   * and friends; after it fires, the attempt's result is not wanted (except
   * on stop, where a prompt failure lets another worker retry sooner).
   */
  readonly signal: AbortSignal;
}

export type TaskHandler<Args = unknown, Result = unknown> = (args: Args, ctx: TaskContext) => Result | Promise<Result>;

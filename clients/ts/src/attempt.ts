// One leased attempt, from its lease to the outcome to report: the handler
// runs with its own AbortSignal, and whatever it returns or throws becomes the
// Outcome. User code never sees the wire.
import type { LeasedAttempt } from "@reprise/wire";
import type { Codec } from "./codec.js";
import { describeError } from "./connection.js";
import { AttemptAbortedError, NonRetryableError, SnoozeError } from "./errors.js";
import type { AbortCause } from "./errors.js";
import { shutdownFailure, toFailure } from "./failure.js";
import type { Logger } from "./log.js";
import type { PendingOutcome } from "./reporter.js";
import type { RetriesOption, When } from "./retries.js";
import type { TaskContext, TaskHandler } from "./task.js";
import { MAX_DURATION_SECONDS, durationFromSeconds, timestampToMs } from "./time.js";

export interface RegisteredTask {
  name: string;
  retries: RetriesOption | undefined;
  when: When | undefined;
  timeout: number | undefined;
  /** As declared on the wire; undefined: no budget. */
  retryBudget: { retriesPerSecond: number; burst: number } | undefined;
  handler: TaskHandler<never, unknown>;
}

/** A leased attempt from lease to report. */
export interface LiveAttempt {
  leased: LeasedAttempt;
  /** Made when the handler first reads ctx.signal: most never do, and an AbortController per attempt showed in profiles. */
  controller: AbortController | undefined;
  abortedBy: AbortCause | undefined;
  /** Why it was aborted, kept for a signal made after the abort. */
  abortReason: AttemptAbortedError | undefined;
}

/** The attempt's signal, made on first use; already aborted if the attempt was. */
function signalOf(live: LiveAttempt): AbortSignal {
  if (live.controller === undefined) {
    live.controller = new AbortController();
    if (live.abortReason !== undefined) live.controller.abort(live.abortReason);
  }
  return live.controller.signal;
}

export type OutcomeReport = Omit<PendingOutcome, "settled">;

/** Fires the attempt's signal once; the first cause wins. */
export function abortAttempt(live: LiveAttempt, cause: AbortCause, message: string): void {
  if (live.abortedBy !== undefined) return;
  live.abortedBy = cause;
  live.abortReason = new AttemptAbortedError(cause, message);
  live.controller?.abort(live.abortReason);
}

// setTimeout cannot wait longer than this (about 24.8 days).
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Runs the handler; resolves with the report to send, or null when none is wanted. Never rejects. */
export async function runAttempt(
  live: LiveAttempt,
  task: RegisteredTask | undefined,
  options: { codec: Codec; workerId: string; logger: Logger },
): Promise<OutcomeReport | null> {
  const { leased } = live;
  const timeoutAtMs = timestampToMs(leased.timeoutAt);
  // The coordinator's heartbeat answer would say so too; a local timer fires
  // the signal on time. Past MAX_TIMER_MS, the heartbeat answer has to do.
  const untilTimeout = timeoutAtMs === undefined ? undefined : Math.max(0, timeoutAtMs - Date.now());
  const timer =
    untilTimeout === undefined || untilTimeout > MAX_TIMER_MS
      ? undefined
      : setTimeout(() => abortAttempt(live, "timedOut", "the attempt ran past its task's timeout"), untilTimeout);
  let outcome: OutcomeReport["outcome"]["outcome"];
  try {
    if (!task) throw new NonRetryableError(`worker ${options.workerId} does not run task ${JSON.stringify(leased.task)}`);
    let args: unknown;
    try {
      args = options.codec.decode(leased.arguments?.data ?? new Uint8Array(), leased.arguments?.contentType ?? "");
    } catch (error) {
      // The arguments are the same on every attempt, so a retry cannot help.
      throw new NonRetryableError(`cannot decode the arguments: ${describeError(error)}`, { cause: error });
    }
    const ctx: TaskContext = {
      executionId: leased.executionId,
      attempt: leased.attempt,
      task: leased.task,
      workerId: options.workerId,
      labels: leased.labels,
      timeoutAt: timeoutAtMs === undefined ? undefined : new Date(timeoutAtMs),
      get signal() {
        return signalOf(live);
      },
    };
    const value = await task.handler(args as never, ctx);
    outcome = { case: "result", value: { data: options.codec.encode(value), contentType: options.codec.contentType } };
  } catch (error) {
    // A snooze past the coordinator's longest delay is cut to it, as the Go client does: it would refuse the report.
    if (error instanceof SnoozeError) outcome = { case: "snooze", value: { delay: durationFromSeconds(Math.min(error.seconds, MAX_DURATION_SECONDS), "SnoozeError.seconds") } };
    // Interrupted by stop(): the handler did not fail, the worker stopped it.
    else if (live.abortedBy === "stopping") outcome = { case: "failure", value: shutdownFailure(error) };
    else outcome = { case: "failure", value: toFailure(error, task?.when) };
  } finally {
    clearTimeout(timer);
  }
  if (live.abortedBy === "cancelled" || live.abortedBy === "lost" || live.abortedBy === "timedOut") {
    // The coordinator would refuse it: the execution was cancelled, the lease
    // is gone, or the attempt timed out (the coordinator records that itself).
    options.logger.debug("attempt stopped; not reported", { execution_id: leased.executionId, attempt: leased.attempt, why: live.abortedBy });
    return null;
  }
  return { outcome: { leaseToken: leased.leaseToken, outcome }, executionId: leased.executionId, attempt: leased.attempt, task: leased.task };
}

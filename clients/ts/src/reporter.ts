// Micro-batched outcome reports: the outcomes of handlers that settle together
// (in one run of the microtask queue) go out in one ReportOutcomes call as soon
// as they have all settled, and those that settle while a call is in flight go
// out together when it returns. Reports that cannot reach
// the coordinator are kept and re-sent until it is back, since a finished
// result is the one thing a worker must not lose; refused ones (a lease that
// expired meanwhile, a cancelled execution) are logged and dropped.
import * as grpc from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceClient } from "@reprise/wire";
import type { OutcomeReceipt, OutcomeSchema } from "@reprise/wire";
import type { WorkerService } from "@reprise/wire";
import { Backoff } from "./backoff.js";
import type { ReconnectOptions } from "./backoff.js";
import { MAX_BATCH, describeError, isTransient, statusCode } from "./connection.js";
import type { FailureInit } from "./failure.js";
import type { LogFields, Logger } from "./log.js";
import { sleep, timestampToMs } from "./time.js";

const REPORT_DEADLINE_MS = 30_000;

export interface PendingOutcome {
  outcome: MessageInitShape<typeof OutcomeSchema> & { leaseToken: Uint8Array };
  executionId: string;
  attempt: number;
  task: string;
  /** Called once the outcome is accepted, refused or dropped. */
  settled: () => void;
  /** Set once a rejected result was replaced by a failure, so that is tried only once. */
  replaced?: boolean;
  /** Sent in a batch of its own, after its batch was rejected as a whole. */
  alone?: boolean;
}

export class OutcomeReporter {
  private queue: PendingOutcome[] = [];
  private flushing: Promise<void> | null = null;
  private scheduled = false;
  private readonly closing = new AbortController();
  private readonly backoff: Backoff;
  private unreachable = false;

  constructor(
    private readonly workers: ServiceClient<typeof WorkerService>,
    private readonly logger: Logger,
    reconnect: Required<ReconnectOptions>,
  ) {
    this.backoff = new Backoff(reconnect);
  }

  /** Queues an outcome; resolves once it was accepted, refused or dropped. */
  report(pending: Omit<PendingOutcome, "settled">): Promise<void> {
    return new Promise((settled) => {
      // Spelled out: a spread copy gets a hidden class of its own, slow on a hot path.
      this.queue.push({ outcome: pending.outcome, executionId: pending.executionId, attempt: pending.attempt, task: pending.task, settled, replaced: pending.replaced, alone: pending.alone });
      this.schedule();
    });
  }

  get pending(): number {
    return this.queue.length;
  }

  private schedule(): void {
    if (this.scheduled || this.flushing) return;
    this.scheduled = true;
    // nextTick runs once the microtasks queued so far have run, so the whole
    // batch is in; setImmediate would wait for the loop's check phase, behind
    // whatever else the turn does (about 0.6 ms of a retry's lateness).
    process.nextTick(() => {
      this.scheduled = false;
      this.flushing = this.flush().finally(() => {
        this.flushing = null;
        if (this.queue.length > 0 && !this.closing.signal.aborted) this.schedule();
      });
    });
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0 && !this.closing.signal.aborted) {
      const batch = this.nextBatch();
      try {
        // The deadline only guards against a connection that died silently;
        // the batch is then re-sent like after any other transient error.
        const deadline = new Date(Date.now() + REPORT_DEADLINE_MS);
        const { receipts } = await this.workers.reportOutcomes({ outcomes: batch.map((p) => p.outcome) }, { deadline });
        this.backoff.reset();
        if (this.unreachable) this.logger.info("coordinator reachable again; outcomes re-sent", { outcomes: batch.length });
        this.unreachable = false;
        batch.forEach((pending, i) => this.settle(pending, receipts[i]));
      } catch (error) {
        if (isTransient(error)) {
          if (!this.unreachable) this.logger.warn("cannot report outcomes; keeping them to re-send", { error: describeError(error), outcomes: batch.length });
          this.unreachable = true;
          this.queue.unshift(...batch);
          await sleep(this.backoff.next(), this.closing.signal);
        } else {
          this.rejected(batch, error);
        }
      }
    }
  }

  private settle(pending: PendingOutcome, receipt: OutcomeReceipt | undefined): void {
    if (receipt?.duplicate) {
      // Sent again after a reply was lost: the coordinator had recorded it.
      this.logger.debug("outcome already recorded", { execution_id: pending.executionId, task: pending.task, attempt: pending.attempt });
    } else if (!receipt?.accepted) {
      this.logger.warn("outcome refused by the coordinator; dropped", {
        execution_id: pending.executionId,
        task: pending.task,
        attempt: pending.attempt,
        outcome: String(pending.outcome.outcome?.case),
        reason: receipt?.reason ?? "no receipt",
      });
    } else if (pending.outcome.outcome?.case === "failure") {
      this.failedAttempt(pending, pending.outcome.outcome.value, receipt);
    } else if (pending.outcome.outcome?.case === "snooze") {
      const dueAt = timestampToMs(receipt.nextAttemptAt);
      this.logger.info("attempt snoozed", {
        task: pending.task,
        execution_id: pending.executionId,
        attempt: pending.attempt,
        ...(dueAt === undefined ? {} : { next_attempt_at: new Date(dueAt).toISOString() }),
      });
    }
    pending.settled();
  }

  /**
   * Logs an accepted failure at info with what the coordinator decided: a
   * retry and when it may start, or none. A failed attempt is the handler's
   * news, not the worker's trouble, so it is not a warning.
   */
  private failedAttempt(pending: PendingOutcome, failure: FailureInit, receipt: OutcomeReceipt): void {
    const fields: LogFields = {
      task: pending.task,
      execution_id: pending.executionId,
      attempt: pending.attempt,
      error_type: failure.type ?? "",
      error_message: failure.message ?? "",
      will_retry: receipt.willRetry,
    };
    const nextAttemptAt = receipt.willRetry ? timestampToMs(receipt.nextAttemptAt) : undefined;
    if (nextAttemptAt !== undefined) {
      fields.next_attempt_at = new Date(nextAttemptAt).toISOString();
      fields.retry_in_ms = Math.max(0, nextAttemptAt - Date.now());
    }
    this.logger.info(receipt.willRetry ? "attempt failed; retry scheduled" : "attempt failed; no retry, the execution has failed", fields);
  }

  /**
   * The whole call failed for a reason that will not pass (a result over the
   * payload limit, say). One bad outcome must not sink the others, so each is
   * sent alone; a result that still fails is replaced by a failure saying why,
   * so the execution is retried or ends instead of waiting for its lease.
   */
  private rejected(batch: PendingOutcome[], error: unknown): void {
    if (batch.length > 1) {
      this.queue.unshift(...batch.map((pending) => ({ ...pending, alone: true })));
      return;
    }
    const [pending] = batch;
    if (!pending) return;
    if (pending.outcome.outcome?.case === "result" && !pending.replaced) {
      // A result over the payload maximum would be as large on every retry:
      // it fails for good, as in the Python and Go clients.
      const failure: FailureInit =
        statusCode(error) === grpc.status.RESOURCE_EXHAUSTED
          ? { type: "ResultTooLarge", message: `the coordinator rejected the result: ${describeError(error)}`, nonRetryable: true }
          : { type: "ResultRejected", message: `the coordinator rejected the result: ${describeError(error)}` };
      this.queue.unshift({
        ...pending,
        alone: true,
        replaced: true,
        outcome: { leaseToken: pending.outcome.leaseToken, outcome: { case: "failure", value: failure } },
      });
      return;
    }
    this.logger.error("outcome rejected by the coordinator; dropped", {
      execution_id: pending.executionId,
      task: pending.task,
      attempt: pending.attempt,
      error: describeError(error),
    });
    pending.settled();
  }

  /** The next batch: one outcome that must go alone, or up to the maximum of the others. */
  private nextBatch(): PendingOutcome[] {
    if (this.queue[0]?.alone) return this.queue.splice(0, 1);
    const end = this.queue.findIndex((pending, i) => pending.alone || i >= MAX_BATCH);
    return this.queue.splice(0, end === -1 ? this.queue.length : end);
  }

  /** Resolves when nothing is queued or being sent. */
  async drained(): Promise<void> {
    while (this.queue.length > 0 || this.flushing || this.scheduled) {
      await (this.flushing ?? new Promise((resolve) => setImmediate(resolve)));
    }
  }

  /** Stops re-sending; whatever is still queued is logged and dropped. */
  close(): void {
    this.closing.abort();
    for (const pending of this.queue.splice(0)) {
      this.logger.error("worker stopped before the coordinator took this outcome; dropped", {
        execution_id: pending.executionId,
        task: pending.task,
        attempt: pending.attempt,
      });
      pending.settled();
    }
  }
}

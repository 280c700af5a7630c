// A handle on one execution: wait for its result, follow its progress, read
// it or cancel it. Waiting survives a coordinator restart: the watch is
// opened again, with backoff, until the execution ends.
import { equals } from "@bufbuild/protobuf";
import { ExecutionSchema, ExecutionState } from "@reprise/wire";
import type { Execution } from "@reprise/wire";
import type { ExecutionService } from "@reprise/wire";
import type { ServiceClient } from "@reprise/wire";
import { Backoff } from "./backoff.js";
import { describeError, isQuotaFull, isTransient } from "./connection.js";
import { executionError, isTerminal } from "./errors.js";
import type { ResolvedClientOptions } from "./options.js";
import { sleep } from "./time.js";

export interface WaitOptions {
  /** Stops waiting: the watch ends, and result() rejects with the signal's reason. */
  signal?: AbortSignal;
}

export class ExecutionHandle<Result = unknown> {
  constructor(
    /** The execution's id. */
    readonly id: string,
    /** The execution as Submit returned it. */
    readonly submitted: Execution | undefined,
    /** True when Submit's idempotency key matched an execution already there, so this submit created nothing. */
    readonly existing: boolean,
    private readonly executions: ServiceClient<typeof ExecutionService>,
    private readonly options: ResolvedClientOptions,
    /** Aborts when the Client is closed, so that no wait retries against a closed channel. */
    private readonly clientClosed: AbortSignal,
  ) {}

  /**
   * Resolves with the decoded result once the execution succeeds, waiting
   * through every retry. Rejects with ExecutionFailedError,
   * ExecutionAbandonedError, ExecutionTimedOutError or ExecutionCancelledError,
   * each carrying the failure and the execution.
   */
  async result(options: WaitOptions = {}): Promise<Result> {
    let last: Execution | undefined;
    for await (const snapshot of this.watch(options)) last = snapshot;
    options.signal?.throwIfAborted();
    this.clientClosed.throwIfAborted();
    if (!last || !isTerminal(last.state)) throw new Error(`execution ${this.id}: the watch ended before the execution did`);
    const error = executionError(last);
    if (error) throw error;
    if (last.state !== ExecutionState.SUCCEEDED) throw new Error(`execution ${this.id}: unexpected final state ${ExecutionState[last.state]}`);
    return this.options.codec.decode(last.result?.data ?? new Uint8Array(), last.result?.contentType ?? "") as Result;
  }

  /**
   * Yields the execution's current state, then a full snapshot at every
   * change (each lease, failure, retry and the end), and finishes after the
   * terminal one. After a coordinator restart it watches again by itself and
   * skips a snapshot it has already yielded.
   */
  async *watch(options: WaitOptions = {}): AsyncGenerator<Execution, void, undefined> {
    const signal = options.signal ? AbortSignal.any([options.signal, this.clientClosed]) : this.clientClosed;
    const backoff = new Backoff(this.options.reconnect);
    let last: Execution | undefined;
    let unreachable = false;
    while (!signal?.aborted) {
      const stream = this.executions.watchExecution({ executionId: this.id }, { signal });
      try {
        for await (const { execution } of stream) {
          if (!execution) continue;
          if (unreachable) this.options.logger.info("watching again after the coordinator came back", { execution_id: this.id });
          unreachable = false;
          backoff.reset();
          if (last && equals(ExecutionSchema, last, execution)) continue;
          last = execution;
          yield execution;
          if (isTerminal(execution.state)) return;
        }
        // An OK end without a terminal state: the coordinator went away cleanly.
      } catch (error) {
        if (signal?.aborted) return;
        if (!isTransient(error) && !isQuotaFull(error)) throw error;
        if (!unreachable) this.options.logger.warn("watch interrupted; watching again", { execution_id: this.id, error: describeError(error) });
        unreachable = true;
      } finally {
        stream.cancel();
      }
      await sleep(backoff.next(), signal);
    }
  }

  /** The execution now, with all of its attempts. */
  async get(): Promise<Execution> {
    const { execution } = await this.retryTransient(() => this.executions.getExecution({ executionId: this.id }));
    return execution!;
  }

  /**
   * Cancels the execution: a pending one ends at once; a running attempt's
   * signal fires at its worker's next heartbeat. Resolves with the execution
   * after the cancellation (unchanged if it had already ended).
   */
  async cancel(): Promise<Execution> {
    const { execution } = await this.retryTransient(() => this.executions.cancelExecution({ executionId: this.id }));
    return execution!;
  }

  /**
   * Runs the execution again after it ended FAILED, ABANDONED, TIMED_OUT or
   * CANCELLED: it is PENDING again at once, keeps its id, attempts and
   * idempotency key, and counts its retry limit afresh. Resolves with the
   * execution as re-opened; rejects with FAILED_PRECONDITION in any other
   * state. Not repeated after a lost reply: a repeat would find it PENDING.
   * Waits begun before the re-run ended with its previous end; wait again.
   */
  async rerun(): Promise<Execution> {
    const { execution } = await this.executions.rerunExecution({ executionId: this.id });
    return execution!;
  }

  /** get() and cancel() are safe to repeat, so ride out a short outage. */
  private async retryTransient<T>(call: () => Promise<T>): Promise<T> {
    const backoff = new Backoff(this.options.reconnect);
    const giveUpAt = Date.now() + this.options.reconnect.maxDelay * 1000 * 6;
    for (;;) {
      try {
        return await call();
      } catch (error) {
        if (!isTransient(error) || Date.now() > giveUpAt || this.clientClosed.aborted) throw error;
        await sleep(backoff.next(), this.clientClosed);
      }
    }
  }
}

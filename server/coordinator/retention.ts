// Retention (`reprise serve --retain DURATION`): deletes executions that
// finished longer ago than DURATION, with their attempts, so that the database
// does not grow without end. It runs beside the coordinator's timer, never in
// it, and deletes in small batches with a turn of the event loop between them,
// so that RPCs and timer ticks get in between and no batch causes a stall.
import type { Clock, TimerHandle } from "./clock.js";
import type { Logger } from "../operator/log.js";
import type { Store } from "../store/store.js";

export interface RetentionOptions {
  store: Store;
  clock: Clock;
  /** Executions that finished longer ago than this are deleted. */
  retainMs: number;
  log: Logger;
  /** Executions walked per batch (one transaction). */
  batchSize?: number;
}

/** A batch of 200 holds the event loop for about a millisecond or two. */
const DEFAULT_BATCH_SIZE = 200;

/** How often a pass runs: a tenth of the retention, between 1 s and 1 min. */
export function retentionIntervalMs(retainMs: number): number {
  return Math.min(60_000, Math.max(1_000, Math.round(retainMs / 10)));
}

export class Retention {
  private timer: TimerHandle | null = null;
  private running: Promise<number> | null = null;
  private stopped = false;

  constructor(private readonly options: RetentionOptions) {}

  /** Runs a first pass at once, then one every retentionIntervalMs. */
  start(): void {
    this.schedule(0);
  }

  /** Stops scheduling passes and waits for the one under way, if any. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) this.options.clock.clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  /** One pass over every execution that can have finished before the cutoff; resolves with how many it deleted. */
  pass(): Promise<number> {
    this.running ??= this.deleteFinished().finally(() => (this.running = null));
    return this.running;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = this.options.clock.setTimeout(() => {
      this.timer = null;
      this.pass().then(
        (deleted) => {
          if (deleted > 0) this.options.log.info("retention deleted finished executions", { deleted, retain_ms: this.options.retainMs });
        },
        (error: unknown) => this.options.log.error("retention failed; it tries again at its next pass", { error: String(error) }),
      ).finally(() => this.schedule(retentionIntervalMs(this.options.retainMs)));
    }, delayMs);
  }

  private async deleteFinished(): Promise<number> {
    const { store, clock, retainMs } = this.options;
    const limit = this.options.batchSize ?? DEFAULT_BATCH_SIZE;
    const finishedBefore = clock.now() - retainMs;
    let total = 0;
    let fromSeq: number | null = 0;
    while (fromSeq !== null && !this.stopped) {
      const from: number = fromSeq;
      const step = await store.write(async (tx) => tx.executionDeleteFinished({ finishedBefore, fromSeq: from, limit }));
      total += step.deleted;
      fromSeq = step.nextSeq;
      // A turn of the event loop, so that whatever arrived meanwhile runs before the next batch.
      await new Promise((resolve) => setImmediate(resolve));
    }
    return total;
  }
}

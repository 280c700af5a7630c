// How long each SQLite statement and commit holds the event loop.
// better-sqlite3 runs on the event loop, so one slow statement stalls every
// RPC at once: this makes such a stall visible, as the histogram
// reprise_event_loop_hold_seconds and as a warning that names the statement.
//
// Observations sit on every hot path, so they cost a clock read and an array
// increment, and are turned into the Prometheus shape only when scraped.
import type { Logger } from "./log.js";

/** Holds longer than this are logged at warn, naming the operation. */
export const WARN_HOLD_MS = 50;

const BOUNDS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const BOUNDS_MS = BOUNDS_SECONDS.map((s) => s * 1000);

interface Operation {
  readonly name: string;
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  readonly buckets: Float64Array;
  sumMs: number;
  count: number;
}

/** Called with the milliseconds one run of an operation held the event loop. */
export type HoldObserver = (ms: number) => void;

export interface HoldMeter {
  /** An observer for one named operation, made once and called on every run. */
  observer(operation: string): HoldObserver;
}

export const noHolds: HoldMeter = { observer: () => () => {} };

export class EventLoopHolds implements HoldMeter {
  readonly name = "reprise_event_loop_hold_seconds";
  readonly help = "How long one SQLite statement or commit held the event loop, by operation.";
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly operations = new Map<string, Operation>();

  constructor(private readonly log: Logger) {}

  observer(name: string): HoldObserver {
    let operation = this.operations.get(name);
    if (!operation) {
      operation = { name, buckets: new Float64Array(BOUNDS_MS.length + 1), sumMs: 0, count: 0 };
      this.operations.set(name, operation);
    }
    const target = operation;
    return (ms) => {
      let bucket = 0;
      while (bucket < BOUNDS_MS.length && ms > BOUNDS_MS[bucket]!) bucket++;
      target.buckets[bucket]!++;
      target.sumMs += ms;
      target.count++;
      if (ms > WARN_HOLD_MS) this.log.warn("the event loop was held", { operation: target.name, held_ms: Math.round(ms) });
    };
  }

  /** The metric in the shape a prom-client Registry serializes (registered with registerMetric). */
  get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const { name, buckets, sumMs, count } of this.operations.values()) {
      if (count === 0) continue;
      let cumulative = 0;
      BOUNDS_SECONDS.forEach((le, i) => {
        cumulative += buckets[i]!;
        values.push({ labels: { operation: name, le }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { operation: name, le: "+Inf" }, value: count, metricName: `${this.name}_bucket` });
      values.push({ labels: { operation: name }, value: sumMs / 1000, metricName: `${this.name}_sum` });
      values.push({ labels: { operation: name }, value: count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    for (const operation of this.operations.values()) {
      operation.buckets.fill(0);
      operation.sumMs = 0;
      operation.count = 0;
    }
  }
}

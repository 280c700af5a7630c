// Prometheus metrics, served at /metrics on `reprise serve --http-listen` (off
// by default; see api/http.ts) in the standard text format. Counters are bumped after the commit
// that made them true; gauges that describe the database are read at scrape
// time, so they cost nothing between scrapes.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** What the coordinator reports. The no-op version is used when metrics are off. */
export interface CoordinatorMetrics {
  attemptStarted(task: string, dueToStartMs: number, isRetry: boolean): void;
  attemptFinished(task: string, outcome: "succeeded" | "failed" | "abandoned" | "timed_out" | "cancelled" | "snoozed"): void;
  retryScheduled(task: string): void;
  /** A retry that the task's retry budget deferred past its computed start. */
  retryDeferred(task: string): void;
  executionRerun(task: string): void;
  reportRefused(reason: string): void;
  /** A report that repeated an outcome already recorded. */
  reportDuplicate(): void;
  commit(changes: number, ms: number): void;
}

export const noMetrics: CoordinatorMetrics = {
  attemptStarted: () => {},
  attemptFinished: () => {},
  retryScheduled: () => {},
  retryDeferred: () => {},
  executionRerun: () => {},
  reportRefused: () => {},
  reportDuplicate: () => {},
  commit: () => {},
};

/** Read at scrape time. */
export interface MetricsSources {
  executionCounts(): Promise<{ task: string; state: string; count: number }[]>;
  pendingCounts(now: number): Promise<{ due: number; delayed: number }>;
  longPolls(): number;
  watches(): number;
  now(): number;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class PrometheusMetrics implements CoordinatorMetrics {
  readonly registry = new Registry();
  private readonly started: Counter<"task">;
  private readonly finished: Counter<"task" | "outcome">;
  private readonly retries: Counter<"task">;
  private readonly abandonments: Counter<"task">;
  private readonly timeouts: Counter<"task">;
  private readonly refused: Counter<"reason">;
  private readonly deferred: Counter<"task">;
  private readonly reruns: Counter<"task">;
  private readonly duplicates: Counter;
  private readonly dispatchLatency: Histogram;
  private readonly retryLateness: Histogram;
  private readonly commitSize: Histogram;
  private readonly commitLatency: Histogram;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    // The process's own metrics, under prom-client's usual names with the
    // project's prefix: reprise_process_cpu_seconds_total, reprise_nodejs_eventloop_lag_seconds, ….
    collectDefaultMetrics({ register: this.registry, prefix: "reprise_" });
    new Gauge({
      name: "reprise_executions",
      help: "Executions in the database, by task and state.",
      labelNames: ["task", "state"],
      registers,
      async collect() {
        const counts = await sources.executionCounts();
        this.reset();
        for (const { task, state, count } of counts) this.set({ task, state }, count);
      },
    });
    new Gauge({
      name: "reprise_pending_executions",
      help: "PENDING executions: due now (waiting for a worker) or delayed (a future start or retry).",
      labelNames: ["when"],
      registers,
      async collect() {
        const { due, delayed } = await sources.pendingCounts(sources.now());
        this.set({ when: "due" }, due);
        this.set({ when: "delayed" }, delayed);
      },
    });
    new Gauge({ name: "reprise_long_polls_waiting", help: "LeaseAttempts calls waiting for work.", registers, collect() { this.set(sources.longPolls()); } });
    new Gauge({ name: "reprise_watches_open", help: "Open WatchExecution streams.", registers, collect() { this.set(sources.watches()); } });
    this.started = new Counter({ name: "reprise_attempts_started_total", help: "Attempts leased to workers.", labelNames: ["task"], registers });
    this.finished = new Counter({
      name: "reprise_attempts_finished_total",
      help: "Attempts ended, by outcome: succeeded, failed, abandoned, timed_out, cancelled or snoozed.",
      labelNames: ["task", "outcome"],
      registers,
    });
    this.retries = new Counter({ name: "reprise_retries_scheduled_total", help: "Retries scheduled after a failure, abandonment or timeout.", labelNames: ["task"], registers });
    this.abandonments = new Counter({ name: "reprise_abandonments_total", help: "Attempts whose lease expired without a heartbeat.", labelNames: ["task"], registers });
    this.timeouts = new Counter({ name: "reprise_timeouts_total", help: "Attempts that ran past their task's timeout.", labelNames: ["task"], registers });
    this.refused = new Counter({ name: "reprise_fenced_reports_total", help: "Outcomes refused (stale, unknown or malformed lease, or already ended).", labelNames: ["reason"], registers });
    this.deferred = new Counter({
      name: "reprise_retries_deferred_total",
      help: "Retries that the task's retry budget deferred past their computed start.",
      labelNames: ["task"],
      registers,
    });
    this.reruns = new Counter({ name: "reprise_executions_rerun_total", help: "Executions run again by RerunExecution.", labelNames: ["task"], registers });
    this.duplicates = new Counter({ name: "reprise_duplicate_reports_total", help: "Outcomes that repeated one already recorded, accepted as duplicates.", registers });
    this.dispatchLatency = new Histogram({ name: "reprise_dispatch_latency_seconds", help: "From when an attempt was due to when a worker leased it.", buckets: LATENCY_BUCKETS, registers });
    this.retryLateness = new Histogram({ name: "reprise_retry_lateness_seconds", help: "From when a retry was due to when a worker leased it.", buckets: LATENCY_BUCKETS, registers });
    this.commitSize = new Histogram({ name: "reprise_commit_batch_size", help: "Changes committed together in one transaction (group commit).", buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000], registers });
    this.commitLatency = new Histogram({ name: "reprise_commit_duration_seconds", help: "Time to commit one transaction.", buckets: LATENCY_BUCKETS, registers });
  }

  attemptStarted(task: string, dueToStartMs: number, isRetry: boolean): void {
    this.started.inc({ task });
    this.dispatchLatency.observe(Math.max(0, dueToStartMs) / 1000);
    if (isRetry) this.retryLateness.observe(Math.max(0, dueToStartMs) / 1000);
  }

  attemptFinished(task: string, outcome: Parameters<CoordinatorMetrics["attemptFinished"]>[1]): void {
    this.finished.inc({ task, outcome });
    if (outcome === "abandoned") this.abandonments.inc({ task });
    if (outcome === "timed_out") this.timeouts.inc({ task });
  }

  retryScheduled(task: string): void {
    this.retries.inc({ task });
  }

  retryDeferred(task: string): void {
    this.deferred.inc({ task });
  }

  executionRerun(task: string): void {
    this.reruns.inc({ task });
  }

  reportRefused(reason: string): void {
    this.refused.inc({ reason });
  }

  reportDuplicate(): void {
    this.duplicates.inc();
  }

  commit(changes: number, ms: number): void {
    this.commitSize.observe(changes);
    this.commitLatency.observe(ms / 1000);
  }
}

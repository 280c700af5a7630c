// The workloads of issue 5, each written once against the small system
// interface (prepare, workerConfig, enqueueBulk, submitOne, confirmDone,
// finish) that reprise.mjs, bullmq.mjs and graphile.mjs implement.
import { now, percentile, progress, sleep, startWorker, within } from "./common.mjs";

const CONCURRENCY = 64;
/** W3 and W4 samples left out of `p99Steady`: a new workload's first calls warm up every process on its path. */
const WARMUP = 5;

async function withWorker(system, workload, mode, expected, body, { execArgv } = {}) {
  await system.prepare(workload);
  let worker;
  try {
    worker = await startWorker(
      { ...system.workerConfig(workload), system: system.name, mode, expected, concurrency: CONCURRENCY, retryDelayMs: system.retryDelayMs(workload) },
      { execArgv },
    );
    const result = await body(worker);
    const stats = await worker.stop();
    worker = undefined;
    return { ...result, stats };
  } finally {
    worker?.kill();
    await system.finish();
  }
}

/**
 * W1, W2, W5, W6: enqueue `count` items in bulk while one worker process at
 * concurrency 64 works them; time from the first enqueue to the moment the
 * system has recorded the last completion.
 */
export async function throughput(system, workload, { count, mode = "noop", timeoutMs, execArgv, onStarted }) {
  return withWorker(
    system,
    workload,
    mode,
    count,
    async (worker) => {
      await onStarted?.();
      const done = worker.waitFor("done", timeoutMs);
      const started = now();
      await system.enqueueBulk(count, workload);
      const enqueued = now();
      const last = await done;
      await within(system.confirmDone(last), 30_000, `${system.name} confirmDone`);
      const ended = now();
      const seconds = (ended - started) / 1000;
      return { seconds, perSecond: count / seconds, enqueueSeconds: (enqueued - started) / 1000 };
    },
    { execArgv },
  );
}

/** W3: the worker is idle and long-polling; submit one at a time, `gapMs` apart, and measure submit to handler start. */
export async function dispatchLatency(system, { count, gapMs = 20, timeoutMs }) {
  const result = await withWorker(system, "W3", "latency", count, async (worker) => {
    // Let the worker settle into its idle wait (long-poll, blocking pop, LISTEN).
    await sleep(500);
    const done = worker.waitFor("done", timeoutMs);
    const first = now();
    for (let i = 0; i < count; i++) {
      const t = now();
      await system.submitOne({ i, t }, "W3");
      const next = first + (i + 1) * gapMs;
      const wait = next - now();
      if (wait > 0) await sleep(wait);
    }
    await done;
    return {};
  });
  return summarise(result.stats.latencies, count, "latencies");
}

/**
 * W4: `count` executions fail once and must retry after 1 s (or the system's
 * fixed first retry delay). Lateness is the retry's handler start minus the
 * first attempt's throw plus the delay, both as the worker saw them; submits
 * are spread `gapMs` apart so that the retries come due one by one.
 */
export async function retryTimer(system, { count, gapMs = 5, timeoutMs }) {
  const result = await withWorker(system, "W4", "failonce", count, async (worker) => {
    const done = worker.waitFor("done", timeoutMs);
    const first = now();
    for (let i = 0; i < count; i++) {
      await system.submitOne({ i, t: now() }, "W4");
      const wait = first + (i + 1) * gapMs - now();
      if (wait > 0) await sleep(wait);
    }
    await done;
    return {};
  });
  return summarise(result.stats.lateness, count, "lateness samples");
}

/**
 * Samples are in the order they were taken. `first` and `p99Steady` (the p99
 * of all but the first WARMUP samples) show how much of the tail is the
 * processes warming up to a new workload rather than the steady state.
 */
function summarise(samples, expected, what) {
  if (samples.length !== expected) throw new Error(`expected ${expected} ${what}, got ${samples.length}`);
  return {
    p50: percentile(samples, 50),
    p95: percentile(samples, 95),
    p99: percentile(samples, 99),
    p99Steady: percentile(samples.length > WARMUP ? samples.slice(WARMUP) : samples, 99),
    first: samples[0],
    max: Math.max(...samples),
    min: Math.min(...samples),
  };
}

export function describe(workload, system, result) {
  if ("perSecond" in result) {
    return `${result.perSecond.toFixed(0)}/s (${result.seconds.toFixed(2)} s, enqueue ${result.enqueueSeconds.toFixed(2)} s)`;
  }
  return `p50 ${result.p50.toFixed(2)} ms, p95 ${result.p95.toFixed(2)}, p99 ${result.p99.toFixed(2)}, max ${result.max.toFixed(2)}`;
}

export { progress };

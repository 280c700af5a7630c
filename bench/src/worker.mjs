// One worker process of one system, forked by the harness with an IPC channel.
// It runs the workload's handler at the given concurrency and tells the harness
// when it has seen the expected number of completions. Timestamps are
// wall-clock milliseconds with sub-millisecond resolution, comparable across
// the processes of this machine.
//
//   argv[2]: JSON { system, mode, expected, concurrency, address | redisPort | pgUrl, queue }
//
// Modes:
//   noop      every attempt succeeds at once (W1, W5, W6)
//   failonce  the first attempt of each item throws a retryable error and the
//             second succeeds (W2 with the smallest delay, W4 with 1 s)
//   latency   records handler start minus the submit time carried in the
//             arguments (W3)
import { now } from "./common.mjs";
import { clientModule } from "./paths.mjs";

const config = JSON.parse(process.argv[2]);
const { system, mode, expected, concurrency } = config;

let completed = 0;
let lastId = "";
const seen = new Set();
/** W3: submit-to-start latency per item. W4: first failure and second start per item. */
const latencies = [];
const failedAt = new Map();
const retryStartedAt = new Map();

class TransientError extends Error {
  name = "TransientError";
}

/** The work itself; returns false when it threw on purpose (the attempt will be retried). */
function work(args) {
  const started = now();
  if (mode === "latency") latencies.push(started - args.t);
  if (mode === "failonce") {
    if (!seen.has(args.i)) {
      seen.add(args.i);
      failedAt.set(args.i, now());
      throw new TransientError(`first attempt of ${args.i} fails on purpose`);
    }
    retryStartedAt.set(args.i, started);
  }
}

/** Counts one finished (successful) execution; the last one tells the harness. */
function finished(id) {
  completed += 1;
  lastId = String(id);
  if (completed === expected) send({ type: "done", at: now(), lastId, completed });
}

function send(message) {
  process.send?.(message);
}

let stop = async () => {};

async function startReprise() {
  const { Worker, Retries } = await import(clientModule);
  const silentLogger = { debug() {}, info() {}, warn() {}, error() {} };
  const retries = mode === "failonce" ? new Retries({ limit: 1, backoff: [config.retryDelayMs / 1000, config.retryDelayMs / 1000] }) : undefined;
  const worker = new Worker({ address: config.address, concurrency, logger: config.quiet ? silentLogger : undefined });
  worker.task(config.queue, { retries }, async (args, ctx) => {
    work(args);
    // The coordinator takes the outcome in the next report batch; the harness
    // confirms that the last one was recorded.
    queueMicrotask(() => finished(ctx.executionId));
    return null;
  });
  await worker.start();
  stop = () => worker.stop({ grace: 5 });
}

async function startBullmq() {
  const { Worker } = await import("bullmq");
  const worker = new Worker(
    config.queue,
    async (job) => {
      work(job.data);
    },
    { connection: { host: "127.0.0.1", port: config.redisPort }, concurrency, autorun: false },
  );
  // Emitted once the job has been moved to completed in Redis.
  worker.on("completed", (job) => finished(job.id));
  worker.on("error", (error) => process.stderr.write(`bullmq worker error: ${error.message}\n`));
  void worker.run();
  await worker.waitUntilReady();
  stop = () => worker.close();
}

async function startGraphile() {
  const { run, Logger } = await import("graphile-worker");
  // Failed attempts are expected here: keep their log lines (with stacks) out of
  // the measurement, as the other systems log nothing per failure either.
  const logger = new Logger(() => (level, message, meta) => {
    if (level === "error" && meta?.failure) return;
    if (level === "error" || level === "warning") process.stderr.write(`graphile-worker ${level}: ${message}\n`);
  });
  const runner = await run({
    connectionString: config.pgUrl,
    concurrency,
    // Its docs (and a warning at start) ask for at least one connection per concurrent job.
    maxPoolSize: concurrency,
    noHandleSignals: true,
    pollInterval: config.pollInterval,
    logger,
    taskList: {
      [config.queue]: async (payload) => {
        work(payload);
      },
    },
  });
  // "job:complete" fires before the completion is written (it is not awaited);
  // the harness confirms in the database that no job is left.
  runner.events.on("job:success", ({ job }) => finished(job.id));
  stop = () => runner.stop();
}

process.on("message", async (message) => {
  if (message?.type !== "stop") return;
  const timer = setTimeout(() => process.exit(3), 15_000);
  try {
    await stop();
  } finally {
    clearTimeout(timer);
  }
  const lateness = [];
  for (const [i, at] of retryStartedAt) {
    const failed = failedAt.get(i);
    if (failed !== undefined) lateness.push(at - (failed + config.retryDelayMs));
  }
  // Exit only once the (possibly large) message has been handed to the channel.
  process.send({ type: "stats", completed, latencies, lateness }, () => process.exit(0));
});
process.on("disconnect", () => process.exit(0));

const starters = { reprise: startReprise, bullmq: startBullmq, graphile: startGraphile };
try {
  process.env.NO_LOG_SUCCESS = "1";
  await starters[system]();
  send({ type: "ready", at: now() });
} catch (error) {
  process.stderr.write(`${system} worker failed to start: ${error?.stack ?? error}\n`);
  process.exit(2);
}

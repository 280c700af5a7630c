// One worker process of one system, forked by the harness with an IPC channel.
// It runs the workload's handler at the given concurrency and tells the harness
// when it has seen the expected number of completions. Timestamps are
// wall-clock milliseconds with sub-millisecond resolution, comparable across
// the processes of this machine.
//
//   argv[2]: JSON { system, mode, expected, concurrency, queue, and
//             address (reprise, reprise-pg, reprise-plain, reprise-floor) | leaseAddress + reportAddress
//             (reprise-pg3) | redisPort (bullmq) | pgUrl (graphile) }
//
// Modes:
//   noop      every attempt succeeds at once (W1, W5, W6)
//   failonce  the first attempt of each item throws a retryable error and the
//             second succeeds (W2 with the smallest delay, W4 with 1 s)
//   latency   records handler start minus the submit time carried in the
//             arguments (W3)
import { now, sleep } from "./common.mjs";
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

/**
 * reprise-pg3: the loop of @reprise/client's Worker (which talks to one
 * address) written on the raw WorkerService stubs, so that it can lease from
 * one node and report to another. DeclareTasks and LeaseAttempts go to
 * `leaseAddress`: a long-poll (wait 30 s, lease 30 s, the Worker's defaults)
 * for as many attempts as there are free slots. ReportOutcomes goes to
 * `reportAddress`: every outcome of one event-loop turn in one call, one call
 * in flight, as the Worker's reporter does. It sends no heartbeats: every
 * attempt here ends within milliseconds of its lease, far inside the 30 s
 * lease, and the Worker's first heartbeat would come after 10 s.
 */
async function startRepriseAcrossNodes() {
  const { WorkerService, Retries, createServiceClient, retryPolicy } = await import(clientModule);
  const leases = createServiceClient(WorkerService, config.leaseAddress);
  const reports = createServiceClient(WorkerService, config.reportAddress);
  const workerId = `bench-${process.pid}`;
  const tasks = [config.queue];
  const delay = config.retryDelayMs / 1000;
  const retries = mode === "failonce" ? new Retries({ limit: 1, backoff: [delay, delay] }) : undefined;
  await leases.declareTasks({ workerId, tasks: [{ name: config.queue, retryPolicy: retryPolicy(retries) }] });

  const thirtySeconds = { seconds: 30n, nanos: 0 };
  const stopping = new AbortController();
  const decoder = new TextDecoder();
  const result = { data: new TextEncoder().encode("null"), contentType: "application/json" };
  const queue = [];
  let flushing = null;
  let scheduled = false;

  const flush = async () => {
    while (queue.length > 0) {
      const batch = queue.splice(0, 1000);
      try {
        const { receipts } = await reports.reportOutcomes({ outcomes: batch }, { deadline: new Date(Date.now() + 30_000) });
        const refused = receipts.filter((r) => !r.accepted);
        if (refused.length > 0) process.stderr.write(`reprise-pg3 worker: ${refused.length} outcome(s) refused: ${refused[0].reason}\n`);
      } catch (error) {
        // Reports are the one thing a worker must not lose: send them again (the harness's timeout bounds this).
        process.stderr.write(`reprise-pg3 worker: ReportOutcomes failed, sending again in 100 ms: ${error?.message ?? error}\n`);
        queue.unshift(...batch);
        await sleep(100);
      }
    }
  };
  const report = (outcome) => {
    queue.push(outcome);
    if (scheduled || flushing) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      flushing = flush().finally(() => {
        flushing = null;
      });
    });
  };

  // The handler is synchronous, so a slot is free again as soon as run() returns.
  const run = (leased) => {
    let outcome;
    try {
      const data = leased.arguments?.data ?? new Uint8Array();
      work(data.length === 0 ? undefined : JSON.parse(decoder.decode(data)));
      outcome = { case: "result", value: result };
      queueMicrotask(() => finished(leased.executionId));
    } catch (error) {
      outcome = { case: "failure", value: { type: error.name, message: error.message, stackTrace: error.stack ?? "" } };
    }
    report({ leaseToken: leased.leaseToken, outcome });
  };

  const leaseLoop = (async () => {
    while (!stopping.signal.aborted) {
      try {
        const { attempts } = await leases.leaseAttempts(
          { workerId, tasks, maxAttempts: concurrency, wait: thirtySeconds, leaseDuration: thirtySeconds },
          { signal: stopping.signal, deadline: new Date(Date.now() + 60_000) },
        );
        for (const leased of attempts) run(leased);
      } catch (error) {
        if (stopping.signal.aborted) break;
        process.stderr.write(`reprise-pg3 worker: LeaseAttempts failed, trying again in 100 ms: ${error?.message ?? error}\n`);
        await sleep(100);
      }
    }
  })();

  stop = async () => {
    stopping.abort();
    await leaseLoop;
    while (queue.length > 0 || scheduled || flushing) await (flushing ?? new Promise((resolve) => setImmediate(resolve)));
    leases.raw.close();
    reports.raw.close();
  };
}

/**
 * reprise-plain: the worker any language's client would write from
 * docs/clients.md, on proto-loader stubs (plain-protos.mjs). One
 * LeaseAttempts in flight, asking for as many attempts as there are free
 * slots, with `wait` 1 s; the handlers of one lease reply run, and their
 * outcomes go out in one ReportOutcomes that the loop does not wait for.
 */
async function startPlain() {
  const { duration, plainWorkers } = await import("./plain-protos.mjs");
  const workers = plainWorkers(config.address);
  const workerId = `plain-${process.pid}`;
  const delay = duration(config.retryDelayMs);
  const retryPolicy = mode === "failonce" ? { limit: 1, backoffMin: delay, backoffMax: delay } : undefined;
  await workers.declareTasks({ workerId, tasks: [{ name: config.queue, retryPolicy }] });
  const oneSecond = duration(1000);
  const lease = duration(30_000);
  const result = { data: Buffer.from("null"), contentType: "application/json" };
  let stopping = false;
  let reports = 0;

  const leaseLoop = (async () => {
    while (!stopping) {
      let attempts;
      try {
        ({ attempts } = await workers.leaseAttempts({ workerId, tasks: [config.queue], maxAttempts: concurrency, wait: oneSecond, leaseDuration: lease }, 10_000));
      } catch (error) {
        process.stderr.write(`reprise-plain worker: LeaseAttempts failed, trying again in 100 ms: ${error?.message ?? error}\n`);
        await sleep(100);
        continue;
      }
      if (attempts.length === 0) continue;
      const outcomes = [];
      const succeeded = [];
      for (const leased of attempts) {
        try {
          work(leased.arguments.data.length === 0 ? undefined : JSON.parse(leased.arguments.data.toString()));
          outcomes.push({ leaseToken: leased.leaseToken, result });
          succeeded.push(leased.executionId);
        } catch (error) {
          outcomes.push({ leaseToken: leased.leaseToken, failure: { type: error.name, message: error.message, stackTrace: error.stack ?? "" } });
        }
      }
      reports++;
      workers
        .reportOutcomes({ outcomes })
        .then(({ receipts }) => {
          const refused = receipts.filter((r) => !r.accepted);
          if (refused.length > 0) process.stderr.write(`reprise-plain worker: ${refused.length} outcome(s) refused: ${refused[0].reason}\n`);
          for (const id of succeeded) finished(id);
        })
        .catch((error) => process.stderr.write(`reprise-plain worker: ReportOutcomes failed: ${error?.message ?? error}\n`))
        .finally(() => reports--);
    }
  })();

  stop = async () => {
    stopping = true;
    await leaseLoop;
    while (reports > 0) await sleep(1);
    workers.raw.close();
  };
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

const starters = {
  reprise: startReprise,
  "reprise-pg": startReprise,
  "reprise-pg3": startRepriseAcrossNodes,
  "reprise-plain": startPlain,
  // The same worker against floor-relay.mjs.
  "reprise-floor": startPlain,
  bullmq: startBullmq,
  graphile: startGraphile,
};
try {
  process.env.NO_LOG_SUCCESS = "1";
  await starters[system]();
  send({ type: "ready", at: now() });
} catch (error) {
  process.stderr.write(`${system} worker failed to start: ${error?.stack ?? error}\n`);
  process.exit(2);
}

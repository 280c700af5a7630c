// The history phase (issue 11): a coordinator that holds `count` finished
// executions, built through the public API as a service accumulates them
// (SubmitBatch, LeaseAttempts, ReportOutcomes), then restarted on that
// database and kept running for every repetition of the phase: W3 and W4 run
// on it unchanged, and the probes below time a metrics scrape and
// state-filtered ListExecutions calls.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { median, now, progress, sleep } from "./common.mjs";
import { clientModule } from "./paths.mjs";
import { LoopWindow } from "./scrape.mjs";
import { RepriseSystem, startCoordinator } from "./systems/reprise.mjs";

const { ExecutionService, ExecutionState, WorkerService, createServiceClient } = await import(clientModule);
const BATCH = 1000;
const NO_DELAY = { seconds: 0n, nanos: 0 };

/**
 * The mix: a handful of tasks, each with its own share of failures. Of every
 * 100 executions of a task, the first `failFirst` fail their first attempt;
 * with a retry left, the first `failAgain` of those fail the retry too. Tasks
 * without retries end FAILED at once (at most once). About 3 % end FAILED and
 * 1.6 % succeed on a retry; the rest succeed at once.
 */
export const HISTORY_TASKS = [
  { name: "send_email", retries: 1, failFirst: 4, failAgain: 1, error: "SmtpError", message: "421 service not available" },
  { name: "resize_image", retries: 0, failFirst: 1, failAgain: 0, error: "DecodeError", message: "unsupported image format" },
  { name: "charge_card", retries: 0, failFirst: 3, failAgain: 0, error: "PaymentDeclined", message: "card declined", keyed: true },
  { name: "sync_crm", retries: 1, failFirst: 10, failAgain: 5, error: "HttpError", message: "HTTP 503 from the CRM" },
  { name: "call_partner_api", retries: 0, failFirst: 6, failAgain: 0, error: "HttpError", message: "HTTP 502 from the partner" },
];
const TASK_NAMES = HISTORY_TASKS.map((t) => t.name);

function submission(i) {
  const task = HISTORY_TASKS[i % HISTORY_TASKS.length];
  const tenant = `t${i % 20}`;
  return {
    task: task.name,
    arguments: { data: Buffer.from(JSON.stringify({ i, tenant, ref: `order-${String(i).padStart(8, "0")}` })), contentType: "application/json" },
    retryPolicy: task.retries > 0 ? { limit: task.retries, backoffMin: NO_DELAY, backoffMax: NO_DELAY } : undefined,
    idempotencyKey: task.keyed ? `charge-${i}` : "",
    labels: { tenant },
  };
}

/** What the handler of one leased attempt reports, decided by the execution's index and the attempt number. */
function outcomeOf(leased) {
  const { i } = JSON.parse(Buffer.from(leased.arguments.data).toString());
  const task = HISTORY_TASKS[i % HISTORY_TASKS.length];
  const slot = Math.floor(i / HISTORY_TASKS.length) % 100;
  const fails = slot < (leased.attempt === 1 ? task.failFirst : task.failAgain);
  if (!fails) {
    return { leaseToken: leased.leaseToken, outcome: { case: "result", value: { data: Buffer.from(`{"ok":true,"i":${i}}`), contentType: "application/json" } } };
  }
  const message = `${task.name}: ${task.message} (item ${i}, attempt ${leased.attempt})`;
  const stackTrace = `${task.error}: ${message}\n    at ${task.name} (/srv/worker/tasks.js:${40 + (i % 7)}:11)\n    at runAttempt (/srv/worker/runner.js:88:24)`;
  return { leaseToken: leased.leaseToken, outcome: { case: "failure", value: { type: task.error, message, stackTrace } } };
}

/**
 * Builds the database: `count` executions submitted 1,000 per SubmitBatch,
 * each batch leased and reported until every one of them has ended (retries
 * are due at once, so they are leased in the same round). Returns the file,
 * the time it took, the final states and the largest hold while it grew.
 */
export async function buildHistory(workDir, count, { timeoutMs }) {
  const db = join(workDir, `history-${count}.db`);
  removeDatabase(db);
  const coordinator = await startCoordinator({ db, metrics: true });
  const executions = createServiceClient(ExecutionService, coordinator.address);
  const workers = createServiceClient(WorkerService, coordinator.address);
  const started = now();
  const deadline = started + timeoutMs;
  const ended = { succeeded: 0, failed: 0, retried: 0 };
  try {
    const window = await LoopWindow.open(coordinator.metricsUrl);
    let lastProgress = started;
    for (let start = 0; start < count; start += BATCH) {
      if (now() > deadline) throw new Error(`history: ${start.toLocaleString("en")} of ${count.toLocaleString("en")} after ${timeoutMs / 1000} s`);
      const size = Math.min(BATCH, count - start);
      const submissions = [];
      for (let i = start; i < start + size; i++) submissions.push(submission(i));
      await executions.submitBatch({ submissions }, { deadline: new Date(Date.now() + 60_000) });
      for (let tries = 0; ended.succeeded + ended.failed < start + size; tries++) {
        if (tries === 100) throw new Error(`history: batch at ${start} still has unfinished executions after 100 leases`);
        const { attempts } = await workers.leaseAttempts(
          { workerId: `history-worker-${(start / BATCH) % 4}`, tasks: TASK_NAMES, maxAttempts: BATCH },
          { deadline: new Date(Date.now() + 60_000) },
        );
        if (attempts.length === 0) continue;
        const outcomes = attempts.map(outcomeOf);
        const { receipts } = await workers.reportOutcomes({ outcomes }, { deadline: new Date(Date.now() + 60_000) });
        receipts.forEach((receipt, k) => {
          if (!receipt.accepted) throw new Error(`history: an outcome was refused: ${receipt.reason}`);
          if (receipt.willRetry) ended.retried++;
          else if (outcomes[k].outcome.case === "result") ended.succeeded++;
          else ended.failed++;
        });
      }
      const done = start + size;
      if (now() - lastProgress >= 10_000 || done === count) {
        lastProgress = now();
        const seconds = (lastProgress - started) / 1000;
        const left = done < count ? `, about ${(((count - done) * seconds) / done).toFixed(0)} s left` : "";
        progress(`history: ${done.toLocaleString("en")} of ${count.toLocaleString("en")} finished (${seconds.toFixed(0)} s, ${(done / seconds).toFixed(0)}/s${left})`);
      }
    }
    const seconds = (now() - started) / 1000;
    const loop = await window.close();
    return { db, seconds, ...ended, loop };
  } finally {
    executions.raw.close();
    workers.raw.close();
    // A clean stop folds the WAL into the database file, so the restart reads one file.
    await coordinator.stop();
  }
}

export function removeDatabase(db) {
  for (const suffix of ["", "-wal", "-shm"]) rmSync(db + suffix, { force: true });
}

/** The coordinator that serves every measurement of the phase, started on the built file with metrics on. */
export function serveHistory(db) {
  return startCoordinator({ db, metrics: true });
}

/**
 * Reprise as the workloads see it (workloads.mjs), on the one running history
 * coordinator instead of a fresh one per run. Each run is a LoopWindow: a
 * scrape at the start and one at the end, whose difference gives the largest
 * event-loop hold of that run (`lastLoop`).
 */
export class HistorySystem extends RepriseSystem {
  constructor({ workDir, coordinator }) {
    super({ workDir });
    this.served = coordinator;
  }

  async prepare() {
    this.lastLoop = undefined;
    this.window = await LoopWindow.open(this.served.metricsUrl);
    this.coordinator = this.served;
    this.connect();
  }

  async finish() {
    try {
      // A failed scrape is kept for withLoop to raise, so that it never hides the workload's own error.
      if (this.window) this.lastLoop = await this.window.close().catch((error) => ({ error }));
    } finally {
      this.window = undefined;
      this.disconnect();
      this.coordinator = undefined;
    }
  }
}

const stats = (samples) => ({ median: median(samples), max: Math.max(...samples), count: samples.length });

/**
 * On the history coordinator: `scrapes` GETs of /metrics, `scrapeGapMs` apart;
 * then `calls` rounds of three ListExecutions calls, `callGapMs` apart: state
 * FAILED with page_size 50, its second page, and state PENDING (nothing is
 * pending between runs). Each is timed at the caller, gRPC included. Then the
 * console's pages over its JSON API, as its page asks for them: the first
 * page (50 newest executions), filtered pages (50 FAILED; one tenant's label;
 * that label and FAILED), each timed to the parsed JSON.
 */
export async function probeHistory(system, { failed, scrapes = 20, calls = 20, scrapeGapMs, callGapMs, timeoutMs }) {
  const deadline = now() + timeoutMs;
  const inTime = () => {
    if (now() > deadline) throw new Error(`history probes took over ${timeoutMs / 1000} s`);
  };
  await system.prepare("probes");
  const result = {};
  try {
    const scrapeMs = [];
    for (let k = 0; k < scrapes; k++) {
      inTime();
      scrapeMs.push((await system.window.scrape()).ms);
      await sleep(scrapeGapMs);
    }
    result.scrape = stats(scrapeMs);

    const list = async (request, expected) => {
      const started = now();
      const page = await system.executions.listExecutions(request, { deadline: new Date(Date.now() + 30_000) });
      const ms = now() - started;
      if (page.executions.length !== expected.size) throw new Error(`ListExecutions ${JSON.stringify({ ...request, pageToken: undefined })}: ${page.executions.length} executions, expected ${expected.size}`);
      if (page.executions.some((e) => e.state !== request.state)) throw new Error(`ListExecutions state ${request.state} answered other states`);
      return { ms, page };
    };
    const FAILED = ExecutionState.FAILED;
    const firstPage = { size: Math.min(50, failed) };
    const secondPage = { size: Math.min(50, Math.max(0, failed - 50)) };
    // Untimed: the token of the second page, and a first call on the channel.
    const { page } = await list({ state: FAILED, pageSize: 50 }, firstPage);
    const token = page.nextPageToken;
    const times = { failedFirst: [], failedSecond: [], pendingNone: [] };
    for (let k = 0; k < calls; k++) {
      inTime();
      times.failedFirst.push((await list({ state: FAILED, pageSize: 50 }, firstPage)).ms);
      if (token) times.failedSecond.push((await list({ state: FAILED, pageSize: 50, pageToken: token }, secondPage)).ms);
      times.pendingNone.push((await list({ state: ExecutionState.PENDING, pageSize: 50 }, { size: 0 })).ms);
      await sleep(callGapMs);
    }
    const base = system.window.url.replace(/\/metrics$/, "");
    /** Times one page; `expected` is its exact size, or a range [least, most]. */
    const consolePage = async (query, expected) => {
      const started = now();
      const response = await fetch(`${base}/api/v1/executions?${query}`);
      const body = await response.json();
      const ms = now() - started;
      const [least, most] = Array.isArray(expected) ? expected : [expected, expected];
      const size = (body.executions ?? []).length;
      if (response.status !== 200 || size < least || size > most) throw new Error(`GET /api/v1/executions?${query}: ${response.status}, ${size} executions, expected ${expected}`);
      return ms;
    };
    times.consoleFirst = [];
    times.consoleFailed = [];
    times.consoleLabel = [];
    times.consoleLabelFailed = [];
    for (let k = 0; k < calls; k++) {
      inTime();
      times.consoleFirst.push(await consolePage("page_size=50", 50));
      times.consoleFailed.push(await consolePage("state=FAILED&page_size=50", firstPage.size));
      // One tenant of 20 (submission() labels every execution), then its failures: a page of the label's walk.
      times.consoleLabel.push(await consolePage("label=tenant=t7&page_size=50", [1, 50]));
      times.consoleLabelFailed.push(await consolePage("label=tenant=t7&state=FAILED&page_size=50", [0, 50]));
      await sleep(callGapMs);
    }
    for (const [key, samples] of Object.entries(times)) result[key] = samples.length ? stats(samples) : undefined;
  } finally {
    await system.finish();
  }
  if (system.lastLoop?.error) throw system.lastLoop.error;
  return { ...result, loop: system.lastLoop };
}

const fmt = (ms) => ms.toFixed(ms < 10 ? 2 : 1);
const pair = (s) => (s ? `${fmt(s.median)} / ${fmt(s.max)}` : "–");

export function describeProbes(result) {
  return `scrape ${pair(result.scrape)} ms; FAILED page 1 ${pair(result.failedFirst)}, page 2 ${pair(result.failedSecond)}, PENDING (none) ${pair(result.pendingNone)}; console first page ${pair(result.consoleFirst)}, FAILED ${pair(result.consoleFailed)}, label ${pair(result.consoleLabel)}, label and FAILED ${pair(result.consoleLabelFailed)} (median / max)`;
}

// Small helpers shared by the harness and the worker processes.
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";

/** Wall-clock milliseconds with sub-millisecond resolution; comparable across processes. */
export const now = () => performance.timeOrigin + performance.now();

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function median(values) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Nearest-rank percentile, p in [0, 100]. */
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

export function chunks(count, size) {
  const out = [];
  for (let start = 0; start < count; start += size) out.push([start, Math.min(count, start + size)]);
  return out;
}

/** Logs one progress line on stderr, prefixed with the seconds since the harness began. */
const began = now();
export function progress(message) {
  process.stderr.write(`[${((now() - began) / 1000).toFixed(1).padStart(6)}s] ${message}\n`);
}

/** Rejects after `ms` with a message naming what was awaited. */
export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Every child process the harness started, so that an exit or a signal can stop them by PID. */
export const children = new Set();

export function track(child) {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

export function killChildren(signal = "SIGKILL") {
  for (const child of children) {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

const workerPath = fileURLToPath(new URL("./worker.mjs", import.meta.url));

/**
 * Forks one worker process and resolves once it is ready. The returned handle
 * waits for its "done" message and stops it, collecting its statistics.
 */
export async function startWorker(config, { execArgv = [], readyTimeoutMs = 30_000 } = {}) {
  const child = track(fork(workerPath, [JSON.stringify(config)], { execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"] }));
  const messages = [];
  const waiters = [];
  child.on("message", (message) => {
    messages.push(message);
    for (const waiter of [...waiters]) waiter();
  });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const waitFor = (type, ms) =>
    within(
      new Promise((resolve, reject) => {
        const check = () => {
          const found = messages.find((m) => m.type === type);
          if (found) {
            waiters.splice(waiters.indexOf(check), 1);
            resolve(found);
          }
        };
        waiters.push(check);
        check();
        exited.then(({ code, signal }) => reject(new Error(`${config.system} worker exited (${signal ?? code}) before "${type}"`)));
      }),
      ms,
      `${config.system} worker "${type}"`,
    );
  await waitFor("ready", readyTimeoutMs);
  return {
    pid: child.pid,
    waitFor,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return { completed: 0, latencies: [], lateness: [] };
      child.send({ type: "stop" });
      try {
        return await waitFor("stats", 20_000);
      } finally {
        await within(exited, 5_000, "worker exit").catch(() => child.kill("SIGKILL"));
      }
    },
    kill() {
      child.kill("SIGKILL");
    },
  };
}

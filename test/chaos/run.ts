// The chaos run: a mixed load through real processes over loopback while
// worker processes and coordinator nodes are SIGKILLed and restarted on the
// same database (a SQLite file for one node, or PostgreSQL shared by several),
// along with any further faults the caller injects (a database restart); then
// a drain and a check of every invariant against the database, the callers
// and the waiters.
import { spawn } from "node:child_process";
import { setMaxListeners } from "node:events";
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Client, ExecutionAbandonedError, ExecutionCancelledError, ExecutionFailedError, ExecutionState, ExecutionTimedOutError } from "@reprise/client";
import { sleep } from "../cluster-helpers.js";
import { tempDir, until } from "../helpers.js";
import { checkRows, readSqliteRows } from "./invariants.js";
import type { ChaosFindings } from "./invariants.js";
import { ChaosNodes } from "./nodes.js";
import { readPostgresRows } from "./postgres-rows.js";
import { CHAOS_TASKS } from "./policies.js";
import { executionClients, recordWatch } from "./watches.js";
import type { RecordedWatch } from "./watches.js";

const WORKER = fileURLToPath(new URL("../../dist/test/chaos/worker.js", import.meta.url));
/** The same worker, spreading its calls over the nodes of a cluster. */
const CLUSTER_WORKER = fileURLToPath(new URL("../../dist/test/chaos/cluster-worker.js", import.meta.url));
const NODE_KILL = "node kill";

export interface ChaosReport extends ChaosFindings {
  seconds: number;
  submitted: number;
  acknowledged: number;
  /** Submits sent again, with the same idempotency key, after the client gave up on one. */
  resubmits: number;
  cancellations: number;
  workerKills: number;
  /** Coordinator node SIGKILLs, each followed by a restart on the same port. */
  coordinatorRestarts: number;
  /** The caller's further faults, by name: how many were injected. */
  faults: Record<string, number>;
  /** WatchExecution streams recorded and checked. */
  watches: number;
  /** Failed calls of the run's own clients (worker processes not included), by gRPC code; CANCELLED ones are ours. */
  callErrors: Record<string, number>;
}

export interface ChaosFault {
  /** When, as a fraction of the run: faults run one at a time, in order, alongside the load. */
  at: number;
  name: string;
  inject(): Promise<void>;
}

export interface ChaosOptions {
  seconds: number;
  workers?: number;
  coordinatorRestarts?: number;
  /** Submits per second, at most. */
  rate?: number;
  log?: (line: string) => void;
  /** A postgres:// URL that every node serves; default a new SQLite file. */
  db?: string;
  /** Coordinator nodes on the database (default 1): callers, waiters and workers use all of them. */
  nodes?: number;
  /** Time between worker kills, [min, max] ms (default [1500, 3500]). */
  workerKillEveryMs?: [number, number];
  faults?: ChaosFault[];
  /** Share of acknowledged executions whose WatchExecution streams are recorded and checked (default 0). */
  watchRate?: number;
}

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

function spawnWorker(script: string, address: string, id: string): ChildProcess {
  const child = spawn(process.execPath, [script, address, id], { stdio: ["ignore", "ignore", "pipe"] });
  child.stderr!.resume();
  return child;
}

/** Counts the calls that end in an error, by code. */
function tallyErrors(tally: Record<string, number>): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, _listener, next) {
        next(metadata, {
          onReceiveStatus(status, nextStatus) {
            if (status.code !== grpc.status.OK && status.code !== grpc.status.CANCELLED) {
              const code = grpc.status[status.code]!;
              tally[code] = (tally[code] ?? 0) + 1;
            }
            nextStatus(status);
          },
        });
      },
    });
}

/** Resolves with every value once all settle, or after `ms` with what settled by then. */
async function settleWithin<T>(promises: Promise<T>[], ms: number, onTimeout: () => void): Promise<T[]> {
  let timer: NodeJS.Timeout | undefined;
  const all = Promise.all(promises);
  const late = await Promise.race([all.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), ms)))]);
  clearTimeout(timer);
  if (late) onTimeout();
  return all;
}

const STATE_OF_ERROR = (error: unknown): ExecutionState | "error" =>
  error instanceof ExecutionFailedError
    ? ExecutionState.FAILED
    : error instanceof ExecutionAbandonedError
      ? ExecutionState.ABANDONED
      : error instanceof ExecutionTimedOutError
        ? ExecutionState.TIMED_OUT
        : error instanceof ExecutionCancelledError
          ? ExecutionState.CANCELLED
          : "error";

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? (() => {});
  const db = options.db ?? join(tempDir(), "chaos.db");
  const postgres = /^postgres(ql)?:\/\//.test(db);
  const nodes = await ChaosNodes.create(db, options.nodes ?? 1);
  const n = nodes.size;
  const [workerScript, workerAddress] = n === 1 ? [WORKER, nodes.addresses[0]!] : [CLUSTER_WORKER, `reprise-nodes:${nodes.addresses.join(",")}`];
  const workers = new Map<string, ChildProcess>();
  let workerSeq = 0;
  const startWorker = () => {
    const id = `chaos-worker-${++workerSeq}`;
    workers.set(id, spawnWorker(workerScript, workerAddress, id));
  };

  const callErrors: Record<string, number> = {};
  const grpcOptions = { interceptors: [tallyErrors(callErrors)] };
  const quiet = { debug() {}, info() {}, warn() {}, error() {} };
  // One client per node: a submit goes to node i, its waiter and its watch to others.
  const clients = nodes.addresses.map((address) => new Client({ address, reconnect: { minDelay: 0.05, maxDelay: 0.5 }, logger: quiet, grpcOptions }));
  const watchClients = options.watchRate ? executionClients(nodes.addresses, grpcOptions) : [];
  const stopWatching = new AbortController();
  setMaxListeners(0, stopWatching.signal); // one listener per open watch stream
  const acknowledged = new Set<string>();
  const submittedKeys = new Map<string, string | null>();
  const waiters = new Map<string, Promise<ExecutionState | "error">>();
  const watches: Promise<RecordedWatch>[] = [];
  const injected: Record<string, number> = {};
  let submitted = 0;
  let resubmits = 0;
  let cancellations = 0;
  let workerKills = 0;
  let coordinatorRestarts = 0;
  const restarts = Math.max(3, options.coordinatorRestarts ?? 3);
  const faults: ChaosFault[] = [
    ...Array.from({ length: restarts }, (_, k) => ({ at: (k + 1) / (restarts + 1), name: NODE_KILL, inject: () => nodes.killAndRestart(k % n) })),
    ...(options.faults ?? []),
  ].sort((a, b) => a.at - b.at);
  let faulting: Promise<void> = Promise.resolve();
  let faultsDone = 0;
  let faultFailed = false;
  const faultCount = faults.length;
  const [killMin, killMax] = options.workerKillEveryMs ?? [1500, 3500];
  const pending: Promise<unknown>[] = [];
  // Set once the nodes are up.
  let startedAt = Date.now();
  let endAt = startedAt + options.seconds * 1000;

  /** Submits until acknowledged, again with the same key (on the next node) whenever the client gives up. */
  const submit = async (i: number, task: string) => {
    const key = `chaos-${i}`;
    const args = CHAOS_TASKS[task]!.behaviour();
    submittedKeys.set(key, null);
    for (let node = i % n; ; node = (node + 1) % n) {
      try {
        const handle = await clients[node]!.submit(task, args, { idempotencyKey: key });
        submittedKeys.set(key, handle.id);
        acknowledged.add(handle.id);
        return { handle, node };
      } catch {
        if (Date.now() > endAt + 30_000) return undefined;
        resubmits++;
        await sleep(250);
      }
    }
  };

  try {
    await nodes.start();
    for (let i = 0; i < (options.workers ?? 3); i++) startWorker();
    startedAt = Date.now();
    endAt = startedAt + options.seconds * 1000;
    let nextWorkerKill = startedAt + 2000;
    let nextProgress = startedAt + 5000;
    const interval = 1000 / (options.rate ?? 60);
    // The load goes on until every fault has run, so that each one meets it.
    for (let i = 0; (Date.now() < endAt || (faultsDone < faultCount && !faultFailed)) && i < 1_000_000; i++) {
      const now = Date.now();
      if (now >= nextWorkerKill) {
        const [id, victim] = pick([...workers.entries()]);
        victim.kill("SIGKILL");
        workers.delete(id);
        workerKills++;
        startWorker();
        nextWorkerKill = now + killMin + Math.random() * (killMax - killMin);
      }
      while (faults.length > 0 && now >= startedAt + faults[0]!.at * options.seconds * 1000) {
        const fault = faults.shift()!;
        faulting = faulting.then(async () => {
          const began = Date.now();
          await fault.inject();
          faultsDone++;
          if (fault.name === NODE_KILL) coordinatorRestarts++;
          else injected[fault.name] = (injected[fault.name] ?? 0) + 1;
          log(`chaos: ${fault.name} from ${((began - startedAt) / 1000).toFixed(1)} s to ${((Date.now() - startedAt) / 1000).toFixed(1)} s (${coordinatorRestarts} node kills)`);
        });
        faulting.catch(() => (faultFailed = true)); // and awaited after the load
      }
      if (now >= nextProgress) {
        log(`chaos: ${Math.round((now - startedAt) / 1000)} s, ${acknowledged.size} executions acknowledged, ${workerKills} worker kills, ${coordinatorRestarts} coordinator restarts`);
        nextProgress = now + 5000;
      }
      const task = pick(Object.keys(CHAOS_TASKS));
      submitted++;
      pending.push(
        submit(i, task).then((acknowledgement) => {
          if (!acknowledgement) return; // never acknowledged: checked as such
          const { handle, node } = acknowledgement;
          if (Math.random() < 0.1) waiters.set(handle.id, clients[(node + 1) % n]!.execution(handle.id).result().then(() => ExecutionState.SUCCEEDED, STATE_OF_ERROR));
          if (Math.random() < (options.watchRate ?? 0)) watches.push(recordWatch(watchClients, (node + 2) % n, handle.id, stopWatching.signal));
          if (Math.random() < 0.05) {
            cancellations++;
            const cancel = new Promise((resolve) => setTimeout(resolve, Math.random() * 300)).then(() => handle.cancel()).catch(() => undefined);
            pending.push(cancel);
          }
        }),
      );
      await sleep(interval);
    }
    await faulting;
    await Promise.all(pending);
    log(`chaos: load over; draining ${acknowledged.size} executions`);
    await until(
      async () => {
        const open = await Promise.all(
          [ExecutionState.PENDING, ExecutionState.RUNNING].map((state) => nodes.any().executions.listExecutions({ state, pageSize: 1 })),
        ).catch(() => undefined);
        return open !== undefined && open.every((page) => page.executions.length === 0);
      },
      120_000,
      "every execution to end",
    ).catch((error: Error) => log(`chaos: ${error.message}; checking what is left`));
    const states = await settleWithin([...waiters.values()], 30_000, () => clients.forEach((client) => client.close()));
    const waited = new Map([...waiters.keys()].map((id, i) => [id, states[i]!]));
    const recorded = await settleWithin(watches, 30_000, () => stopWatching.abort());

    for (const child of workers.values()) child.kill("SIGTERM");
    await Promise.all([...workers.values()].map((child) => new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once("exit", resolve)))));
    workers.clear();
    await nodes.stop();

    const rows = postgres ? await readPostgresRows(db) : readSqliteRows(db);
    const findings = checkRows(rows, { acknowledged, waited, submitted: submittedKeys, watches: options.watchRate ? recorded : undefined });
    return {
      seconds: (Date.now() - startedAt) / 1000,
      submitted,
      acknowledged: acknowledged.size,
      resubmits,
      cancellations,
      workerKills,
      coordinatorRestarts,
      faults: injected,
      watches: recorded.length,
      callErrors,
      ...findings,
      violations: [...nodes.crashes, ...findings.violations],
    };
  } finally {
    stopWatching.abort();
    for (const client of clients) client.close();
    for (const client of watchClients) client.raw.close();
    for (const child of workers.values()) child.kill("SIGKILL");
    await nodes.kill();
  }
}

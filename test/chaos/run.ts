// The chaos run: a mixed load through real processes over loopback while
// worker processes and the coordinator are SIGKILLed and restarted on the same
// database; then a drain and a check of every invariant against the database
// and the waiters.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { Client, ExecutionAbandonedError, ExecutionCancelledError, ExecutionFailedError, ExecutionState, ExecutionTimedOutError } from "@reprise/client";
import { tempDir, until } from "../helpers.js";
import { freePort, spawnCoordinator } from "../process-helpers.js";
import type { ChildCoordinator } from "../process-helpers.js";
import { checkInvariants } from "./invariants.js";
import type { ChaosFindings } from "./invariants.js";
import { CHAOS_TASKS } from "./policies.js";

const WORKER = fileURLToPath(new URL("../../dist/test/chaos/worker.js", import.meta.url));

export interface ChaosReport extends ChaosFindings {
  seconds: number;
  submitted: number;
  acknowledged: number;
  cancellations: number;
  workerKills: number;
  coordinatorRestarts: number;
}

export interface ChaosOptions {
  seconds: number;
  workers?: number;
  coordinatorRestarts?: number;
  /** Submits per second, at most. */
  rate?: number;
  log?: (line: string) => void;
}

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

function spawnWorker(address: string, id: string): ChildProcess {
  const child = spawn(process.execPath, [WORKER, address, id], { stdio: ["ignore", "ignore", "pipe"] });
  child.stderr!.resume();
  return child;
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
  const db = join(tempDir(), "chaos.db");
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  let coordinator: ChildCoordinator = await spawnCoordinator(db, port);
  const workers = new Map<string, ChildProcess>();
  let workerSeq = 0;
  const startWorker = () => {
    const id = `chaos-worker-${++workerSeq}`;
    workers.set(id, spawnWorker(address, id));
  };
  for (let i = 0; i < (options.workers ?? 3); i++) startWorker();

  const client = new Client({ address, reconnect: { minDelay: 0.05, maxDelay: 0.5 }, logger: { debug() {}, info() {}, warn() {}, error() {} } });
  const acknowledged = new Set<string>();
  const waiters = new Map<string, Promise<ExecutionState | "error">>();
  let submitted = 0;
  let cancellations = 0;
  let workerKills = 0;
  let coordinatorRestarts = 0;
  const startedAt = Date.now();
  const endAt = startedAt + options.seconds * 1000;
  const restarts = Math.max(3, options.coordinatorRestarts ?? 3);
  const restartAt = Array.from({ length: restarts }, (_, k) => startedAt + ((k + 1) * options.seconds * 1000) / (restarts + 1));
  let nextWorkerKill = startedAt + 2000;
  let nextProgress = startedAt + 5000;
  const pending: Promise<unknown>[] = [];

  try {
    const interval = 1000 / (options.rate ?? 60);
    for (let i = 0; Date.now() < endAt && i < 1_000_000; i++) {
      const now = Date.now();
      if (now >= nextWorkerKill) {
        const [id, victim] = pick([...workers.entries()]);
        victim.kill("SIGKILL");
        workers.delete(id);
        workerKills++;
        startWorker();
        nextWorkerKill = now + 1500 + Math.random() * 2000;
      }
      if (restartAt.length > 0 && now >= restartAt[0]!) {
        restartAt.shift();
        coordinator.child.kill("SIGKILL");
        await coordinator.exited;
        coordinator.closeClients();
        coordinator = await spawnCoordinator(db, port);
        coordinatorRestarts++;
        log(`chaos: coordinator killed and restarted (${coordinatorRestarts})`);
      }
      if (now >= nextProgress) {
        log(`chaos: ${Math.round((now - startedAt) / 1000)} s, ${acknowledged.size} executions acknowledged, ${workerKills} worker kills, ${coordinatorRestarts} coordinator restarts`);
        nextProgress = now + 5000;
      }
      const task = pick(Object.keys(CHAOS_TASKS));
      const key = `chaos-${i}`;
      submitted++;
      pending.push(
        client.submit(task, CHAOS_TASKS[task]!.behaviour(), { idempotencyKey: key }).then(
          (handle) => {
            acknowledged.add(handle.id);
            if (Math.random() < 0.1) waiters.set(handle.id, handle.result().then(() => ExecutionState.SUCCEEDED, STATE_OF_ERROR));
            if (Math.random() < 0.05) {
              cancellations++;
              const cancel = new Promise((resolve) => setTimeout(resolve, Math.random() * 300)).then(() => handle.cancel()).catch(() => undefined);
              pending.push(cancel);
            }
          },
          () => undefined, // not acknowledged: the coordinator was down for too long
        ),
      );
      await new Promise((resolve) => setTimeout(resolve, interval));
    }
    await Promise.all(pending);
    log(`chaos: load over; draining ${acknowledged.size} executions`);
    await until(
      async () => {
        const open = await Promise.all(
          [ExecutionState.PENDING, ExecutionState.RUNNING].map((state) => coordinator.executions.listExecutions({ state, pageSize: 1 })),
        );
        return open.every((page) => page.executions.length === 0);
      },
      120_000,
      "every execution to end",
    );
    const waited = new Map<string, ExecutionState | "error">();
    for (const [id, result] of waiters) waited.set(id, await result);

    for (const child of workers.values()) child.kill("SIGTERM");
    await Promise.all([...workers.values()].map((child) => new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once("exit", resolve)))));
    workers.clear();
    coordinator.child.kill("SIGTERM");
    await coordinator.exited;
    coordinator.closeClients();

    const findings = checkInvariants(db, { acknowledged, waited });
    return { seconds: (Date.now() - startedAt) / 1000, submitted, acknowledged: acknowledged.size, cancellations, workerKills, coordinatorRestarts, ...findings };
  } finally {
    client.close();
    for (const child of workers.values()) child.kill("SIGKILL");
    if (coordinator.child.exitCode === null && coordinator.child.signalCode === null) {
      coordinator.child.kill("SIGKILL");
      await coordinator.exited;
    }
    coordinator.closeClients();
  }
}

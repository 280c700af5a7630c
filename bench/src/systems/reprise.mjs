// Reprise on the harness side: starts `reprise serve` with its defaults (its
// own database file), enqueues and submits through @reprise/client's Client
// (which micro-batches the submits of one event-loop turn into SubmitBatch),
// and confirms the end through GetExecution.
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { chunks, now, sleep, track, within } from "../common.mjs";
import { clientModule, coordinatorCli as cli } from "../paths.mjs";

const { Client, ExecutionService, ExecutionState, createServiceClient } = await import(clientModule);
const BATCH = 1000;
const silentLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** Reads VmRSS and VmHWM of a process, in MiB. */
export function memoryOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (key) => Number(status.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))?.[1] ?? NaN);
  return { rssMiB: kib("VmRSS") / 1024, peakRssMiB: kib("VmHWM") / 1024 };
}

/**
 * Starts a coordinator on a free port of 127.0.0.1. Resolves once it printed
 * "serving on", with the time from spawn to the first SERVING health answer.
 * With `metrics`, it also serves Prometheus metrics on a free port of
 * 127.0.0.1, as an operator would run it, and `metricsUrl` is where.
 */
export async function startCoordinator({ db, durability, metrics = false, nodeArgs = [], timeoutMs = 60_000 }) {
  const args = [...nodeArgs, cli, "serve", "--listen", "127.0.0.1:0", "--db", db];
  if (durability) args.push("--durability", durability);
  if (metrics) args.push("--metrics-listen", "127.0.0.1:0");
  const spawnedAt = now();
  const child = track(spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] }));
  let stderr = "";
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  // The whole line, which names the metrics address too when metrics are on.
  const serving = await within(
    new Promise((resolve, reject) => {
      child.stderr.on("data", (data) => {
        stderr += data;
        const match = stderr.match(/reprise: serving on (\S+)[^\n]*\n/);
        if (match) resolve(match);
      });
      exited.then(({ code, signal }) => reject(new Error(`reprise serve exited (${signal ?? code}): ${stderr.slice(-2000)}`)));
    }),
    timeoutMs,
    "reprise serve",
  );
  const address = serving[1];
  const metricsUrl = metrics ? serving[0].match(/metrics on (http:\/\/\S+\/metrics)/)?.[1] : undefined;
  if (metrics && !metricsUrl) {
    child.kill("SIGKILL");
    throw new Error(`reprise serve --metrics-listen did not say where its metrics are: ${serving[0].trim()}`);
  }
  // Keep draining stderr so that the coordinator never blocks on a full pipe.
  child.stderr.on("data", (data) => {
    if (stderr.length < 100_000) stderr += data;
  });
  const servingAt = await healthServing(address, spawnedAt + timeoutMs);
  return {
    address,
    metricsUrl,
    pid: child.pid,
    startToServingMs: servingAt - spawnedAt,
    memory: () => memoryOf(child.pid),
    stderr: () => stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      await within(exited, 15_000, "reprise serve SIGTERM").catch(() => child.kill("SIGKILL"));
    },
  };
}

/** Polls grpc.health.v1.Health/Check until it answers SERVING; returns when. */
async function healthServing(address, deadline) {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    while (now() < deadline) {
      // HealthCheckRequest{} is empty on the wire; HealthCheckResponse{status: SERVING} is 08 01.
      const status = await new Promise((resolve) =>
        client.makeUnaryRequest(
          "/grpc.health.v1.Health/Check",
          () => Buffer.alloc(0),
          (b) => b,
          {},
          { deadline: new Date(Date.now() + 1000) },
          (error, value) => resolve(error ? -1 : value.length >= 2 && value[0] === 0x08 ? value[1] : 0),
        ),
      );
      if (status === 1) return now();
      await sleep(2);
    }
    throw new Error(`${address} never answered SERVING`);
  } finally {
    client.close();
  }
}

export class RepriseSystem {
  name = "reprise";
  label = "Reprise";

  constructor({ workDir, durability, nodeArgs, seedDb }) {
    this.workDir = workDir;
    this.durability = durability;
    this.nodeArgs = nodeArgs ?? [];
    this.seedDb = seedDb;
    this.runs = 0;
  }

  /** A fresh coordinator with its own database (a copy of seedDb when given). */
  async prepare() {
    mkdirSync(this.workDir, { recursive: true });
    // A name no other run has used (every RepriseSystem counts its own runs),
    // and no -wal or -shm from an earlier file of that name next to it: SQLite
    // would apply a stale WAL to the copied seed.
    const db = join(this.workDir, `reprise-${process.pid}-${this.durability ?? "normal"}-${this.seedDb ? "seeded" : "empty"}-${++this.runs}.db`);
    for (const suffix of ["", "-wal", "-shm"]) rmSync(db + suffix, { force: true });
    if (this.seedDb) {
      copyFileSync(this.seedDb, db);
      if (existsSync(`${this.seedDb}-wal`)) copyFileSync(`${this.seedDb}-wal`, `${db}-wal`);
    }
    this.coordinator = await startCoordinator({ db, durability: this.durability, nodeArgs: this.nodeArgs });
    this.connect();
    this.db = db;
  }

  /** The harness's own clients of the coordinator: submits and GetExecution. */
  connect() {
    this.executions = createServiceClient(ExecutionService, this.coordinator.address);
    this.client = new Client({ address: this.coordinator.address, logger: silentLogger });
  }

  disconnect() {
    this.client?.close();
    this.executions?.raw.close();
    this.client = undefined;
    this.executions = undefined;
  }

  workerConfig() {
    return { address: this.coordinator.address, queue: "bench", quiet: false };
  }

  /** The retry delay each workload asks for; Reprise allows 0 (retries: N). */
  retryDelayMs(workload) {
    return workload === "W4" ? 1000 : 0;
  }

  minRetryDelay = "0 ms (`retries: 1`, backoff [0, 0])";

  async enqueueBulk(count) {
    // 1,000 submits in one turn go out as one SubmitBatch call, as the other
    // systems get 1,000 per addBulk / addJobs call.
    for (const [start, end] of chunks(count, BATCH)) {
      const submits = [];
      for (let i = start; i < end; i++) submits.push(this.client.submit("bench", { i }));
      await Promise.all(submits);
    }
  }

  async submitOne(args) {
    await this.client.submit("bench", args);
  }

  /** The worker saw its last handler finish; wait until the coordinator recorded that outcome. */
  async confirmDone({ lastId }) {
    const deadline = now() + 30_000;
    while (now() < deadline) {
      const { execution } = await this.executions.getExecution({ executionId: lastId });
      if (execution.state === ExecutionState.SUCCEEDED) return;
      await sleep(1);
    }
    throw new Error(`execution ${lastId} did not reach SUCCEEDED`);
  }

  async finish() {
    if (this.coordinator) {
      this.lastStartToServingMs = this.coordinator.startToServingMs;
      this.lastPeak = this.coordinator.memory().peakRssMiB;
    }
    this.disconnect();
    await this.coordinator?.stop();
    this.coordinator = undefined;
  }
}

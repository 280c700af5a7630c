// The rows of other languages (issue 16): Reprise's Python client against
// Celery on Redis, and Reprise's Go client against River on PostgreSQL. Each
// workload runs whole in the language's own runner (bench/python/bench.py,
// bench/go), which starts its worker, submits through its client and prints
// its figures as one JSON line. The harness starts what the runner talks to: a
// fresh `reprise serve` per run for the Reprise rows, the private Redis or
// PostgreSQL of the run for the peers.
import { spawn } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { track, within } from "../common.mjs";
import { startCoordinator } from "./reprise.mjs";

/** What each row runs: the runner (from bench/run.sh) and what it is given. */
const ROWS = {
  "reprise-py": { label: "Reprise, Python client", runner: "python", system: "reprise" },
  celery: { label: "Celery", runner: "python", system: "celery" },
  "reprise-go": { label: "Reprise, Go client", runner: "go", system: "reprise" },
  river: { label: "River", runner: "go", system: "river" },
};

export const LANGUAGE_SYSTEMS = Object.keys(ROWS);

function runnerCommand(runner) {
  if (runner === "python") {
    const python = process.env.BENCH_PYTHON;
    if (!python) throw new Error("BENCH_PYTHON is not set: run the benchmark through bench/run.sh, which prepares bench/python's virtualenv");
    return [python, [join(import.meta.dirname, "../../python/bench.py")]];
  }
  const binary = process.env.BENCH_GO_BIN;
  if (!binary) throw new Error("BENCH_GO_BIN is not set: run the benchmark through bench/run.sh, which builds bench/go");
  return [binary, []];
}

export class LanguageSystem {
  constructor({ name, workDir }) {
    const row = ROWS[name];
    if (!row) throw new Error(`unknown system ${name}`);
    this.name = name;
    this.label = row.label;
    this.row = row;
    this.workDir = workDir;
    this.runs = 0;
  }

  /** Runs `workload` with `count` executions in the runner; resolves with its figures. */
  async run(workload, { count, timeoutMs }) {
    // At least two minutes: a runner also starts its worker (a Python
    // interpreter, Celery), which a busy CI machine can make slow.
    const seconds = Math.max(timeoutMs / 1000, 120);
    const args = ["--system", this.row.system, "--workload", workload, "--count", String(count)];
    args.push("--timeout", this.row.runner === "go" ? `${seconds}s` : String(seconds));
    let coordinator;
    let db;
    try {
      if (this.row.system === "reprise") {
        mkdirSync(this.workDir, { recursive: true });
        db = join(this.workDir, `${this.name}-${process.pid}-${++this.runs}.db`);
        coordinator = await startCoordinator({ db });
        args.push("--reprise-address", coordinator.address);
      } else if (this.row.system === "celery") {
        args.push("--redis-port", process.env.BENCH_REDIS_PORT ?? "");
      } else {
        args.push("--pg-url", process.env.BENCH_PG_URL ?? "");
      }
      return await this.spawnRunner(args, seconds * 1000);
    } finally {
      await coordinator?.stop();
      if (db) for (const suffix of ["", "-wal", "-shm"]) rmSync(db + suffix, { force: true });
    }
  }

  async spawnRunner(args, timeoutMs) {
    const [command, prefix] = runnerCommand(this.row.runner);
    // In a process group of its own, so that a runner that hangs goes with its worker processes.
    const child = track(spawn(command, [...prefix, ...args], { stdio: ["ignore", "pipe", "pipe"], detached: true }));
    const killGroup = () => {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    };
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (data) => (stdout += data));
    child.stderr.on("data", (data) => {
      if (stderr.length < 100_000) stderr += data;
    });
    const { code, signal } = await within(
      new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal }))),
      timeoutMs + 30_000,
      `${this.name} runner`,
    ).catch((error) => {
      killGroup();
      throw error;
    });
    if (code !== 0) throw new Error(`${this.name} runner exited (${signal ?? code}): ${stderr.trim().split("\n").slice(-5).join(" | ")}`);
    const last = stdout.trim().split("\n").at(-1) ?? "";
    try {
      return JSON.parse(last);
    } catch {
      throw new Error(`${this.name} runner printed no JSON result; its last line: ${last.slice(0, 300)}`);
    }
  }
}

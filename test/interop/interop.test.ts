// Cross-language interop: one coordinator, and workers and callers in
// TypeScript, Python and Go, each a real process using its own client library,
// sharing one execution history. Run with `npm run test:interop`; `npm test`
// skips it, because it needs the Python venv and Go as well as Node.
//
// Every scenario uses its own task names (see the programs in workers/), and
// every worker uses 1 s leases so that an abandoned attempt is noticed fast.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { AttemptState, Client, ExecutionFailedError, ExecutionState } from "@reprise/client";
import type { Execution } from "@reprise/client";
import { CLI } from "../process-helpers.js";
import { Processes } from "./processes.js";
import type { Child } from "./processes.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const WORKERS = join(ROOT, "test/interop/workers");
const PYTHON = join(ROOT, "clients/python/.venv/bin/python");
const TS_WORKER = join(ROOT, "dist/test/interop/workers/worker.js");

/** How long any one scenario may wait for a process or an execution. */
const WAIT_MS = 20_000;
const STOP_GRACE_MS = 10_000;
/**
 * The single executable to test instead of `node dist/server/cli.js`. It runs
 * with an empty environment (PATH leads nowhere, HOME is a fresh folder), as
 * on a machine with nothing installed.
 */
const COORDINATOR_BIN = process.env.REPRISE_COORDINATOR_BIN || undefined;

const run = promisify(execFile);
const ms = (t: Timestamp | undefined): number => (t ? timestampMs(t) : Number.NaN);

/** Every kind of JSON value, with text that tends to break encoders. */
const PAYLOAD = {
  text: 'Grüße, 世界! 🎉 "quoted" back\\slash\nnew line\ttab \u0000 nul \u2028 separator',
  integers: [0, -1, 42, 9007199254740991, -9007199254740991],
  floats: [0.1, -2.5, 1e-7, 6.02214076e23],
  booleans: [true, false],
  nothing: null,
  empty: { object: {}, array: [], string: "" },
  nested: { a: [{ b: [[{ c: "deep" }]] }] },
  "key with spaces and ünïcödé": "value",
};

describe.runIf(process.env.REPRISE_INTEROP === "1")("interop: TypeScript, Python and Go on one coordinator", () => {
  const processes = new Processes();
  let scratch: string;
  let goBinary: string;
  let coordinator: Child;
  let address: string;
  let client: Client;

  beforeAll(async () => {
    if (!existsSync(CLI) || !existsSync(TS_WORKER)) throw new Error(`${CLI} or ${TS_WORKER} is missing: run \`npm run build\` first`);
    if (COORDINATOR_BIN && !existsSync(COORDINATOR_BIN)) throw new Error(`REPRISE_COORDINATOR_BIN=${COORDINATOR_BIN} does not exist`);
    scratch = mkdtempSync(join(tmpdir(), "reprise-interop-"));
    goBinary = join(scratch, "interop-go");
    await Promise.all([
      // Makes clients/python/.venv, as clients/python/test.sh does; a no-op once it is current.
      run(join(ROOT, "clients/python/venv.sh"), [], { timeout: 300_000 }),
      run("go", ["build", "-o", goBinary, "."], { cwd: join(WORKERS, "go"), timeout: 300_000 }),
    ]);
    // One coordinator for the whole suite. Port 0 and the port it prints, so there is no free-port race.
    const serve = ["serve", "--listen", "127.0.0.1:0", "--db", join(scratch, "reprise.db")];
    coordinator = COORDINATOR_BIN
      ? new Processes().start("coordinator", "worker", COORDINATOR_BIN, serve, { env: { PATH: "/nonexistent", HOME: join(scratch, "home") } })
      : new Processes().start("coordinator", "worker", process.execPath, [CLI, ...serve]);
    address = (await coordinator.waitFor(/serving on (127\.0\.0\.1:\d+)/, 15_000))[1]!;
    client = new Client({ address });
  }, 600_000);

  afterEach(async () => {
    const problems = await processes.stopAll(STOP_GRACE_MS);
    if (problems.length > 0) throw new Error(`processes leaked or failed:\n${problems.join("\n")}`);
  }, STOP_GRACE_MS + 5_000);

  afterAll(async () => {
    client?.close();
    try {
      if (coordinator?.running) {
        process.kill(coordinator.process.pid!, "SIGTERM");
        const exit = await Promise.race([coordinator.exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), STOP_GRACE_MS).unref())]);
        if (!exit) {
          process.kill(coordinator.process.pid!, "SIGKILL");
          throw new Error(`the coordinator did not exit within ${STOP_GRACE_MS} ms of SIGTERM:\n${coordinator.output()}`);
        }
        if (exit.code !== 0) throw new Error(`the coordinator exited with ${exit.code ?? exit.signal}:\n${coordinator.output()}`);
      }
    } finally {
      if (scratch) rmSync(scratch, { recursive: true, force: true });
    }
  }, STOP_GRACE_MS + 5_000);

  const env = { ...process.env, PYTHONUNBUFFERED: "1", PYTHONIOENCODING: "utf-8" };

  async function startWorker(lang: "python" | "go" | "typescript", workerId: string): Promise<Child> {
    const flags = ["--address", address, "--worker-id", workerId];
    const worker =
      lang === "python"
        ? processes.start(workerId, "worker", PYTHON, [join(WORKERS, "worker.py"), ...flags], { env })
        : lang === "go"
          ? processes.start(workerId, "worker", goBinary, ["worker", ...flags])
          : processes.start(workerId, "worker", process.execPath, [TS_WORKER, ...flags]);
    await worker.waitFor(/: serving /, WAIT_MS);
    return worker;
  }

  /** Runs a Python or Go caller program to its end and returns the JSON line it printed. */
  async function call(lang: "python" | "go", task: string, args: unknown): Promise<{ id: string; result?: unknown; error?: unknown; states?: string[] }> {
    const flags = ["--address", address, "--task", task, "--args", JSON.stringify(args)];
    const caller =
      lang === "python"
        ? processes.start(`python caller of ${task}`, "one-shot", PYTHON, [join(WORKERS, "caller.py"), ...flags], { env })
        : processes.start(`go caller of ${task}`, "one-shot", goBinary, ["call", ...flags]);
    const output = await caller.finished(WAIT_MS);
    const line = output.split("\n").find((l) => l.startsWith("{"));
    if (!line) throw new Error(`${caller.name} printed no JSON line:\n${output}`);
    return JSON.parse(line);
  }

  const summary = (execution: Execution) =>
    execution.attempts.map((a) => ({ number: a.number, state: AttemptState[a.state], workerId: a.workerId }));

  test("a Python worker's retryable failure is retried, and the TypeScript caller gets the second attempt's result", async () => {
    await startWorker("python", "py-flaky");
    const args = { order: 17, note: "retry me" };

    const handle = await client.submit("py.flaky", args);
    const result = await handle.result({ signal: AbortSignal.timeout(WAIT_MS) });

    expect(result).toEqual({ lang: "python", attempt: 2, echo: args });
    const execution = await handle.get();
    expect(summary(execution)).toEqual([
      { number: 1, state: "FAILED", workerId: "py-flaky" },
      { number: 2, state: "SUCCEEDED", workerId: "py-flaky" },
    ]);
    const [first, second] = execution.attempts;
    expect(first!.failure).toMatchObject({ type: "ConnectionError", message: "refused (simulated, attempt 1)", nonRetryable: false });
    // The policy is the one the Python worker declared: 2 retries, 0.2 s apart.
    expect(first!.retryPolicy).toMatchObject({ limit: 2, unlimited: false });
    expect(ms(second!.scheduledAt) - ms(first!.finishedAt)).toBe(200);
  });

  test("a Go worker whose when rejects the error ends the execution FAILED after one attempt, without using its retries", async () => {
    await startWorker("go", "go-reject");

    const handle = await client.submit("go.reject", { path: "/missing" });
    const error = await handle.result({ signal: AbortSignal.timeout(WAIT_MS) }).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(ExecutionFailedError);
    expect(error).toMatchObject({ failureType: "HTTPError", failureMessage: "GET /missing: HTTP 404" });
    const execution = await handle.get();
    expect(execution.state).toBe(ExecutionState.FAILED);
    expect(summary(execution)).toEqual([{ number: 1, state: "FAILED", workerId: "go-reject" }]);
    expect(execution.attempts[0]!.failure?.nonRetryable).toBe(true);
    // Retries were left (the Go worker declared 3), so only `when` can have ended it.
    expect(execution.attempts[0]!.retryPolicy).toMatchObject({ limit: 3 });
    expect(execution.nextAttemptAt).toBeUndefined();
  });

  test("a Python worker SIGKILLed mid-attempt is abandoned when its lease expires, and a Go worker runs the retry", async () => {
    const python = await startWorker("python", "py-doomed");
    const args = { job: "handoff", payload: PAYLOAD };

    const handle = await client.submit("handoff", args);
    await python.waitFor(new RegExp(`started handoff ${handle.id} attempt 1`), WAIT_MS);
    expect((await handle.get()).state).toBe(ExecutionState.RUNNING);
    await python.crash();
    // Only now does a Go worker exist, so the retry can only be its.
    const go = await startWorker("go", "go-rescuer");
    const result = await handle.result({ signal: AbortSignal.timeout(WAIT_MS) });

    expect(result).toEqual({ lang: "go", attempt: 2, echo: args });
    // The result can arrive before the worker's own line has been read from its pipe.
    await go.waitFor(new RegExp(`started handoff ${handle.id} attempt 2`), WAIT_MS);
    const execution = await handle.get();
    expect(summary(execution)).toEqual([
      { number: 1, state: "ABANDONED", workerId: "py-doomed" },
      { number: 2, state: "SUCCEEDED", workerId: "go-rescuer" },
    ]);
    const [abandoned, retry] = execution.attempts;
    expect(abandoned!.failure?.type).toBe("Abandoned");
    // Abandoned no sooner than one 1 s lease after it started, and retried at once (2 immediate retries).
    expect(ms(abandoned!.finishedAt) - ms(abandoned!.startedAt)).toBeGreaterThanOrEqual(1000);
    expect(ms(retry!.scheduledAt)).toBe(ms(abandoned!.finishedAt));
    expect(ms(retry!.startedAt)).toBeGreaterThanOrEqual(ms(abandoned!.finishedAt));
  });

  test("a Python caller waits through a TypeScript worker's retry to its result, and retry_after replaces the backoff", async () => {
    await startWorker("typescript", "ts-flaky");
    const args = { greeting: "from Python" };

    const output = await call("python", "ts.flaky", args);

    expect(output.result).toEqual({ lang: "typescript", attempt: 2, echo: args });
    // The Python watch saw the retry: a RUNNING attempt, back to PENDING, then the end.
    expect(output.states!.join(" ")).toMatch(/RUNNING PENDING .*RUNNING SUCCEEDED$/);
    const execution = await client.execution(output.id).get();
    expect(summary(execution)).toEqual([
      { number: 1, state: "FAILED", workerId: "ts-flaky" },
      { number: 2, state: "SUCCEEDED", workerId: "ts-flaky" },
    ]);
    const [first, second] = execution.attempts;
    expect(first!.failure).toMatchObject({ type: "RetryAfterError", nonRetryable: false });
    // The declared backoff is 5 s; the TS worker's RetryAfterError(0.3) replaced it.
    expect(ms(second!.scheduledAt) - ms(first!.finishedAt)).toBe(300);
  });

  test("JSON payloads round-trip between every pair of caller and worker languages", async () => {
    await Promise.all([startWorker("typescript", "ts-echo"), startWorker("python", "py-echo"), startWorker("go", "go-echo")]);
    const workers = { typescript: "ts.echo", python: "py.echo", go: "go.echo" } as const;

    const runs = Object.entries(workers).flatMap(([workerLang, task]) => [
      (async () => {
        const handle = await client.submit(task, PAYLOAD);
        return { caller: "typescript", workerLang, id: handle.id, result: await handle.result({ signal: AbortSignal.timeout(WAIT_MS) }) };
      })(),
      ...(["python", "go"] as const).map(async (caller) => ({ caller, workerLang, ...(await call(caller, task, PAYLOAD)) })),
    ]);
    const outcomes = await Promise.all(runs);

    for (const outcome of outcomes) {
      expect(outcome, `${outcome.caller} caller, ${outcome.workerLang} worker`).toEqual({
        caller: outcome.caller,
        workerLang: outcome.workerLang,
        id: outcome.id,
        ...(outcome.caller === "python" ? { states: expect.any(Array) } : {}),
        result: { lang: outcome.workerLang, attempt: 1, echo: PAYLOAD },
      });
      const execution = await client.execution(outcome.id).get();
      expect(execution.state).toBe(ExecutionState.SUCCEEDED);
      expect(execution.arguments?.contentType).toBe("application/json");
      expect(execution.result?.contentType).toBe("application/json");
    }
    expect(outcomes).toHaveLength(9);
  });
});

// The `reprise` command: help, option validation, and the README quickstart
// through buf curl with server reflection.
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { Metadata, status } from "@grpc/grpc-js";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";
import { tempDir } from "./helpers.js";
import { CLI, spawnCoordinator } from "./process-helpers.js";

const run = promisify(execFile);
const BUF = fileURLToPath(new URL("../node_modules/.bin/buf", import.meta.url));

async function reprise(...args: string[]) {
  return run(process.execPath, [CLI, ...args]).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

describe("reprise serve", () => {
  test("--help shows every option with its default and environment variable", async () => {
    const { code, stdout } = await reprise("serve", "--help");
    expect(code).toBe(0);
    for (const text of ["--listen", "127.0.0.1:50051", "REPRISE_LISTEN", "--db", "./reprise.db", "--durability", "--max-payload-bytes", "--log-level"]) {
      expect(stdout).toContain(text);
    }
  });

  test("a bad option value fails at start with a message that names the option", async () => {
    const bad = await reprise("serve", "--listen", "nowhere");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--listen");
    const unknown = await reprise("serve", "--bogus");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("--bogus");
    const durability = await reprise("serve", "--durability", "sometimes");
    expect(durability.stderr).toContain("--durability");
  });

  test("--auth-tokens makes the served coordinator require a bearer token", async () => {
    const file = join(tempDir(), "tokens");
    writeFileSync(file, "caller caller-token-0123456789\n");
    const c = await spawnCoordinator(join(tempDir(), "reprise.db"), undefined, ["--auth-tokens", file]);
    try {
      await expect(c.executions.submit({ task: "t" })).rejects.toMatchObject({ code: status.UNAUTHENTICATED });
      const metadata = new Metadata();
      metadata.set("authorization", "Bearer caller-token-0123456789");
      expect((await c.executions.submit({ task: "t" }, { metadata })).execution?.task).toBe("t");
      expect(c.stderr()).not.toContain("caller-token-0123456789");
    } finally {
      c.closeClients();
      c.child.kill("SIGTERM");
      await c.exited;
    }
  });

  test("a mistyped option names the nearest real one, and a value that starts with a dash meets the option's own rule", async () => {
    const cases: [string[], string][] = [
      [["submit", "t", "--retires", "3"], "reprise: unknown option --retires; did you mean --retries?\n"],
      [["serve", "--lisen", "127.0.0.1:0"], "reprise: unknown option --lisen; did you mean --listen?\n"],
      [["submit", "t", "--retries", "-1"], 'reprise: --retries: must be a whole number from 0 to 10000, or "true"; got "-1"\n'],
      [["submit", "t", "--retries", "10001"], 'reprise: --retries: must be a whole number from 0 to 10000, or "true"; got "10001"\n'],
      [["ls", "--limit", "-5"], "reprise: --limit: must be a whole number from 1 to 1000\n"],
      [["submit", "t", "--retries", "--wait"], "reprise: --retries: needs a value\n"],
    ];
    for (const [args, stderr] of cases) expect(await reprise(...args), args.join(" ")).toMatchObject({ code: 2, stderr });
  });

  test("every line reprise serve writes to stderr is JSON, from the address it serves to its stop", async () => {
    const c = await spawnCoordinator(join(tempDir(), "reprise.db"), undefined, ["--log-level", "debug"]);
    await c.executions.submit({ task: "t" });
    c.closeClients();
    c.child.kill("SIGTERM");
    await c.exited;
    const lines = c.stderr().split("\n").filter(Boolean);
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
    expect(lines.map((line) => (JSON.parse(line) as { msg: string }).msg)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^reprise: serving on 127\.0\.0\.1:\d+ with /), "execution submitted", "reprise: SIGTERM; shutting down"]),
    );
  });

  test("an unknown command prints the usage and exits 2", async () => {
    const { code, stderr } = await reprise("launch");
    expect(code).toBe(2);
    expect(stderr).toContain("Usage: reprise");
  });

  test("buf curl lists every method through server reflection and drives submit, lease and complete", async () => {
    const c = await spawnCoordinator(join(tempDir(), "reprise.db"));
    try {
      const base = `http://${c.address}`;
      const curl = async (path: string, body?: unknown) => {
        const args = ["curl", "--protocol", "grpc", "--http2-prior-knowledge"];
        if (body !== undefined) args.push("-d", JSON.stringify(body));
        const { stdout } = await run(BUF, [...args, `${base}${path}`]);
        return stdout;
      };
      const { stdout: methods } = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-methods", base]);
      expect(methods).toContain("reprise.v1.ExecutionService/Submit");
      expect(methods).toContain("reprise.v1.WorkerService/LeaseAttempts");
      expect(methods).toContain("grpc.health.v1.Health/Check");
      expect(JSON.parse(await curl("/grpc.health.v1.Health/Check"))).toEqual({ status: "SERVING" });
      const submitted = JSON.parse(await curl("/reprise.v1.ExecutionService/Submit", { task: "hello", retryPolicy: { limit: 2 } }));
      const leased = JSON.parse(await curl("/reprise.v1.WorkerService/LeaseAttempts", { workerId: "me", tasks: ["hello"], wait: "5s" }));
      expect(leased.attempts[0].executionId).toBe(submitted.execution.id);
      const receipt = JSON.parse(
        await curl("/reprise.v1.WorkerService/ReportOutcomes", {
          outcomes: [{ leaseToken: leased.attempts[0].leaseToken, result: { data: btoa('"hi"'), contentType: "application/json" } }],
        }),
      );
      expect(receipt.receipts[0].accepted).toBe(true);
      const done = JSON.parse(await curl("/reprise.v1.ExecutionService/GetExecution", { executionId: submitted.execution.id }));
      expect(done.execution.state).toBe("EXECUTION_STATE_SUCCEEDED");
    } finally {
      c.closeClients();
      c.child.kill("SIGTERM");
      await c.exited;
    }
  });
});

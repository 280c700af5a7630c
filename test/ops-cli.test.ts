// The operator commands against a real coordinator: ls, show, submit --wait,
// watch, cancel and --json, with their exit codes.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";
import { tempDir } from "./helpers.js";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AttemptState, ExecutionSchema, ExecutionState, RetryRule } from "@reprise/wire";
import { coordinatorAddress, progressLines, secondsOrDuration } from "../server/operator/commands.js";
import { terminalStyle } from "../server/operator/format.js";
import { CLI, freePort, spawnCoordinator } from "./process-helpers.js";
import type { ChildCoordinator } from "./process-helpers.js";
import { fail, leaseNow, succeed } from "./wire-helpers.js";

const exec = promisify(execFile);

function reprise(c: ChildCoordinator, ...args: string[]) {
  return exec(process.execPath, [CLI, ...args, "--addr", c.address], { env: { ...process.env, NO_COLOR: "1" } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

async function withCoordinator(run: (c: ChildCoordinator) => Promise<void>) {
  const c = await spawnCoordinator(join(tempDir(), "reprise.db"));
  try {
    await run(c);
  } finally {
    c.closeClients();
    c.child.kill("SIGTERM");
    await c.exited;
  }
}

/** Leases the next attempt of `task` as soon as it is due. */
async function nextAttempt(c: ChildCoordinator, task: string) {
  const { attempts } = await c.workers.leaseAttempts({ workerId: "cli-test-worker", tasks: [task], wait: { seconds: 10n } });
  expect(attempts).toHaveLength(1);
  return attempts[0]!;
}

describe("reprise operator commands", () => {
  test("submit --wait shows progress through a retry, prints the result and exits 0 on success", async () => {
    await withCoordinator(async (c) => {
      const waiting = reprise(c, "submit", "flaky", "--args", '{"n":1}', "--retries", "2", "--backoff", "0.3,0.3", "--wait");
      await fail(c, await nextAttempt(c, "flaky"), { type: "ConnectionError", message: "refused" });
      await succeed(c, await nextAttempt(c, "flaky"), { sent: true });
      const { code, stdout, stderr } = await waiting;
      expect(code).toBe(0);
      expect(JSON.parse(stdout)).toEqual({ sent: true });
      expect(stderr).toMatch(/submitted [0-9a-f-]{36}/);
      expect(stderr).toMatch(/attempt 1 failed: ConnectionError: refused; retrying in 300 ms \((in [\d.]+ ms|now), backoff\)/);
      expect(stderr).toContain("attempt 2 succeeded");
      expect(stderr).toContain("execution SUCCEEDED after 2 attempts");
    });
  });

  test("submit --wait exits 1 when the execution fails after its retries", async () => {
    await withCoordinator(async (c) => {
      const waiting = reprise(c, "submit", "doomed", "--retries", "1", "--wait");
      await fail(c, await nextAttempt(c, "doomed"));
      await fail(c, await nextAttempt(c, "doomed"), { type: "ValueError", message: "bad" });
      const { code, stderr } = await waiting;
      expect(code).toBe(1);
      expect(stderr).toContain("attempt 2 failed: ValueError: bad");
      expect(stderr).toContain("execution FAILED after 2 attempts");
    });
  });

  test("show prints the attempt timeline of an execution with one retry: state, worker, error, retryability, delay and policy", async () => {
    await withCoordinator(async (c) => {
      const { stdout: id } = await reprise(c, "submit", "notify", "--retries", "3", "--backoff", "0.25,1");
      const [first] = await leaseNow(c, ["notify"]);
      await fail(c, first!, { type: "TimeoutError", message: "upstream slow" });
      await succeed(c, await nextAttempt(c, "notify"));
      const { code, stdout } = await reprise(c, "show", id.trim());
      expect(code).toBe(0);
      expect(stdout).toContain(`${id.trim()}  notify  SUCCEEDED`);
      expect(stdout).toContain("3 retries, after 0.25–1 s");
      const timeline = stdout.slice(stdout.indexOf("#  STATE"));
      expect(timeline).toMatch(/1\s+FAILED\s+test-worker\s+.*TimeoutError: upstream slow\s+retried after 2\d\d ms \(backoff; 3 retries, after 0.25–1 s\)/);
      expect(timeline).toMatch(/2\s+SUCCEEDED\s+cli-test-worker/);
      const json = JSON.parse((await reprise(c, "show", id.trim(), "--json")).stdout);
      expect(json.state).toBe("EXECUTION_STATE_SUCCEEDED");
      expect(json.attempts).toHaveLength(2);
    });
  });

  test("ls lists executions in a table and as JSON, and --retrying answers what is retrying and when it runs next", async () => {
    await withCoordinator(async (c) => {
      const ids: string[] = [];
      for (const task of ["a", "b"]) ids.push((await reprise(c, "submit", task, "--retries", "1", "--backoff", "600,600")).stdout.trim());
      const [leased] = await leaseNow(c, ["a"]);
      await fail(c, leased!, { type: "ConnectionError", message: "reset" });
      const table = (await reprise(c, "ls")).stdout;
      expect(table.split("\n")[0]).toMatch(/^ID\s+TASK\s+STATE\s+ATTEMPTS\s+NEXT \/ ENDED\s+AGE\s+LAST ERROR$/);
      for (const id of ids) expect(table).toContain(id);
      const retrying = (await reprise(c, "ls", "--retrying")).stdout;
      expect(retrying).toMatch(new RegExp(`${ids[0]}\\s+a\\s+PENDING\\s+1\\s+next in (9m 5\\d|10m 00)s.*ConnectionError: reset`));
      expect(retrying).not.toContain(ids[1]);
      const json = JSON.parse((await reprise(c, "ls", "--task", "b", "--json")).stdout);
      expect(json.map((e: { id: string }) => e.id)).toEqual([ids[1]]);
    });
  });

  test("ls --retrying --limit N shows the soonest retries of every PENDING execution, not of the newest page; with another --state it is refused", async () => {
    await withCoordinator(async (c) => {
      const failAll = async (task: string, count: number) => {
        const { attempts } = await c.workers.leaseAttempts({ workerId: "cli-test-worker", tasks: [task], maxAttempts: count });
        expect(attempts).toHaveLength(count);
        await c.workers.reportOutcomes({ outcomes: attempts.map((a) => ({ leaseToken: a.leaseToken, outcome: { case: "failure" as const, value: { type: "ConnectionError", message: "reset" } } })) });
      };
      // The oldest execution retries first; 1,000 newer ones, a page's worth, retry later.
      const soonest = (await c.executions.submit({ task: "soon", retryPolicy: { limit: 1, backoffMin: { seconds: 60n }, backoffMax: { seconds: 60n } } })).execution!.id;
      await failAll("soon", 1);
      const later = { task: "later", retryPolicy: { limit: 1, backoffMin: { seconds: 3600n }, backoffMax: { seconds: 3600n } } };
      await c.executions.submitBatch({ submissions: Array.from({ length: 1000 }, () => later) });
      await failAll("later", 1000);

      const listed = await reprise(c, "ls", "--retrying", "--limit", "1", "--json");
      expect(listed.code).toBe(0);
      expect((JSON.parse(listed.stdout) as { id: string }[]).map((e) => e.id)).toEqual([soonest]);
      expect(await reprise(c, "ls", "--retrying", "--state", "failed")).toMatchObject({ code: 2, stderr: "reprise: --retrying lists PENDING executions; leave out --state\n" });
    });
  }, 30_000);

  test("ls --label k=v lists only executions submitted with that label, all of them when repeated; a key given twice is refused", async () => {
    await withCoordinator(async (c) => {
      const both = (await reprise(c, "submit", "t", "--label", "env=prod", "--label", "team=pay")).stdout.trim();
      const prod = (await reprise(c, "submit", "t", "--label", "env=prod")).stdout.trim();
      const plain = (await reprise(c, "submit", "t")).stdout.trim();
      const listed = async (...args: string[]) => (JSON.parse((await reprise(c, "ls", "--json", ...args)).stdout) as { id: string }[]).map((e) => e.id);
      expect(await listed("--label", "env=prod")).toEqual([prod, both]);
      expect(await listed("--label", "env=prod", "--label", "team=pay")).toEqual([both]);
      expect(await listed()).toEqual([plain, prod, both]);
      const bad = await reprise(c, "ls", "--label", "env");
      expect(bad).toMatchObject({ code: 2, stderr: 'reprise: --label: must be key=value; got "env"\n' });
      const twice = await reprise(c, "submit", "t", "--label", "env=a", "--label", "env=b");
      expect(twice).toMatchObject({ code: 2, stderr: 'reprise: --label: names "env" twice\n' });
    });
  });

  test("show marks snoozed attempts and deferred retries and names the rule that set each delay: snooze, backoff, budget", async () => {
    await withCoordinator(async (c) => {
      await c.workers.declareTasks({ tasks: [{ name: "api", retryPolicy: { limit: 2, backoffMin: { seconds: 1n } }, retryBudget: { retriesPerSecond: 0.01, burst: 1 } }] });
      const first = (await reprise(c, "submit", "api")).stdout.trim();
      const second = (await reprise(c, "submit", "api")).stdout.trim();
      const [a, b] = await leaseNow(c, ["api"], 2);
      const { receipts } = await c.workers.reportOutcomes({ outcomes: [{ leaseToken: a!.leaseToken, outcome: { case: "snooze", value: { delay: { nanos: 100_000_000 } } } }] });
      expect(receipts[0]!.accepted).toBe(true);
      await fail(c, b!, { type: "Down", message: "503" });
      const again = await nextAttempt(c, "api");
      expect(again.executionId).toBe(first);
      await fail(c, again, { type: "Down", message: "503" });
      const snoozed = (await reprise(c, "show", first)).stdout;
      expect(snoozed).toMatch(/1\s+SNOOZED\s+test-worker\s+.*snoozed; due again after 100 ms \(snooze\)/);
      // The bucket's one token went to the second execution's retry; this one waits 100 s for the next.
      expect(snoozed).toMatch(/2\s+FAILED\s+cli-test-worker\s+.*Down: 503\s+retry deferred by the task's retry budget: after 1m [34]\ds, not 1.00 s \(budget; 2 retries, after 1 s\)/);
      expect((await reprise(c, "show", second)).stdout).toMatch(/1\s+FAILED\s+.*retr(ying|ied) after 1.00 s \(backoff; 2 retries, after 1 s\)/);
      const retrying = (await reprise(c, "ls", "--retrying")).stdout;
      // "next in" counts from now, so a slow machine may have spent some seconds since the failure.
      expect(retrying).toMatch(new RegExp(`${first}\\s+api\\s+PENDING\\s+2\\s+next in 1m [0-4]\\ds \\(budget\\)`));
    });
  });

  test("show says that an execution cancelled while it waited for a retry was cancelled, not that it ran out of retries", async () => {
    await withCoordinator(async (c) => {
      const id = (await reprise(c, "submit", "t", "--retries", "3", "--backoff", "600,600")).stdout.trim();
      await fail(c, (await leaseNow(c, ["t"]))[0]!, { type: "Down", message: "503" });
      await reprise(c, "cancel", id);
      const shown = (await reprise(c, "show", id)).stdout;
      expect(shown).toMatch(/1\s+FAILED\s+.*retried after 10m 00s \(backoff; 3 retries, after 600 s\); cancelled before it ran \(it was due in (9m 5\d|10m 00)s\)/);
      expect(shown).not.toContain("no retries left");
    });
  });

  test("rerun ID runs one ended execution again; rerun --state says how many it will re-run, needs --yes without a terminal, then re-runs them all", async () => {
    await withCoordinator(async (c) => {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await reprise(c, "submit", "charge")).stdout.trim());
      for (const attempt of await leaseNow(c, ["charge"], 3)) await fail(c, attempt, { type: "Declined", message: "card declined" });
      const one = await reprise(c, "rerun", ids[0]!);
      expect(one).toMatchObject({ code: 0, stdout: `${ids[0]}  PENDING  attempt 2 due now\n` });
      const again = await reprise(c, "rerun", ids[0]!);
      expect(again.code).toBe(3);
      expect(again.stderr).toMatch(/FAILED_PRECONDITION.*is PENDING; only a FAILED, ABANDONED, TIMED_OUT or CANCELLED execution can be re-run/);
      const unconfirmed = await reprise(c, "rerun", "--task", "charge", "--state", "failed", "--since", "1h");
      expect(unconfirmed.code).toBe(2);
      expect(unconfirmed.stderr).toContain("2 FAILED executions of charge that ended in the last 1h would be re-run; add --yes to confirm");
      const many = await reprise(c, "rerun", "--task", "charge", "--state", "failed", "--since", "1h", "--yes");
      expect(many.code).toBe(0);
      expect(many.stdout).toBe("re-ran 2 of 2 FAILED executions of charge that ended in the last 1h\n");
      const { executions } = await c.executions.listExecutions({ task: "charge" });
      expect(executions.map((e) => e.state)).toEqual([1, 1, 1]);
      expect((await reprise(c, "rerun", "--state", "failed", "--yes")).stdout).toBe("no FAILED executions; nothing to re-run\n");
      const bad = await reprise(c, "rerun", "--state", "succeeded");
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/--state: must be one of failed, abandoned, timed_out, cancelled/);
      expect((await reprise(c, "rerun")).code).toBe(2);
    });
  });

  test("rerun --state --rate N paces the re-runs at N a second, so that the work they start comes back gradually; a rate that is not positive is refused", async () => {
    await withCoordinator(async (c) => {
      await c.executions.submitBatch({ submissions: Array.from({ length: 6 }, () => ({ task: "paced" })) });
      const { attempts } = await c.workers.leaseAttempts({ workerId: "cli-test-worker", tasks: ["paced"], maxAttempts: 6 });
      await c.workers.reportOutcomes({ outcomes: attempts.map((a) => ({ leaseToken: a.leaseToken, outcome: { case: "failure" as const, value: { type: "Declined", message: "no" } } })) });

      const paced = await reprise(c, "rerun", "--task", "paced", "--state", "failed", "--rate", "10", "--yes");
      expect(paced).toMatchObject({ code: 0, stdout: "re-ran 6 of 6 FAILED executions of paced\n" });
      // Each re-run makes its execution due at once: their due times are the re-runs' times.
      const due = (await c.executions.listExecutions({ task: "paced" })).executions.map((e) => Number(e.nextAttemptAt!.seconds) * 1000 + e.nextAttemptAt!.nanos / 1e6).sort((a, b) => a - b);
      // Re-run k goes out k/10 s after the first was sent; the first's own call time is the slack.
      for (let i = 1; i < due.length; i++) expect(due[i]! - due[0]!).toBeGreaterThanOrEqual(i * 100 - 50);

      for (const rate of ["0", "-1", "fast"]) {
        expect(await reprise(c, "rerun", "--state", "failed", "--rate", rate, "--yes")).toMatchObject({
          code: 2,
          stderr: `reprise: --rate: must be a positive number of re-runs a second; got ${JSON.stringify(rate)}\n`,
        });
      }
    });
  });

  test("ls warns on stderr about a task whose executions are due while no worker takes them, as 'no pollers'", async () => {
    await withCoordinator(async (c) => {
      await reprise(c, "submit", "nightly_export");
      const { stdout, stderr } = await reprise(c, "ls");
      expect(stdout).toContain("nightly_export");
      expect(stderr).toBe("reprise: warning: 1 execution is due for nightly_export, and no worker is taking them (none seen in the last 7 days); is a worker for nightly_export running?\n");
      await leaseNow(c, ["nightly_export"]);
      expect((await reprise(c, "ls")).stderr).toBe("");
    });
  });

  test("cancel ends an execution CANCELLED and watch exits 1 once it ends unsuccessfully", async () => {
    await withCoordinator(async (c) => {
      const id = (await reprise(c, "submit", "t")).stdout.trim();
      const watching = reprise(c, "watch", id);
      const cancelled = await reprise(c, "cancel", id);
      expect(cancelled.code).toBe(0);
      expect(cancelled.stdout).toBe(`${id}  CANCELLED\n`);
      const watched = await watching;
      expect(watched.code).toBe(1);
      expect(watched.stdout).toContain("execution CANCELLED after 0 attempts");
      expect(JSON.parse((await reprise(c, "cancel", id, "--json")).stdout).state).toBe("EXECUTION_STATE_CANCELLED");
    });
  });

  test("an unknown execution is exit 3 with the status, and bad usage is exit 2 naming the option", async () => {
    await withCoordinator(async (c) => {
      const missing = await reprise(c, "show", "no-such-id");
      expect(missing.code).toBe(3);
      expect(missing.stderr).toContain("NOT_FOUND");
      const bad = await reprise(c, "submit", "t", "--retries", "lots");
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain("--retries");
      const state = await reprise(c, "ls", "--state", "sleeping");
      expect(state.code).toBe(2);
      expect(state.stderr).toContain("--state");
    });
  });
});

describe("reaching the coordinator", () => {
  test("a command that finds no coordinator says that nothing answers at the address and suggests reprise serve", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    for (const command of [["ls"], ["show", "x"], ["watch", "x"], ["cancel", "x"], ["submit", "t"]]) {
      const result = await exec(process.execPath, [CLI, ...command, "--addr", address], { timeout: 15_000 }).then(
        () => ({ code: 0, stderr: "" }),
        (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
      );
      expect(result, command.join(" ")).toEqual({
        code: 3,
        stderr: `reprise: UNAVAILABLE: nothing answers at ${address} (connection refused). Is the coordinator running there? Start one with: reprise serve --listen ${address}\n`,
      });
    }
  });

  test("--addr without a port dials the coordinator's default port, 50051, not the transport's 443", () => {
    expect(coordinatorAddress("localhost")).toBe("localhost:50051");
    expect(coordinatorAddress("coordinator.internal:6000")).toBe("coordinator.internal:6000");
    expect(coordinatorAddress("[::1]")).toBe("[::1]:50051");
    expect(coordinatorAddress("[::1]:7000")).toBe("[::1]:7000");
    expect(coordinatorAddress("::1")).toBe("[::1]:50051");
  });

  test("submit's --delay and --backoff take seconds, as the clients count, or a duration with its unit", () => {
    expect(["90", "1.5", "250ms", "30s", "5m", "1h", "2d"].map(secondsOrDuration)).toEqual([90_000, 1500, 250, 30_000, 300_000, 3_600_000, 172_800_000]);
    expect(["-1", "5 min", "", "1e3"].map(secondsOrDuration)).toEqual([null, null, null, null]);
  });
});

describe("progress lines", () => {
  test("a watch of a re-run execution says that it was re-run and when it is due, not the rule that had ended it", () => {
    const now = Date.parse("2026-11-30T12:00:00Z");
    const at = (ms: number) => timestampFromMs(now + ms);
    const rerun = create(ExecutionSchema, {
      id: "e",
      task: "t",
      state: ExecutionState.PENDING,
      nextAttemptAt: at(0),
      createdAt: at(-7_200_000),
      attempts: [
        { number: 1, state: AttemptState.FAILED, workerId: "w", scheduledAt: at(-7_200_000), startedAt: at(-7_200_000), finishedAt: at(-7_190_000), failure: { type: "Down" }, retryRule: RetryRule.BACKOFF, retryAt: at(-7_180_000) },
        { number: 2, state: AttemptState.FAILED, workerId: "w", scheduledAt: at(-7_180_000), startedAt: at(-7_180_000), finishedAt: at(-7_170_000), failure: { type: "Down" }, retryRule: RetryRule.MAX_ELAPSED },
      ],
    });
    const lines = progressLines(undefined, rerun, { color: false }, now);
    expect(lines).toContain("attempt 1 failed: Down");
    expect(lines).toContain("attempt 2 failed: Down; re-run, due now");
    expect(lines.join("\n")).not.toContain("max_elapsed");
  });
});

describe("colour", () => {
  test("colour is used only on a terminal, and never when NO_COLOR is set to anything but the empty string", () => {
    const terminal = { isTTY: true } as NodeJS.WriteStream;
    const saved = { NO_COLOR: process.env.NO_COLOR, TERM: process.env.TERM };
    try {
      process.env.TERM = "xterm-256color";
      delete process.env.NO_COLOR;
      expect(terminalStyle(terminal).color).toBe(true);
      expect(terminalStyle({ isTTY: false } as NodeJS.WriteStream).color).toBe(false);
      process.env.NO_COLOR = "1";
      expect(terminalStyle(terminal).color).toBe(false);
      process.env.NO_COLOR = "";
      expect(terminalStyle(terminal).color).toBe(true);
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});

// Prometheus metrics after a workload with a retry, an abandonment and a timeout.
import { afterEach, describe, expect, test } from "vitest";
import { FakeClock, seconds, startTestCoordinator, testStore } from "./helpers.js";
import type { TestCoordinator } from "./helpers.js";
import { fail, leaseNow, submit, succeed } from "./wire-helpers.js";

let c: TestCoordinator;

afterEach(async () => {
  await c?.close();
});

async function scrape(): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${c.server.metricsPort}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("text/plain");
  return response.text();
}

/** The value of one sample, e.g. value(text, 'reprise_retries_scheduled_total{task="a"}'). */
function value(text: string, sample: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${sample} `));
  if (!line) throw new Error(`no sample ${sample}`);
  return Number(line.slice(sample.length + 1));
}

describe("metrics", () => {
  test("after a workload with a retry, an abandonment and a timeout, /metrics counts each of them", async () => {
    const clock = new FakeClock();
    c = await startTestCoordinator({ clock, metricsListen: "127.0.0.1:0" });
    await c.workers.declareTasks({ workerId: "w", tasks: [{ name: "slow", timeout: seconds(10) }] });

    await submit(c, "flaky", { retryPolicy: { limit: 1 } });
    const [first] = await leaseNow(c, ["flaky"]);
    await fail(c, first!);
    const [second] = await leaseNow(c, ["flaky"]);
    await succeed(c, second!);

    await submit(c, "lost");
    await leaseNow(c, ["lost"], 1, 5000);
    await clock.advance(5000);

    await submit(c, "slow");
    const [slow] = await leaseNow(c, ["slow"], 1, 30_000);
    await clock.advance(10_000);
    await succeed(c, slow!);

    await submit(c, "later", { delay: seconds(60) });
    await submit(c, "now");
    await c.executions.getExecution({ executionId: "x" }).catch(() => undefined);

    const text = await scrape();
    expect(value(text, 'reprise_attempts_started_total{task="flaky"}')).toBe(2);
    expect(value(text, 'reprise_attempts_finished_total{task="flaky",outcome="failed"}')).toBe(1);
    expect(value(text, 'reprise_attempts_finished_total{task="flaky",outcome="succeeded"}')).toBe(1);
    expect(value(text, 'reprise_retries_scheduled_total{task="flaky"}')).toBe(1);
    expect(value(text, 'reprise_abandonments_total{task="lost"}')).toBe(1);
    expect(value(text, 'reprise_attempts_finished_total{task="lost",outcome="abandoned"}')).toBe(1);
    expect(value(text, 'reprise_timeouts_total{task="slow"}')).toBe(1);
    expect(value(text, 'reprise_fenced_reports_total{reason="ended"}')).toBe(1);
    expect(value(text, 'reprise_executions{task="flaky",state="succeeded"}')).toBe(1);
    expect(value(text, 'reprise_executions{task="lost",state="abandoned"}')).toBe(1);
    expect(value(text, 'reprise_executions{task="slow",state="timed_out"}')).toBe(1);
    expect(value(text, 'reprise_pending_executions{when="due"}')).toBe(1);
    expect(value(text, 'reprise_pending_executions{when="delayed"}')).toBe(1);
    expect(value(text, "reprise_dispatch_latency_seconds_count")).toBe(4);
    expect(value(text, "reprise_retry_lateness_seconds_count")).toBe(1);
    expect(value(text, "reprise_long_polls_waiting")).toBe(0);
    expect(value(text, "reprise_watches_open")).toBe(0);
    expect(value(text, "reprise_commit_batch_size_count")).toBeGreaterThan(0);
    expect(value(text, "reprise_commit_duration_seconds_count")).toBe(value(text, "reprise_commit_batch_size_count"));
  });

  test("the process's own metrics carry the project's prefix once: reprise_process_* and reprise_nodejs_*", async () => {
    c = await startTestCoordinator({ metricsListen: "127.0.0.1:0" });
    const names = new Set((await scrape()).split("\n").filter((line) => line.startsWith("reprise_")).map((line) => /^[a-z_]+/.exec(line)![0]));
    for (const name of ["reprise_process_cpu_seconds_total", "reprise_process_resident_memory_bytes", "reprise_nodejs_eventloop_lag_seconds", "reprise_nodejs_heap_size_used_bytes"]) {
      expect(names.has(name), name).toBe(true);
    }
    expect([...names].filter((name) => name.startsWith("reprise_process_process_") || name.startsWith("reprise_process_nodejs_"))).toEqual([]);
  });

  test("/metrics counts retries the budget deferred by task, re-runs, snoozes and duplicate reports", async () => {
    const clock = new FakeClock();
    c = await startTestCoordinator({ clock, metricsListen: "127.0.0.1:0" });
    await c.workers.declareTasks({ workerId: "w", tasks: [{ name: "api", retryPolicy: { limit: 1 }, retryBudget: { retriesPerSecond: 1, burst: 1 } }] });
    await c.executions.submitBatch({ submissions: Array.from({ length: 4 }, () => ({ task: "api" })) });
    const attempts = await leaseNow(c, ["api"], 4);
    for (const a of attempts) await fail(c, a);
    await fail(c, attempts[0]!);
    const once = await submit(c, "once");
    const [z] = await leaseNow(c, ["once"]);
    await c.workers.reportOutcomes({ outcomes: [{ leaseToken: z!.leaseToken, outcome: { case: "snooze", value: {} } }] });
    await fail(c, (await leaseNow(c, ["once"]))[0]!);
    await c.executions.rerunExecution({ executionId: once.id });
    const text = await scrape();
    expect(value(text, 'reprise_retries_scheduled_total{task="api"}')).toBe(4);
    expect(value(text, 'reprise_retries_deferred_total{task="api"}')).toBe(3);
    expect(value(text, "reprise_duplicate_reports_total")).toBe(1);
    expect(value(text, 'reprise_attempts_finished_total{task="once",outcome="snoozed"}')).toBe(1);
    expect(value(text, 'reprise_executions_rerun_total{task="once"}')).toBe(1);
  });

  test.skipIf(testStore === "postgres")("/metrics shows how long each SQLite statement and commit held the event loop, by operation", async () => {
    const clock = new FakeClock();
    c = await startTestCoordinator({ clock, metricsListen: "127.0.0.1:0" });
    await submit(c, "t");
    const [attempt] = await leaseNow(c, ["t"]);
    await succeed(c, attempt!);
    await clock.advance(1000);
    const text = await scrape();
    for (const operation of ["executionInsert", "executionListDue", "attemptFinish", "commit"]) {
      expect(value(text, `reprise_event_loop_hold_seconds_count{operation="${operation}"}`), operation).toBeGreaterThan(0);
      expect(value(text, `reprise_event_loop_hold_seconds_bucket{operation="${operation}",le="+Inf"}`)).toBe(
        value(text, `reprise_event_loop_hold_seconds_count{operation="${operation}"}`),
      );
    }
    expect(text).toContain("# TYPE reprise_event_loop_hold_seconds histogram");
  });

  test("metrics are off unless --metrics-listen is given", async () => {
    c = await startTestCoordinator();
    expect(c.server.metricsPort).toBeNull();
  });
});

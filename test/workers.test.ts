// The workers the coordinator has heard from: ListWorkers, `reprise workers`,
// and `submit --wait` saying why nothing runs.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { status } from "@grpc/grpc-js";
import { afterEach, describe, expect, test } from "vitest";
import { FakeClock, committedRows, freshDatabase, seconds, startTestCoordinator, testStore, toMs } from "./helpers.js";
import type { TestCoordinator } from "./helpers.js";
import { CLI, spawnCoordinator } from "./process-helpers.js";

const run = promisify(execFile);
let c: TestCoordinator | undefined;

afterEach(async () => {
  await c?.close();
  c = undefined;
});

const writesOf = (c: TestCoordinator) =>
  c.server.holds.get().values.find((v) => v.metricName.endsWith("_count") && v.labels.operation === "workerSeen")?.value ?? 0;

describe("ListTasks", () => {
  test("lists every declared or submitted task by name, with its declaration, its executions by state, how many are due, and its workers", async () => {
    const clock = new FakeClock();
    c = await startTestCoordinator({ clock });
    await c.workers.declareTasks({
      workerId: "billing-1",
      tasks: [{ name: "charge", retryPolicy: { limit: 3, backoffMin: seconds(1) }, timeout: seconds(30), retryBudget: { retriesPerSecond: 2, burst: 4 } }],
    });
    await c.executions.submitBatch({ submissions: [{ task: "charge" }, { task: "charge" }, { task: "charge", delay: seconds(60) }, { task: "orphan" }] });
    const [leased] = (await c.workers.leaseAttempts({ workerId: "billing-1", tasks: ["charge"] })).attempts;
    await c.workers.reportOutcomes({ outcomes: [{ leaseToken: leased!.leaseToken, outcome: { case: "result", value: {} } }] });
    const { tasks } = await c.executions.listTasks({});
    expect(tasks.map((t) => t.name)).toEqual(["charge", "orphan"]);
    const [charge, orphan] = tasks;
    expect(charge).toMatchObject({
      declaration: { name: "charge", retryPolicy: { limit: 3 }, timeout: { seconds: 30n }, retryBudget: { retriesPerSecond: 2, burst: 4 } },
      declaredBy: "billing-1",
      due: 1n,
      workers: 1,
      noWorker: false,
    });
    expect(toMs(charge!.declaredAt)).toBe(clock.now());
    expect(charge!.executions.map((e) => [e.state, e.count])).toEqual([[1, 2n], [3, 1n]]);
    // Nothing declared it, nobody asks for its work, and it is due: flagged.
    expect(orphan).toMatchObject({ declaredBy: "", due: 1n, workers: 0, noWorker: true });
    expect(orphan!.declaration).toBeUndefined();
    expect(orphan!.workerLastSeenAt).toBeUndefined();
  });

  test("ListTasks counts the failures, abandonments and timeouts of the last hour, the retries that followed, and the most frequent failure types", async () => {
    const clock = new FakeClock();
    c = await startTestCoordinator({ clock });
    const fail = async (type: string) => {
      const [attempt] = (await c!.workers.leaseAttempts({ workerId: "w", tasks: ["sync"], leaseDuration: seconds(1) })).attempts;
      await c!.workers.reportOutcomes({ outcomes: [{ leaseToken: attempt!.leaseToken, outcome: { case: "failure", value: { type } } }] });
    };
    await c.executions.submit({ task: "sync", retryPolicy: { limit: 1 } });
    await fail("Timeout");
    await fail("Timeout");
    await c.executions.submit({ task: "sync", retryPolicy: { limit: 1 } });
    await fail("Refused");
    // Abandoned: its lease runs out, and the retry that follows is counted too.
    await c.workers.leaseAttempts({ workerId: "w", tasks: ["sync"], leaseDuration: seconds(1) });
    await clock.advance(1500);
    const [sync] = (await c.executions.listTasks({})).tasks;
    expect(sync).toMatchObject({ failuresLastHour: 4, retriesLastHour: 2 });
    expect(sync!.frequentFailures.map((f) => [f.type, f.count])).toEqual([["Timeout", 2], ["Abandoned", 1], ["Refused", 1]]);
    // Counted by the minute: an hour and a minute later, they are gone.
    await clock.advance(3_660_000);
    expect((await c.executions.listTasks({})).tasks[0]).toMatchObject({ failuresLastHour: 0, retriesLastHour: 0, frequentFailures: [] });
  });

  test("a task with due work is flagged no_worker once no worker was seen for it in the last minute", async () => {
    const clock = new FakeClock();
    c = await startTestCoordinator({ clock });
    await c.workers.leaseAttempts({ workerId: "w", tasks: ["report"] });
    await c.executions.submit({ task: "report" });
    expect((await c.executions.listTasks({})).tasks[0]).toMatchObject({ name: "report", due: 1n, noWorker: false });
    await clock.advance(61_000);
    expect((await c.executions.listTasks({})).tasks[0]).toMatchObject({ name: "report", due: 1n, workers: 1, noWorker: true });
    await c.workers.leaseAttempts({ workerId: "w", tasks: ["report"], maxAttempts: 1 });
    expect((await c.executions.listTasks({})).tasks[0]).toMatchObject({ due: 0n, noWorker: false });
  });
});

describe("ListWorkers", () => {
  test("lists each worker seen through DeclareTasks or LeaseAttempts with its tasks, most recently seen first", async () => {
    const clock = new FakeClock();
    c = await startTestCoordinator({ clock });
    await c.workers.declareTasks({ workerId: "billing-1", tasks: [{ name: "charge" }, { name: "refund" }] });
    await clock.advance(10_000);
    await c.workers.leaseAttempts({ workerId: "mailer-1", tasks: ["send_email"] });
    const { workers } = await c.executions.listWorkers({});
    expect(workers.map((w) => ({ id: w.id, tasks: w.tasks, lastSeenAt: toMs(w.lastSeenAt) }))).toEqual([
      { id: "mailer-1", tasks: ["send_email"], lastSeenAt: clock.now() },
      { id: "billing-1", tasks: ["charge", "refund"], lastSeenAt: clock.now() - 10_000 },
    ]);
  });

  test("with a task, lists only the workers of that task, each with all its tasks", async () => {
    c = await startTestCoordinator({ clock: new FakeClock() });
    await c.workers.declareTasks({ workerId: "a", tasks: [{ name: "charge" }, { name: "refund" }] });
    await c.workers.declareTasks({ workerId: "b", tasks: [{ name: "send_email" }] });
    const { workers } = await c.executions.listWorkers({ task: "refund" });
    expect(workers.map((w) => [w.id, w.tasks])).toEqual([["a", ["charge", "refund"]]]);
    expect((await c.executions.listWorkers({ task: "nobody_serves_this" })).workers).toEqual([]);
    await expect(c.executions.listWorkers({ task: "has space" })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringMatching(/^task/) });
  });

  // Counted by the SQLite statement's hold metric; the throttle is the coordinator's, the same for both stores.
  test.skipIf(testStore === "postgres")("a long-polling worker is written down at most every 5 s per task, and its last-seen time moves on", async () => {
    const clock = new FakeClock();
    c = await startTestCoordinator({ clock });
    for (let i = 0; i < 10; i++) await c.workers.leaseAttempts({ workerId: "w", tasks: ["t"] });
    expect(writesOf(c)).toBe(1);
    await clock.advance(5000);
    await c.workers.leaseAttempts({ workerId: "w", tasks: ["t"] });
    expect(writesOf(c)).toBe(2);
    expect(toMs((await c.executions.listWorkers({})).workers[0]!.lastSeenAt)).toBe(clock.now());
  });

  test("workers not seen for 7 days are no longer listed, and are forgotten", async () => {
    const clock = new FakeClock();
    c = await startTestCoordinator({ clock });
    await c.workers.declareTasks({ workerId: "gone", tasks: [{ name: "t" }] });
    clock.jump(8 * 86_400_000);
    await c.workers.leaseAttempts({ workerId: "here", tasks: ["t"] });
    expect((await c.executions.listWorkers({})).workers.map((w) => w.id)).toEqual(["here"]);
    expect((await committedRows(c.dbPath, "SELECT worker_id FROM worker_tasks")).map((row) => row.worker_id)).toEqual(["here"]);
  });
});

describe("reprise workers and submit --wait", () => {
  test("reprise workers lists the workers with their tasks and when each was last seen", async () => {
    const coordinator = await spawnCoordinator(await freshDatabase());
    try {
      await coordinator.workers.declareTasks({ workerId: "billing-1", tasks: [{ name: "charge" }, { name: "refund" }] });
      const { stdout } = await run(process.execPath, [CLI, "workers", "--addr", coordinator.address], { env: { ...process.env, NO_COLOR: "1" } });
      expect(stdout).toMatch(/^WORKER\s+LAST SEEN\s+TASKS\nbilling-1\s+(now|[\d.]+ ?\w+ ago)\s+charge, refund\n$/);
      const json = await run(process.execPath, [CLI, "workers", "--task", "charge", "--json", "--addr", coordinator.address]);
      expect(JSON.parse(json.stdout)).toMatchObject({ workers: [{ id: "billing-1", tasks: ["charge", "refund"] }] });
    } finally {
      coordinator.closeClients();
      coordinator.child.kill("SIGTERM");
      await coordinator.exited;
    }
  });

  test("submit --wait on a task that no worker serves says so after 5 s instead of waiting in silence", async () => {
    const coordinator = await spawnCoordinator(await freshDatabase());
    try {
      const waiting = run(process.execPath, [CLI, "submit", "nobody_serves_this", "--wait", "--addr", coordinator.address], { timeout: 8000 }).catch(
        (error: { stderr: string }) => error,
      );
      const { stderr } = await waiting;
      expect(stderr).toContain(
        "reprise: warning: no worker has declared or asked for work of nobody_serves_this in the last 7 days; is a worker for it running?",
      );
    } finally {
      coordinator.closeClients();
      coordinator.child.kill("SIGTERM");
      await coordinator.exited;
    }
  });

  test("submit --wait names the worker that last asked for the task, and when, when nothing has started", async () => {
    const coordinator = await spawnCoordinator(await freshDatabase());
    try {
      await coordinator.workers.leaseAttempts({ workerId: "stuck-worker", tasks: ["other"], wait: seconds(0) });
      await coordinator.workers.declareTasks({ workerId: "stuck-worker", tasks: [{ name: "slow_task" }] });
      const { stderr } = await run(process.execPath, [CLI, "submit", "slow_task", "--wait", "--addr", coordinator.address], { timeout: 8000 }).catch(
        (error: { stderr: string }) => error,
      );
      expect(stderr).toMatch(/reprise: warning: no attempt yet; a worker last asked for work of slow_task \S+ s ago \(stuck-worker\); it may be busy/);
    } finally {
      coordinator.closeClients();
      coordinator.child.kill("SIGTERM");
      await coordinator.exited;
    }
  });
});

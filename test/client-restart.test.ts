// A coordinator restart in the middle of a run: workers and waiters reconnect
// with backoff and carry on with no user code. The coordinator is shut down
// and started again on the same database file and port, or replaced by one on
// a fresh database.
import { describe, expect, test } from "vitest";
import { join } from "node:path";
import { Client, ExecutionAbandonedError, ExecutionState, Retries, Worker } from "@reprise/client";
import { FAST, Gate, MemoryLogger, clientEnv } from "./client-helpers.js";
import { spawnCoordinator } from "./process-helpers.js";
import { startTestCoordinator, tempDir, until } from "./helpers.js";

describe("coordinator restart", () => {
  test("a coordinator restart in the middle of a run loses no result and leaves no waiter hanging", async () => {
    const env = await clientEnv();
    try {
      const logger = new MemoryLogger();
      const gate = new Gate();
      let running = 0;
      // Leases long enough to outlast the restart: the results must be taken.
      const worker = env.worker({ logger, concurrency: 4, leaseDuration: 5 }).task("work", async (n: number) => {
        running++;
        await gate.opened;
        return n * 10;
      });
      await worker.start();
      const client = env.client();
      const handles = await Promise.all([0, 1, 2, 3, 4, 5].map((n) => client.submit<number>("work", n)));
      const results = Promise.all(handles.map((h) => h.result()));
      const watched: ExecutionState[] = [];
      const watching = (async () => {
        for await (const snapshot of handles[0]!.watch()) watched.push(snapshot.state);
      })();
      await until(() => running === 4 && watched.includes(ExecutionState.RUNNING), 5000, "four attempts to run");

      await env.stopCoordinator();
      // Four results finish while the coordinator is away.
      gate.open();
      await until(() => logger.entries.some((e) => e.message.startsWith("cannot report outcomes")), 5000, "a failed report");
      await env.startCoordinator();

      expect(await results).toEqual([0, 10, 20, 30, 40, 50]);
      await watching;
      expect(watched.at(-1)).toBe(ExecutionState.SUCCEEDED);
      for (const handle of handles) expect((await handle.get()).attempts).toHaveLength(1);
      // The worker carries on leasing new work after the restart.
      expect(await (await client.submit<number>("work", 6)).result()).toBe(60);
      expect(logger.entries.filter((e) => e.message.includes("refused"))).toEqual([]);
    } finally {
      await env.close();
    }
  });

  test("results the coordinator refuses after a restart are logged and dropped, and the waiter gets the final state", async () => {
    const env = await clientEnv();
    try {
      const logger = new MemoryLogger();
      const gate = new Gate();
      let started = false;
      const worker = env.worker({ logger, leaseDuration: 0.3 }).task("at_most_once", async () => {
        started = true;
        await gate.opened;
        return "too late";
      });
      await worker.start();
      const handle = await env.client().submit("at_most_once", null);
      const outcome = handle.result().catch((e: unknown) => e);
      await until(() => started, 5000, "the attempt to start");

      await env.stopCoordinator();
      const stoppedAt = Date.now();
      // With no heartbeats getting through, the lease runs out while the coordinator is away.
      await until(() => Date.now() > stoppedAt + 400, 2000, "the lease to run out");
      gate.open();
      await until(() => logger.entries.some((e) => e.message.startsWith("cannot report outcomes")), 5000, "a failed report");
      await env.startCoordinator();

      const error = await outcome;
      expect(error).toBeInstanceOf(ExecutionAbandonedError);
      await until(() => logger.entries.some((e) => e.message === "outcome refused by the coordinator; dropped"), 5000, "the refusal to be logged");
      const refusal = logger.entries.find((e) => e.message === "outcome refused by the coordinator; dropped")!;
      expect(refusal.level).toBe("warn");
      expect(refusal.fields).toMatchObject({ execution_id: handle.id, attempt: 1, outcome: "result" });
      expect(String(refusal.fields.reason)).not.toBe("");
      expect((await handle.get()).state).toBe(ExecutionState.ABANDONED);
    } finally {
      await env.close();
    }
  });
});

describe("coordinator replaced", () => {
  test("after a lease fails the worker declares its tasks again before leasing, so a coordinator replaced on a fresh database retries by their policy", async () => {
    const env = await clientEnv();
    try {
      const worker = env.worker().task("flaky", { retries: new Retries({ limit: 1, backoff: [0, 0] }) }, (_args, ctx) => {
        if (ctx.attempt === 1) throw new Error("the first attempt fails");
        return `attempt ${ctx.attempt}`;
      });
      await worker.start();
      await env.stopCoordinator();
      // At the same address, on a database that has never heard of the task.
      env.coordinator = await startTestCoordinator({ listen: env.address });
      const handle = await env.client().submit("flaky", null);
      expect(await handle.result()).toBe("attempt 2");
    } finally {
      await env.close();
    }
  });
});

describe("coordinator crash", () => {
  test("after a kill -9 and restart, finished results are re-sent and waiters get them", async () => {
    const db = join(tempDir(), "reprise.db");
    let coordinator = await spawnCoordinator(db);
    const logger = new MemoryLogger();
    const gate = new Gate();
    let running = 0;
    const worker = new Worker({ ...FAST, address: coordinator.address, logger, leaseDuration: 5, concurrency: 2 });
    const client = new Client({ address: coordinator.address, logger: new MemoryLogger(), reconnect: FAST.reconnect });
    try {
      worker.task("crash_proof", { retries: 1 }, async (n: number) => {
        running++;
        await gate.opened;
        return n + 1;
      });
      await worker.start();
      const handles = await Promise.all([1, 2, 3].map((n) => client.submit<number>("crash_proof", n)));
      const results = Promise.all(handles.map((h) => h.result()));
      await until(() => running === 2, 5000, "two attempts to run");

      await coordinator.kill();
      gate.open();
      await until(() => logger.entries.some((e) => e.message.startsWith("cannot report outcomes")), 5000, "a failed report");
      coordinator = await spawnCoordinator(db, Number(coordinator.address.split(":")[1]));

      expect(await results).toEqual([2, 3, 4]);
      for (const handle of handles) expect((await handle.get()).attempts).toHaveLength(1);
    } finally {
      client.close();
      await worker.stop({ grace: 0 });
      await coordinator.kill();
    }
  });
});

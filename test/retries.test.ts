// The retry rules of docs/semantics.md, end to end over gRPC, on a
// fake clock: the coordinator computes every schedule itself.
import { AttemptState, ExecutionState } from "@reprise/wire";
import { afterEach, describe, expect, test } from "vitest";
import { FakeClock, seconds, startTestCoordinator, toMs, until } from "./helpers.js";
import type { TestCoordinator } from "./helpers.js";
import { fail, get, leaseNow, submit } from "./wire-helpers.js";

let c: TestCoordinator;
let clock: FakeClock;

async function start(random?: () => number) {
  clock = new FakeClock();
  c = await startTestCoordinator({ clock, random });
}

afterEach(async () => {
  await c?.close();
});

describe("retry schedule", () => {
  test("limit 5 with backoff (300 s, 600 s) starts attempts at t+0, t+300, t+675, t+1125, t+1650 and t+2250", async () => {
    await start();
    const t0 = clock.now();
    const execution = await submit(c, "send_notification", {
      retryPolicy: { limit: 5, backoffMin: seconds(300), backoffMax: seconds(600) },
    });
    const starts: number[] = [];
    for (let attempt = 1; attempt <= 6; attempt++) {
      if (attempt > 1) {
        const due = toMs((await get(c, execution.id)).nextAttemptAt);
        await clock.advanceTo(due - 1);
        await leaseNow(c, ["send_notification"], 0);
        await clock.advanceTo(due);
      }
      const [leased] = await leaseNow(c, ["send_notification"]);
      expect(leased!.attempt).toBe(attempt);
      starts.push((clock.now() - t0) / 1000);
      const receipt = await fail(c, leased!);
      expect(receipt.accepted).toBe(true);
      expect(receipt.willRetry).toBe(attempt <= 5);
    }
    expect(starts).toEqual([0, 300, 675, 1125, 1650, 2250]);
    const done = await get(c, execution.id);
    expect(done.state).toBe(ExecutionState.FAILED);
    expect(done.attempts.map((a) => (toMs(a.scheduledAt) - t0) / 1000)).toEqual([0, 300, 675, 1125, 1650, 2250]);
    for (const [i, attempt] of done.attempts.entries()) {
      if (i > 0) expect(toMs(attempt.scheduledAt)).toBe(toMs(done.attempts[i - 1]!.finishedAt) + [300, 375, 450, 525, 600][i - 1]! * 1000);
    }
  });

  test("a long-polling worker is woken by the retry timer the moment the retry is due", async () => {
    await start();
    const execution = await submit(c, "t", { retryPolicy: { limit: 1, backoffMin: seconds(10), backoffMax: seconds(10) } });
    const [first] = await leaseNow(c, ["t"]);
    const receipt = await fail(c, first!);
    const poll = c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], wait: seconds(60) });
    await until(() => c.server.coordinator.stats.longPolls === 1, 5000, "the long-poll to wait");
    expect(c.server.coordinator.stats.nextWakeAt).toBe(toMs(receipt.nextAttemptAt));
    await clock.advanceTo(toMs(receipt.nextAttemptAt));
    const { attempts } = await poll;
    expect(attempts.map((a) => [a.executionId, a.attempt])).toEqual([[execution.id, 2]]);
  });

  test("retries=N retries each failure immediately, N times, then ends FAILED", async () => {
    await start();
    const execution = await submit(c, "submit_reports", { retryPolicy: { limit: 2 } });
    for (let attempt = 1; attempt <= 3; attempt++) {
      const [leased] = await leaseNow(c, ["submit_reports"]);
      expect(leased!.attempt).toBe(attempt);
      const receipt = await fail(c, leased!);
      expect(receipt.willRetry).toBe(attempt < 3);
      if (receipt.willRetry) expect(toMs(receipt.nextAttemptAt)).toBe(clock.now());
    }
    const done = await get(c, execution.id);
    expect(done.state).toBe(ExecutionState.FAILED);
    expect(done.attempts).toHaveLength(3);
    expect(done.failure?.type).toBe("ConnectionError");
  });

  test("unlimited retries wait a uniform random delay in [backoff_min, backoff_max] and never run out", async () => {
    const draws = [0, 0.5, 0.999_999_999];
    await start(() => draws.shift() ?? 0);
    await submit(c, "critical_task", { retryPolicy: { unlimited: true, backoffMin: seconds(10), backoffMax: seconds(300) } });
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 3; attempt++) {
      const [leased] = await leaseNow(c, ["critical_task"]);
      const receipt = await fail(c, leased!);
      expect(receipt.willRetry).toBe(true);
      delays.push(toMs(receipt.nextAttemptAt) - clock.now());
      await clock.advanceTo(toMs(receipt.nextAttemptAt));
    }
    expect(delays).toEqual([10_000, 155_000, 300_000]);
  });

  test("unlimited without backoff (retries=true) waits a random delay in [1 s, 60 s]", async () => {
    const draws = [0, 0.999_999_999];
    await start(() => draws.shift() ?? 0.5);
    await submit(c, "critical_task", { retryPolicy: { unlimited: true } });
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 2; attempt++) {
      const [leased] = await leaseNow(c, ["critical_task"]);
      const receipt = await fail(c, leased!);
      delays.push(toMs(receipt.nextAttemptAt) - clock.now());
      await clock.advanceTo(toMs(receipt.nextAttemptAt));
    }
    expect(delays).toEqual([1000, 60_000]);
  });

  test("a non-retryable failure ends the execution FAILED at once without using up any retries", async () => {
    await start();
    const execution = await submit(c, "call_api", { retryPolicy: { limit: 3 } });
    const [leased] = await leaseNow(c, ["call_api"]);
    const receipt = await fail(c, leased!, { type: "ValueError", message: "bad input", nonRetryable: true });
    expect(receipt).toMatchObject({ accepted: true, willRetry: false });
    const done = await get(c, execution.id);
    expect(done.state).toBe(ExecutionState.FAILED);
    expect(done.attempts).toHaveLength(1);
    expect(done.failure).toMatchObject({ type: "ValueError", message: "bad input", nonRetryable: true });
    await leaseNow(c, ["call_api"], 0);
  });

  test("with no retry policy an error ends the execution FAILED after one attempt (at most once)", async () => {
    await start();
    const execution = await submit(c, "once");
    const [leased] = await leaseNow(c, ["once"]);
    expect((await fail(c, leased!)).willRetry).toBe(false);
    const done = await get(c, execution.id);
    expect(done.state).toBe(ExecutionState.FAILED);
    expect(done.attempts).toHaveLength(1);
    expect(done.retryPolicy).toBeUndefined();
    await clock.advance(3600_000);
    await leaseNow(c, ["once"], 0);
  });

  test("retry_after replaces the computed delay for that one retry and still counts against the limit", async () => {
    await start();
    const execution = await submit(c, "http", { retryPolicy: { limit: 2, backoffMin: seconds(100), backoffMax: seconds(200) } });
    const [first] = await leaseNow(c, ["http"]);
    const r1 = await fail(c, first!, { retryAfterSeconds: 7 });
    expect(toMs(r1.nextAttemptAt) - clock.now()).toBe(7000);
    await clock.advanceTo(toMs(r1.nextAttemptAt));
    const [second] = await leaseNow(c, ["http"]);
    const r2 = await fail(c, second!);
    expect(toMs(r2.nextAttemptAt) - clock.now()).toBe(200_000);
    await clock.advanceTo(toMs(r2.nextAttemptAt));
    const [third] = await leaseNow(c, ["http"]);
    expect((await fail(c, third!, { retryAfterSeconds: 5 })).willRetry).toBe(false);
    expect((await get(c, execution.id)).state).toBe(ExecutionState.FAILED);
  });

  test("retry_after of zero means the computed delay", async () => {
    await start();
    await submit(c, "http", { retryPolicy: { limit: 1, backoffMin: seconds(30) } });
    const [first] = await leaseNow(c, ["http"]);
    const receipt = await fail(c, first!, { retryAfterSeconds: 0 });
    expect(toMs(receipt.nextAttemptAt) - clock.now()).toBe(30_000);
  });

  test("a submit delay makes the first attempt due at created_at + delay", async () => {
    await start();
    const execution = await submit(c, "later", { delay: seconds(90) });
    expect(toMs(execution.nextAttemptAt) - toMs(execution.createdAt)).toBe(90_000);
    await clock.advance(89_999);
    await leaseNow(c, ["later"], 0);
    await clock.advance(1);
    const [leased] = await leaseNow(c, ["later"]);
    const running = await get(c, leased!.executionId);
    expect(toMs(running.attempts[0]!.scheduledAt)).toBe(toMs(execution.createdAt) + 90_000);
  });
});

describe("which policy applies", () => {
  test("a Submit's own retry_policy overrides the task's declaration, even with limit 0", async () => {
    await start();
    await c.workers.declareTasks({ workerId: "w", tasks: [{ name: "t", retryPolicy: { limit: 3 } }] });
    const execution = await submit(c, "t", { retryPolicy: { limit: 0 } });
    expect(execution.retryPolicy).toBeUndefined();
    const [leased] = await leaseNow(c, ["t"]);
    expect((await fail(c, leased!)).willRetry).toBe(false);
    expect((await get(c, execution.id)).state).toBe(ExecutionState.FAILED);
  });

  test("without a Submit policy the latest declaration of the task by any worker applies", async () => {
    await start();
    await c.workers.declareTasks({ workerId: "a", tasks: [{ name: "t", retryPolicy: { limit: 1 } }] });
    await c.workers.declareTasks({ workerId: "b", tasks: [{ name: "t", retryPolicy: { limit: 2 } }] });
    const execution = await submit(c, "t");
    expect(execution.retryPolicy?.limit).toBe(2);
    for (let attempt = 1; attempt <= 3; attempt++) {
      const [leased] = await leaseNow(c, ["t"]);
      await fail(c, leased!);
    }
    const done = await get(c, execution.id);
    expect(done.attempts).toHaveLength(3);
    expect(done.state).toBe(ExecutionState.FAILED);
  });

  test("the policy is resolved at each decision: a declaration made after the submit governs the next failure", async () => {
    await start();
    const execution = await submit(c, "t");
    expect(execution.retryPolicy).toBeUndefined();
    await c.workers.declareTasks({ workerId: "w", tasks: [{ name: "t", retryPolicy: { limit: 1 } }] });
    const [leased] = await leaseNow(c, ["t"]);
    expect((await fail(c, leased!)).willRetry).toBe(true);
    expect((await get(c, execution.id)).retryPolicy?.limit).toBe(1);
  });

  test("with neither a Submit policy nor a declaration there are no retries", async () => {
    await start();
    const execution = await submit(c, "undeclared");
    const [leased] = await leaseNow(c, ["undeclared"]);
    expect((await fail(c, leased!)).willRetry).toBe(false);
    const done = await get(c, execution.id);
    expect(done.state).toBe(ExecutionState.FAILED);
    expect(done.attempts[0]!.retryPolicy).toBeUndefined();
  });

  test("each failed attempt records the policy that decided its fate", async () => {
    await start();
    await c.workers.declareTasks({ workerId: "w", tasks: [{ name: "t", retryPolicy: { limit: 1, backoffMin: seconds(1) } }] });
    const execution = await submit(c, "t");
    const [first] = await leaseNow(c, ["t"]);
    await fail(c, first!);
    await c.workers.declareTasks({ workerId: "w", tasks: [{ name: "t", retryPolicy: { limit: 4, backoffMin: seconds(2) } }] });
    await clock.advance(1000);
    const [second] = await leaseNow(c, ["t"]);
    await fail(c, second!);
    const done = await get(c, execution.id);
    expect(done.attempts.map((a) => [a.state, a.retryPolicy?.limit])).toEqual([
      [AttemptState.FAILED, 1],
      [AttemptState.FAILED, 4],
    ]);
    expect(done.state).toBe(ExecutionState.PENDING);
    expect(toMs(done.nextAttemptAt) - toMs(done.attempts[1]!.finishedAt)).toBe(2000);
  });
});

// Leases, heartbeats, abandonment, timeouts and fencing, on a fake clock.
import { AttemptState, ExecutionState } from "@reprise/wire";
import { afterEach, describe, expect, test } from "vitest";
import { FakeClock, committedState, millis, seconds, startTestCoordinator, toMs, until } from "./helpers.js";
import type { TestCoordinator } from "./helpers.js";
import { fail, get, leaseNow, submit, succeed } from "./wire-helpers.js";

let c: TestCoordinator;
let clock: FakeClock;

afterEach(async () => {
  await c?.close();
});

async function start() {
  clock = new FakeClock();
  c = await startTestCoordinator({ clock });
}

const heartbeat = (...tokens: Uint8Array[]) => c.workers.heartbeat({ leaseTokens: tokens });

describe("abandonment", () => {
  test("an abandoned attempt without retries ends the execution ABANDONED and it never runs again", async () => {
    await start();
    const execution = await submit(c, "charge_card");
    const [leased] = await leaseNow(c, ["charge_card"], 1, 30_000);
    await clock.advance(30_000);
    const done = await get(c, execution.id);
    expect(done.state).toBe(ExecutionState.ABANDONED);
    expect(done.attempts.map((a) => a.state)).toEqual([AttemptState.ABANDONED]);
    expect(done.failure?.type).toBe("Abandoned");
    expect(done.failure?.message).toContain("lease");
    await clock.advance(24 * 3600_000);
    await leaseNow(c, ["charge_card"], 0);
    expect((await succeed(c, leased!)).accepted).toBe(false);
  });

  test("an abandoned attempt is retried like an error while retries remain, counting from the detection", async () => {
    await start();
    const execution = await submit(c, "t", { retryPolicy: { limit: 1, backoffMin: seconds(5) } });
    await leaseNow(c, ["t"], 1, 1000);
    await clock.advance(1000);
    const waiting = await get(c, execution.id);
    expect(waiting.state).toBe(ExecutionState.PENDING);
    expect(waiting.attempts[0]!.state).toBe(AttemptState.ABANDONED);
    expect(toMs(waiting.nextAttemptAt)).toBe(toMs(waiting.attempts[0]!.finishedAt) + 5000);
    await clock.advance(5000);
    const [retry] = await leaseNow(c, ["t"]);
    expect(retry!.attempt).toBe(2);
  });

  test("abandonment is always retryable: when does not apply", async () => {
    await start();
    await c.workers.declareTasks({ workerId: "w", tasks: [{ name: "t", retryPolicy: { limit: 1 } }] });
    const execution = await submit(c, "t");
    await leaseNow(c, ["t"], 1, 1000);
    await clock.advance(1000);
    expect((await get(c, execution.id)).state).toBe(ExecutionState.PENDING);
  });

  test("a heartbeat extends the lease to now + the granted lease_duration, and the new expiry is persisted", async () => {
    await start();
    const execution = await submit(c, "t");
    const [leased] = await leaseNow(c, ["t"], 1, 10_000);
    expect(toMs(leased!.leaseExpiresAt)).toBe(clock.now() + 10_000);
    for (let i = 0; i < 5; i++) {
      await clock.advance(9000);
      expect(await heartbeat(leased!.leaseToken)).toMatchObject({ cancelRequested: [], lost: [] });
    }
    const running = await get(c, execution.id);
    expect(running.state).toBe(ExecutionState.RUNNING);
    expect(toMs(running.attempts[0]!.leaseExpiresAt)).toBe(clock.now() + 10_000);
    await clock.advance(10_000);
    expect((await get(c, execution.id)).state).toBe(ExecutionState.ABANDONED);
    expect((await heartbeat(leased!.leaseToken)).lost).toEqual([leased!.leaseToken]);
  });

  test("lease_duration 0 means 30 s", async () => {
    await start();
    await submit(c, "t");
    const [leased] = await leaseNow(c, ["t"]);
    expect(toMs(leased!.leaseExpiresAt) - clock.now()).toBe(30_000);
  });
});

describe("timeouts", () => {
  test("an attempt that runs past its task's timeout becomes TIMED_OUT, which is retryable", async () => {
    await start();
    await c.workers.declareTasks({ workerId: "w", tasks: [{ name: "slow", timeout: seconds(60), retryPolicy: { limit: 1 } }] });
    const execution = await submit(c, "slow");
    const [leased] = await leaseNow(c, ["slow"], 1, 25_000);
    expect(toMs(leased!.timeoutAt) - clock.now()).toBe(60_000);
    await clock.advance(20_000);
    await heartbeat(leased!.leaseToken);
    await clock.advance(20_000);
    await heartbeat(leased!.leaseToken);
    const running = await get(c, execution.id);
    expect(toMs(running.attempts[0]!.leaseExpiresAt)).toBe(toMs(leased!.timeoutAt));
    await clock.advance(20_000);
    const retrying = await get(c, execution.id);
    expect(retrying.attempts[0]!.state).toBe(AttemptState.TIMED_OUT);
    expect(retrying.attempts[0]!.failure?.type).toBe("TimedOut");
    expect(retrying.state).toBe(ExecutionState.PENDING);
    const [second] = await leaseNow(c, ["slow"], 1, 25_000);
    expect(second!.attempt).toBe(2);
  });

  test("the worker learns at its next heartbeat that a timed-out attempt must stop", async () => {
    await start();
    await c.workers.declareTasks({ workerId: "w", tasks: [{ name: "slow", timeout: seconds(5) }] });
    const execution = await submit(c, "slow");
    const [leased] = await leaseNow(c, ["slow"], 1, 30_000);
    await clock.advance(5000);
    expect((await heartbeat(leased!.leaseToken)).lost).toEqual([leased!.leaseToken]);
    const done = await get(c, execution.id);
    expect(done.state).toBe(ExecutionState.TIMED_OUT);
    expect(done.failure?.type).toBe("TimedOut");
    expect(done.failure?.message).toContain("timeout");
    expect((await succeed(c, leased!)).accepted).toBe(false);
  });

  test("when both the lease and the timeout have passed, whichever came first decides", async () => {
    await start();
    await c.workers.declareTasks({ workerId: "w", tasks: [{ name: "t", timeout: seconds(10) }] });
    const abandoned = await submit(c, "t");
    await leaseNow(c, ["t"], 1, 4000);
    await clock.advance(60_000);
    expect((await get(c, abandoned.id)).state).toBe(ExecutionState.ABANDONED);
  });

  test("a report arriving after the timeout is refused and the attempt is TIMED_OUT", async () => {
    await start();
    await c.workers.declareTasks({ workerId: "w", tasks: [{ name: "t", timeout: millis(500) }] });
    const execution = await submit(c, "t");
    const [leased] = await leaseNow(c, ["t"], 1, 1000);
    // No timer tick: the report itself notices the deadline.
    clock.jump(600);
    const receipt = await succeed(c, leased!);
    expect(receipt).toMatchObject({ accepted: false, reason: "the attempt timed out" });
    expect((await get(c, execution.id)).state).toBe(ExecutionState.TIMED_OUT);
  });
});

describe("lease fencing", () => {
  test("a stale lease token is refused and changes nothing", async () => {
    await start();
    const execution = await submit(c, "t", { retryPolicy: { limit: 1 } });
    const [first] = await leaseNow(c, ["t"], 1, 1000);
    await clock.advance(1000);
    const [second] = await leaseNow(c, ["t"], 1, 1000);
    const stale = await succeed(c, first!);
    expect(stale.accepted).toBe(false);
    expect(stale.reason).not.toBe("");
    const running = await get(c, execution.id);
    expect(running.state).toBe(ExecutionState.RUNNING);
    expect(running.attempts.map((a) => a.state)).toEqual([AttemptState.ABANDONED, AttemptState.RUNNING]);
    expect((await succeed(c, second!)).accepted).toBe(true);
  });

  test("each attempt accepts at most one outcome", async () => {
    await start();
    const execution = await submit(c, "t", { retryPolicy: { limit: 3 } });
    const [leased] = await leaseNow(c, ["t"]);
    const { receipts } = await c.workers.reportOutcomes({
      outcomes: [
        { leaseToken: leased!.leaseToken, outcome: { case: "failure", value: { type: "E" } } },
        { leaseToken: leased!.leaseToken, outcome: { case: "result", value: { data: new Uint8Array() } } },
      ],
    });
    expect(receipts.map((r) => r.accepted)).toEqual([true, false]);
    expect((await succeed(c, leased!)).accepted).toBe(false);
    const after = await get(c, execution.id);
    expect(after.state).toBe(ExecutionState.PENDING);
    expect(after.attempts).toHaveLength(1);
  });

  test("an execution never has two attempts RUNNING: a leased execution is not leased again", async () => {
    await start();
    const execution = await submit(c, "t", { retryPolicy: { limit: 3 } });
    await leaseNow(c, ["t"]);
    await leaseNow(c, ["t"], 0);
    const [again] = await Promise.all([
      c.workers.leaseAttempts({ workerId: "a", tasks: ["t"], maxAttempts: 10 }),
      c.workers.leaseAttempts({ workerId: "b", tasks: ["t"], maxAttempts: 10 }),
    ]);
    expect(again.attempts).toHaveLength(0);
    const running = await get(c, execution.id);
    expect(running.attempts.filter((a) => a.state === AttemptState.RUNNING)).toHaveLength(1);
  });

  test("concurrent lease calls never hand out the same execution twice", async () => {
    await start();
    const ids = new Set<string>();
    for (let i = 0; i < 50; i++) ids.add((await submit(c, "t")).id);
    const replies = await Promise.all(
      Array.from({ length: 10 }, (_, i) => c.workers.leaseAttempts({ workerId: `w${i}`, tasks: ["t"], maxAttempts: 7 })),
    );
    const leased = replies.flatMap((r) => r.attempts.map((a) => a.executionId));
    expect(leased).toHaveLength(50);
    expect(new Set(leased)).toEqual(ids);
  });

  test("forged, malformed and unknown tokens get a refused receipt with a reason, and the rest of the batch proceeds", async () => {
    await start();
    const execution = await submit(c, "t");
    const [leased] = await leaseNow(c, ["t"]);
    const forged = new Uint8Array(leased!.leaseToken);
    forged[forged.length - 1]! ^= 0xff;
    const unknown = new Uint8Array(24);
    unknown[7] = 99;
    const { receipts } = await c.workers.reportOutcomes({
      outcomes: [
        { leaseToken: forged, outcome: { case: "result", value: {} } },
        { leaseToken: new Uint8Array([1, 2, 3]), outcome: { case: "result", value: {} } },
        { leaseToken: unknown, outcome: { case: "result", value: {} } },
        { leaseToken: leased!.leaseToken },
        { leaseToken: leased!.leaseToken, outcome: { case: "result", value: {} } },
      ],
    });
    expect(receipts.map((r) => r.accepted)).toEqual([false, false, false, false, true]);
    for (const refusal of receipts.slice(0, 4)) expect(refusal.reason).not.toBe("");
    expect((await get(c, execution.id)).state).toBe(ExecutionState.SUCCEEDED);
    const hb = await heartbeat(forged, new Uint8Array([1]), unknown);
    expect(hb.lost).toHaveLength(3);
  });

  test("a lease is committed before it is sent: the attempt is RUNNING in the store when the worker receives it", async () => {
    await start();
    const execution = await submit(c, "t");
    await leaseNow(c, ["t"]);
    // A connection of its own sees only what is committed.
    expect(await committedState(c.dbPath, execution.id)).toBe(ExecutionState.RUNNING);
  });
});

describe("long-poll", () => {
  test("a waiting LeaseAttempts is woken by a submit and gets up to max_attempts in one reply", async () => {
    await start();
    const poll = c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], maxAttempts: 3, wait: seconds(60) });
    await until(() => c.server.coordinator.stats.longPolls === 1);
    await Promise.all(Array.from({ length: 5 }, () => submit(c, "t")));
    const { attempts } = await poll;
    expect(attempts.length).toBeGreaterThanOrEqual(1);
    expect(attempts.length).toBeLessThanOrEqual(3);
    const rest = await c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], maxAttempts: 10 });
    expect(attempts.length + rest.attempts.length).toBe(5);
  });

  test("a long-poll with nothing due returns empty after wait", async () => {
    await start();
    const poll = c.workers.leaseAttempts({ workerId: "w", tasks: ["t"], wait: seconds(2) });
    await until(() => c.server.coordinator.stats.longPolls === 1);
    await clock.advance(1999);
    expect(c.server.coordinator.stats.longPolls).toBe(1);
    await clock.advance(1);
    expect((await poll).attempts).toEqual([]);
    expect(c.server.coordinator.stats.nextWakeAt).toBeNull();
  });

  test("an idle coordinator arms no timer", async () => {
    await start();
    const execution = await submit(c, "t");
    const [leased] = await leaseNow(c, ["t"]);
    expect(c.server.coordinator.stats.nextWakeAt).toBe(toMs(leased!.leaseExpiresAt));
    await fail(c, leased!);
    expect((await get(c, execution.id)).state).toBe(ExecutionState.FAILED);
    await clock.advance(30_000);
    expect(c.server.coordinator.stats.nextWakeAt).toBeNull();
    expect(clock.nextTimerAt).toBeNull();
  });
});

describe("long-polls", () => {
  test("work that comes due while a long-poll's first claim runs wakes that long-poll at once, rather than at its deadline", async () => {
    await start();
    const coordinator = c.server.coordinator;
    const submitted: string[] = [];
    const received: string[] = [];
    for (let round = 0; round < 20; round++) {
      // Both in one turn: the Submit commits while, or right after, the claim finds nothing.
      const poll = coordinator.lease({ workerId: "w", tasks: ["race"], maxAttempts: 1, leaseMs: 30_000, waitMs: 60_000 }, new AbortController().signal);
      const { execution } = await coordinator.submit({ task: "race", arguments: { data: new Uint8Array(), contentType: "" }, retryPolicy: null, idempotencyKey: null, delayMs: 0, labels: {} });
      submitted.push(execution.id);
      // The fake clock never reaches the deadline: only an offer can answer.
      const leased = await Promise.race([poll, new Promise<null>((resolve) => setTimeout(() => resolve(null), 2000))]);
      expect(leased, `round ${round}: the long-poll missed the work`).not.toBeNull();
      for (const attempt of leased!) {
        received.push(attempt.executionId);
        await succeed(c, attempt);
      }
    }
    expect(received).toEqual(submitted);
  });
});

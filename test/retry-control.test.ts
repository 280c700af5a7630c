// Retry control beyond Coflux (docs/retries.md), end to end over gRPC on a
// fake clock: exponential backoff, jitter, max_elapsed, snooze, re-run,
// duplicate reports and retry budgets. Runs on SQLite and on PostgreSQL.
import { status } from "@grpc/grpc-js";
import type { LeasedAttempt, OutcomeReceipt } from "@reprise/wire";
import { AttemptState, ExecutionState, RetryRule } from "@reprise/wire";
import { afterEach, describe, expect, test } from "vitest";
import { FakeClock, seconds, startTestCoordinator, toMs, until } from "./helpers.js";
import type { TestCoordinator } from "./helpers.js";
import { fail, get, leaseNow, submit, succeed } from "./wire-helpers.js";

let c: TestCoordinator;
let clock: FakeClock;

async function start(random?: () => number) {
  clock = new FakeClock();
  c = await startTestCoordinator({ clock, random });
}

afterEach(async () => {
  await c?.close();
});

async function snooze(attempt: LeasedAttempt, delaySeconds: number): Promise<OutcomeReceipt> {
  const { receipts } = await c.workers.reportOutcomes({
    outcomes: [{ leaseToken: attempt.leaseToken, outcome: { case: "snooze", value: { delay: seconds(delaySeconds) } } }],
  });
  return receipts[0]!;
}

/** Leases the next attempt of `task` once it is due, advancing the clock to it. */
async function leaseWhenDue(executionId: string, task: string): Promise<LeasedAttempt> {
  const due = toMs((await get(c, executionId)).nextAttemptAt);
  if (due > clock.now()) await clock.advanceTo(due);
  return (await leaseNow(c, [task]))[0]!;
}

/** Fails every attempt of a fresh execution until it ends, and returns the delays between each failure and the next start, in seconds. */
async function delaysUntilEnd(executionId: string, task: string): Promise<number[]> {
  const delays: number[] = [];
  for (;;) {
    const attempt = await leaseWhenDue(executionId, task);
    const failedAt = clock.now();
    const receipt = await fail(c, attempt);
    if (!receipt.willRetry) return delays;
    delays.push((toMs(receipt.nextAttemptAt) - failedAt) / 1000);
  }
}

async function expectCode(call: Promise<unknown>, code: status, message: RegExp): Promise<void> {
  await expect(call).rejects.toMatchObject({ code, details: expect.stringMatching(message) });
}

describe("exponential backoff", () => {
  test("backoff_coefficient 2 with limit 6 and backoff [1 s, 30 s] waits 1, 2, 4, 8, 16 and 30 s: min(max, min × 2^(k−1))", async () => {
    await start();
    const e = await submit(c, "t", { retryPolicy: { limit: 6, backoffMin: seconds(1), backoffMax: seconds(30), backoffCoefficient: 2 } });
    expect(await delaysUntilEnd(e.id, "t")).toEqual([1, 2, 4, 8, 16, 30]);
    const done = await get(c, e.id);
    expect(done.state).toBe(ExecutionState.FAILED);
    expect(done.attempts.map((a) => a.retryRule)).toEqual([...Array(6).fill(RetryRule.BACKOFF), RetryRule.LIMIT]);
  });

  test("an unlimited policy with backoff_coefficient 3 waits min × 3^(k−1), capped at backoff_max, with no randomness", async () => {
    await start(() => {
      throw new Error("an exponential policy without jitter must not draw");
    });
    const e = await submit(c, "t", { retryPolicy: { unlimited: true, backoffMin: seconds(2), backoffMax: seconds(100), backoffCoefficient: 3 } });
    const delays: number[] = [];
    for (let k = 1; k <= 6; k++) {
      const attempt = await leaseWhenDue(e.id, "t");
      const failedAt = clock.now();
      delays.push((toMs((await fail(c, attempt)).nextAttemptAt) - failedAt) / 1000);
    }
    expect(delays).toEqual([2, 6, 18, 54, 100, 100]);
  });
});

describe("jitter", () => {
  test("jitter 0.5 draws each delay from [d × 0.5, d]: the lowest draw halves it, the highest keeps the schedule, never later", async () => {
    let draw = 0;
    await start(() => draw);
    const policy = { limit: 3, backoffMin: seconds(8), backoffMax: seconds(8), jitter: 0.5 };
    const low = await submit(c, "low", { retryPolicy: policy });
    draw = 0;
    expect(await delaysUntilEnd(low.id, "low")).toEqual([4, 4, 4]);
    const high = await submit(c, "high", { retryPolicy: policy });
    draw = 0.999_999;
    expect(await delaysUntilEnd(high.id, "high")).toEqual([8, 8, 8]);
  });

  test("a thousand failures with full jitter spread their retries over [0, d] instead of coming back together", async () => {
    await start(Math.random);
    const policy = { limit: 1, backoffMin: seconds(10), jitter: 1 };
    const { results } = await c.executions.submitBatch({ submissions: Array.from({ length: 1000 }, () => ({ task: "storm", retryPolicy: policy })) });
    const attempts = await leaseNow(c, ["storm"], 1000);
    const { receipts } = await c.workers.reportOutcomes({
      outcomes: attempts.map((a) => ({ leaseToken: a.leaseToken, outcome: { case: "failure" as const, value: { type: "Down" } } })),
    });
    expect(results).toHaveLength(1000);
    const delays = receipts.map((r) => toMs(r.nextAttemptAt) - clock.now());
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...delays)).toBeLessThanOrEqual(10_000);
    // Ten one-second buckets each hold about a tenth.
    const buckets = Array.from({ length: 10 }, (_, i) => delays.filter((d) => Math.min(9, Math.floor(d / 1000)) === i).length);
    for (const count of buckets) expect(count).toBeGreaterThan(50);
  });
});

describe("max_elapsed", () => {
  test("no retry is scheduled whose start would fall past the first attempt's scheduled_at + max_elapsed: the failure ends the execution, rule MAX_ELAPSED", async () => {
    await start();
    const e = await submit(c, "t", { retryPolicy: { unlimited: true, backoffMin: seconds(10), backoffMax: seconds(10), backoffCoefficient: 1, maxElapsed: seconds(35) } });
    expect(await delaysUntilEnd(e.id, "t")).toEqual([10, 10, 10]);
    const done = await get(c, e.id);
    expect(done.state).toBe(ExecutionState.FAILED);
    expect(done.failure?.type).toBe("ConnectionError");
    expect(done.attempts.map((a) => (toMs(a.startedAt) - toMs(done.createdAt)) / 1000)).toEqual([0, 10, 20, 30]);
    expect(done.attempts.at(-1)!.retryRule).toBe(RetryRule.MAX_ELAPSED);
  });

  test("max_elapsed counts from the first attempt's scheduled start, which the submit's delay moves", async () => {
    await start();
    const e = await submit(c, "t", { delay: seconds(100), retryPolicy: { limit: 5, backoffMin: seconds(10), maxElapsed: seconds(15) } });
    expect(await delaysUntilEnd(e.id, "t")).toEqual([10]);
    expect((await get(c, e.id)).attempts.map((a) => (toMs(a.startedAt) - toMs(e.createdAt)) / 1000)).toEqual([100, 110]);
  });

  test("a retry_after that would start past max_elapsed ends the execution too", async () => {
    await start();
    const e = await submit(c, "t", { retryPolicy: { limit: 5, maxElapsed: seconds(60) } });
    const [attempt] = await leaseNow(c, ["t"]);
    const receipt = await fail(c, attempt!, { retryAfterSeconds: 61 });
    expect(receipt.willRetry).toBe(false);
    expect((await get(c, e.id)).state).toBe(ExecutionState.FAILED);
  });
});

describe("snooze", () => {
  test("a snooze ends the attempt SNOOZED and makes the execution PENDING, due at finished_at + delay; the receipt says accepted, will_retry false and next_attempt_at", async () => {
    await start();
    const e = await submit(c, "t");
    const [attempt] = await leaseNow(c, ["t"]);
    const receipt = await snooze(attempt!, 30);
    expect(receipt).toMatchObject({ accepted: true, willRetry: false, duplicate: false });
    expect(toMs(receipt.nextAttemptAt)).toBe(clock.now() + 30_000);
    const pending = await get(c, e.id);
    expect(pending.state).toBe(ExecutionState.PENDING);
    expect(toMs(pending.nextAttemptAt)).toBe(clock.now() + 30_000);
    expect(pending.attempts[0]).toMatchObject({ state: AttemptState.SNOOZED, retryRule: RetryRule.SNOOZE });
    expect(toMs(pending.attempts[0]!.retryAt)).toBe(clock.now() + 30_000);
    await leaseNow(c, ["t"], 0);
    const next = await leaseWhenDue(e.id, "t");
    expect(next.attempt).toBe(2);
    expect(toMs((await get(c, e.id)).attempts[1]!.scheduledAt)).toBe(toMs(receipt.nextAttemptAt));
  });

  test("a snooze uses up no retry: an at-most-once execution snoozed twice still runs a third attempt, and its first failure then ends it", async () => {
    await start();
    const e = await submit(c, "t");
    await snooze((await leaseNow(c, ["t"]))[0]!, 1);
    await snooze(await leaseWhenDue(e.id, "t"), 1);
    const third = await leaseWhenDue(e.id, "t");
    expect(third.attempt).toBe(3);
    expect((await fail(c, third)).willRetry).toBe(false);
    const done = await get(c, e.id);
    expect(done.state).toBe(ExecutionState.FAILED);
    expect(done.attempts.map((a) => a.state)).toEqual([AttemptState.SNOOZED, AttemptState.SNOOZED, AttemptState.FAILED]);
    expect(done.attempts[2]!.retryRule).toBe(RetryRule.LIMIT);
  });

  test("snoozes are not counted in k: with limit 2 and backoff [10 s, 20 s], fail, snooze, fail waits 10 s then 20 s, and a third failure ends it", async () => {
    await start();
    const e = await submit(c, "t", { retryPolicy: { limit: 2, backoffMin: seconds(10), backoffMax: seconds(20) } });
    let failedAt = clock.now();
    let receipt = await fail(c, (await leaseNow(c, ["t"]))[0]!);
    expect(toMs(receipt.nextAttemptAt) - failedAt).toBe(10_000);
    await snooze(await leaseWhenDue(e.id, "t"), 60);
    const third = await leaseWhenDue(e.id, "t");
    failedAt = clock.now();
    receipt = await fail(c, third);
    expect(toMs(receipt.nextAttemptAt) - failedAt).toBe(20_000);
    expect((await fail(c, await leaseWhenDue(e.id, "t"))).willRetry).toBe(false);
    expect((await get(c, e.id)).attempts.map((a) => a.state)).toEqual([AttemptState.FAILED, AttemptState.SNOOZED, AttemptState.FAILED, AttemptState.FAILED]);
  });

  test("a snooze with a negative delay is INVALID_ARGUMENT naming outcomes[0].snooze.delay", async () => {
    await start();
    await submit(c, "t");
    const [attempt] = await leaseNow(c, ["t"]);
    await expectCode(
      c.workers.reportOutcomes({ outcomes: [{ leaseToken: attempt!.leaseToken, outcome: { case: "snooze", value: { delay: { seconds: -1n } } } }] }),
      status.INVALID_ARGUMENT,
      /^outcomes\[0\]\.snooze\.delay: must not be negative/,
    );
  });
});

describe("re-run", () => {
  test("RerunExecution re-opens a FAILED execution: PENDING, due now, failure and finished_at cleared, same id, attempts and key, the next attempt numbered after the last, the limit counted afresh", async () => {
    await start();
    const e = await submit(c, "t", { idempotencyKey: "k1", retryPolicy: { limit: 1, backoffMin: seconds(5) } });
    await fail(c, (await leaseNow(c, ["t"]))[0]!);
    await fail(c, await leaseWhenDue(e.id, "t"));
    expect((await get(c, e.id)).state).toBe(ExecutionState.FAILED);
    await clock.advance(60_000);
    const { execution: rerun } = await c.executions.rerunExecution({ executionId: e.id });
    expect(rerun).toMatchObject({ id: e.id, state: ExecutionState.PENDING, idempotencyKey: "k1" });
    expect(rerun!.failure).toBeUndefined();
    expect(rerun!.finishedAt).toBeUndefined();
    expect(toMs(rerun!.nextAttemptAt)).toBe(clock.now());
    expect(rerun!.attempts.map((a) => a.number)).toEqual([1, 2]);
    const third = (await leaseNow(c, ["t"]))[0]!;
    expect(third.attempt).toBe(3);
    // The limit of 1 counts afresh: one retry after the re-run, 5 s after (k = 1 again).
    const failedAt = clock.now();
    const receipt = await fail(c, third);
    expect(receipt.willRetry).toBe(true);
    expect(toMs(receipt.nextAttemptAt) - failedAt).toBe(5000);
    expect((await fail(c, await leaseWhenDue(e.id, "t"))).willRetry).toBe(false);
    const { execution: same } = await c.executions.submit({ task: "t", idempotencyKey: "k1" });
    expect(same!.id).toBe(e.id);
  });

  test("RerunExecution re-opens a CANCELLED execution, and the reports of the attempt cancelled while it ran stay refused", async () => {
    await start();
    const e = await submit(c, "t");
    const [running] = await leaseNow(c, ["t"]);
    await c.executions.cancelExecution({ executionId: e.id });
    const { execution } = await c.executions.rerunExecution({ executionId: e.id });
    expect(execution!.state).toBe(ExecutionState.PENDING);
    expect((await succeed(c, running!)).accepted).toBe(false);
    const next = (await leaseNow(c, ["t"]))[0]!;
    expect(next.attempt).toBe(2);
    expect((await succeed(c, next)).accepted).toBe(true);
    expect((await get(c, e.id)).state).toBe(ExecutionState.SUCCEEDED);
  });

  test("RerunExecution re-opens ABANDONED and TIMED_OUT executions", async () => {
    await start();
    await c.workers.declareTasks({ tasks: [{ name: "slow", timeout: seconds(5) }] });
    const abandoned = await submit(c, "gone");
    const timedOut = await submit(c, "slow");
    await leaseNow(c, ["gone"], 1, 1000);
    await leaseNow(c, ["slow"], 1, 60_000);
    await clock.advance(6000);
    await until(async () => (await get(c, abandoned.id)).state === ExecutionState.ABANDONED && (await get(c, timedOut.id)).state === ExecutionState.TIMED_OUT);
    for (const e of [abandoned, timedOut]) expect((await c.executions.rerunExecution({ executionId: e.id })).execution!.state).toBe(ExecutionState.PENDING);
  });

  test("RerunExecution refuses PENDING, RUNNING and SUCCEEDED executions with FAILED_PRECONDITION, an unknown id with NOT_FOUND and an empty one with INVALID_ARGUMENT", async () => {
    await start();
    const pending = await submit(c, "p");
    const running = await submit(c, "r");
    await leaseNow(c, ["r"]);
    const done = await submit(c, "s");
    await succeed(c, (await leaseNow(c, ["s"]))[0]!);
    for (const [e, state] of [[pending, "PENDING"], [running, "RUNNING"], [done, "SUCCEEDED"]] as const) {
      await expectCode(c.executions.rerunExecution({ executionId: e.id }), status.FAILED_PRECONDITION, new RegExp(`is ${state}; only a FAILED, ABANDONED, TIMED_OUT or CANCELLED execution can be re-run`));
    }
    await expectCode(c.executions.rerunExecution({ executionId: "nope" }), status.NOT_FOUND, /^execution_id: no execution "nope"/);
    await expectCode(c.executions.rerunExecution({ executionId: "" }), status.INVALID_ARGUMENT, /^execution_id: must not be empty/);
    await expectCode(c.executions.rerunExecution({ executionId: pending.id }), status.FAILED_PRECONDITION, /PENDING/);
  });

  test("a watch attached after a re-run follows the execution to its new end", async () => {
    await start();
    const e = await submit(c, "t");
    await fail(c, (await leaseNow(c, ["t"]))[0]!);
    await c.executions.rerunExecution({ executionId: e.id });
    const states: ExecutionState[] = [];
    const watching = (async () => {
      for await (const { execution } of c.executions.watchExecution({ executionId: e.id })) states.push(execution!.state);
    })();
    await until(() => states.length === 1);
    await succeed(c, (await leaseNow(c, ["t"]))[0]!);
    await watching;
    expect(states).toEqual([ExecutionState.PENDING, ExecutionState.RUNNING, ExecutionState.SUCCEEDED]);
  });

  test("max_elapsed counts afresh from the re-run", async () => {
    await start();
    const e = await submit(c, "t", { retryPolicy: { limit: 10, backoffMin: seconds(10), maxElapsed: seconds(15) } });
    expect(await delaysUntilEnd(e.id, "t")).toEqual([10]);
    await clock.advance(3_600_000);
    await c.executions.rerunExecution({ executionId: e.id });
    expect(await delaysUntilEnd(e.id, "t")).toEqual([10]);
    expect((await get(c, e.id)).attempts).toHaveLength(4);
  });
});

describe("duplicate reports", () => {
  test("a report repeated with the same token and the same case gets accepted: true, duplicate: true and changes nothing, for a result, a failure and a snooze", async () => {
    await start();
    const cases = [
      { task: "r", report: (a: LeasedAttempt) => succeed(c, a, "first") },
      { task: "f", report: (a: LeasedAttempt) => fail(c, a) },
      { task: "z", report: (a: LeasedAttempt) => snooze(a, 10) },
    ];
    for (const { task, report } of cases) {
      const e = await submit(c, task, { retryPolicy: { limit: 3, backoffMin: seconds(1) } });
      const [attempt] = await leaseNow(c, [task]);
      const first = await report(attempt!);
      expect(first).toMatchObject({ accepted: true, duplicate: false });
      const before = await get(c, e.id);
      await clock.advance(500);
      expect(await report(attempt!)).toMatchObject({ accepted: true, duplicate: true, reason: "" });
      expect(await get(c, e.id)).toEqual(before);
    }
  });

  test("a repeat within one batch is a duplicate too, and a report of another case on an ended attempt is refused", async () => {
    await start();
    const e = await submit(c, "t");
    const [attempt] = await leaseNow(c, ["t"]);
    const result = { case: "result" as const, value: { data: new Uint8Array([1]), contentType: "" } };
    const { receipts } = await c.workers.reportOutcomes({
      outcomes: [
        { leaseToken: attempt!.leaseToken, outcome: result },
        { leaseToken: attempt!.leaseToken, outcome: result },
        { leaseToken: attempt!.leaseToken, outcome: { case: "failure", value: { type: "Late" } } },
      ],
    });
    expect(receipts.map((r) => [r.accepted, r.duplicate])).toEqual([[true, false], [true, true], [false, false]]);
    expect(receipts[2]!.reason).toMatch(/already ended succeeded/);
    expect((await fail(c, attempt!)).accepted).toBe(false);
    expect((await get(c, e.id)).state).toBe(ExecutionState.SUCCEEDED);
  });
});

describe("retry budget", () => {
  test("a budget of 2 retries/s with burst 2 spreads a storm of 10 simultaneous failures: 2 retries at once, then one every 500 ms, and nothing is dropped", async () => {
    await start();
    await c.workers.declareTasks({ tasks: [{ name: "api", retryPolicy: { limit: 3 }, retryBudget: { retriesPerSecond: 2, burst: 2 } }] });
    const { results } = await c.executions.submitBatch({ submissions: Array.from({ length: 10 }, () => ({ task: "api" })) });
    const t0 = clock.now();
    const attempts = await leaseNow(c, ["api"], 10);
    const { receipts } = await c.workers.reportOutcomes({
      outcomes: attempts.map((a) => ({ leaseToken: a.leaseToken, outcome: { case: "failure" as const, value: { type: "Down" } } })),
    });
    expect(receipts.every((r) => r.accepted && r.willRetry)).toBe(true);
    expect(receipts.map((r) => toMs(r.nextAttemptAt) - t0)).toEqual([0, 0, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000]);
    const rules = await Promise.all(results.map(async (r) => (await get(c, r.execution!.id)).attempts[0]!));
    expect(rules.map((a) => a.retryRule)).toEqual([RetryRule.BACKOFF, RetryRule.BACKOFF, ...Array(8).fill(RetryRule.BUDGET)]);
    expect(rules.slice(2).every((a) => toMs(a.retryComputedAt) === t0)).toBe(true);
    // Every retry runs, each at its deferred time.
    let leased = 0;
    for (const offset of [0, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000]) {
      await clock.advanceTo(t0 + offset);
      const { attempts: due } = await c.workers.leaseAttempts({ workerId: "w", tasks: ["api"], maxAttempts: 10 });
      expect(due).toHaveLength(offset === 0 ? 2 : 1);
      for (const a of due) await succeed(c, a);
      leased += due.length;
    }
    expect(leased).toBe(10);
  });

  test("a retry deferred by the budget past max_elapsed is not scheduled: the execution ends as if the limit had been reached", async () => {
    await start();
    await c.workers.declareTasks({ tasks: [{ name: "api", retryBudget: { retriesPerSecond: 0.1, burst: 1 } }] });
    const policy = { limit: 5, maxElapsed: seconds(5) };
    const first = await submit(c, "api", { retryPolicy: policy });
    const second = await submit(c, "api", { retryPolicy: policy });
    const [a, b] = await leaseNow(c, ["api"], 2);
    expect((await fail(c, a!)).willRetry).toBe(true);
    expect((await fail(c, b!)).willRetry).toBe(false);
    expect((await get(c, first.id)).state).toBe(ExecutionState.PENDING);
    const ended = await get(c, second.id);
    expect(ended.state).toBe(ExecutionState.FAILED);
    expect(ended.attempts[0]!.retryRule).toBe(RetryRule.MAX_ELAPSED);
  });

  test("a retry booked an hour ahead does not defer the task's sooner retries: each starts when a token is there at its own due time", async () => {
    await start();
    await c.workers.declareTasks({ tasks: [{ name: "api", retryBudget: { retriesPerSecond: 1, burst: 1 } }] });
    const far = await submit(c, "api", { retryPolicy: { limit: 1, backoffMin: seconds(3600) } });
    const soon = await submit(c, "api", { retryPolicy: { limit: 1 } });
    const bounded = await submit(c, "api", { retryPolicy: { limit: 1, maxElapsed: seconds(60) } });
    const t0 = clock.now();
    const byId = new Map((await leaseNow(c, ["api"], 3)).map((a) => [a.executionId, a]));
    expect(toMs((await fail(c, byId.get(far.id)!)).nextAttemptAt)).toBe(t0 + 3_600_000);
    expect(toMs((await fail(c, byId.get(soon.id)!)).nextAttemptAt)).toBe(t0);
    // The token at t0 is taken; the next accrues a second later, well inside max_elapsed.
    const deferred = await fail(c, byId.get(bounded.id)!);
    expect(deferred.willRetry).toBe(true);
    expect(toMs(deferred.nextAttemptAt)).toBe(t0 + 1000);
    expect((await get(c, soon.id)).attempts[0]!.retryRule).toBe(RetryRule.BACKOFF);
    expect((await get(c, bounded.id)).attempts[0]!.retryRule).toBe(RetryRule.BUDGET);
  });

  test("first attempts and snoozes take no tokens from the budget", async () => {
    await start();
    await c.workers.declareTasks({ tasks: [{ name: "api", retryPolicy: { limit: 1 }, retryBudget: { retriesPerSecond: 0.001, burst: 1 } }] });
    const many = await c.executions.submitBatch({ submissions: Array.from({ length: 5 }, () => ({ task: "api" })) });
    const attempts = await leaseNow(c, ["api"], 5);
    for (const a of attempts.slice(0, 4)) expect(toMs((await snooze(a, 0)).nextAttemptAt)).toBe(clock.now());
    // The bucket's one token is still there for the first retry.
    const receipt = await fail(c, attempts[4]!);
    expect(toMs(receipt.nextAttemptAt)).toBe(clock.now());
    expect(many.results).toHaveLength(5);
  });

  test("a task declared with retries_per_second 0 has no budget", async () => {
    await start();
    await c.workers.declareTasks({ tasks: [{ name: "api", retryPolicy: { limit: 1 }, retryBudget: { retriesPerSecond: 0, burst: 1 } }] });
    await c.executions.submitBatch({ submissions: Array.from({ length: 5 }, () => ({ task: "api" })) });
    const attempts = await leaseNow(c, ["api"], 5);
    for (const a of attempts) expect(toMs((await fail(c, a)).nextAttemptAt)).toBe(clock.now());
  });
});

describe("validation", () => {
  test("backoff_coefficient below 1 (and not 0), NaN or infinite is INVALID_ARGUMENT naming the field", async () => {
    await start();
    for (const backoffCoefficient of [0.5, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expectCode(submit(c, "t", { retryPolicy: { limit: 1, backoffCoefficient } }), status.INVALID_ARGUMENT, /^retry_policy\.backoff_coefficient: /);
    }
    await expectCode(
      c.workers.declareTasks({ tasks: [{ name: "t", retryPolicy: { limit: 1, backoffCoefficient: 0.9 } }] }),
      status.INVALID_ARGUMENT,
      /^tasks\[0\]\.retry_policy\.backoff_coefficient: /,
    );
    expect((await submit(c, "t", { retryPolicy: { limit: 1, backoffCoefficient: 1 } })).state).toBe(ExecutionState.PENDING);
  });

  test("jitter outside [0, 1], NaN or infinite is INVALID_ARGUMENT naming the field", async () => {
    await start();
    for (const jitter of [-0.1, 1.01, Number.NaN, Number.NEGATIVE_INFINITY]) {
      await expectCode(submit(c, "t", { retryPolicy: { limit: 1, jitter } }), status.INVALID_ARGUMENT, /^retry_policy\.jitter: /);
    }
    expect((await submit(c, "t", { retryPolicy: { limit: 1, jitter: 1 } })).state).toBe(ExecutionState.PENDING);
  });

  test("a negative max_elapsed is INVALID_ARGUMENT naming the field", async () => {
    await start();
    await expectCode(submit(c, "t", { retryPolicy: { limit: 1, maxElapsed: { seconds: -5n } } }), status.INVALID_ARGUMENT, /^retry_policy\.max_elapsed: must not be negative/);
  });

  test("a retry budget with a negative, NaN or infinite rate, or a burst over its maximum, is INVALID_ARGUMENT naming the field", async () => {
    await start();
    for (const retriesPerSecond of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expectCode(
        c.workers.declareTasks({ tasks: [{ name: "t", retryBudget: { retriesPerSecond, burst: 1 } }] }),
        status.INVALID_ARGUMENT,
        /^tasks\[0\]\.retry_budget\.retries_per_second: /,
      );
    }
    await expectCode(
      c.workers.declareTasks({ tasks: [{ name: "t", retryBudget: { retriesPerSecond: 1, burst: 2_000_000 } }] }),
      status.INVALID_ARGUMENT,
      /^tasks\[0\]\.retry_budget\.burst: /,
    );
  });
});

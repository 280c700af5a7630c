// The `retries` forms and `when` of the TypeScript client (docs/semantics.md),
// a worker-requested retry delay, and how errors are reported, against a real
// coordinator.
import { describe, expect, test } from "vitest";
import {
  ExecutionFailedError,
  ExecutionState,
  NonRetryableError,
  Retries,
  RetryAfterError,
  retryPolicy,
  Worker,
} from "@reprise/client";
import type { Execution, RetryPolicy, RetriesOption, TaskHandler } from "@reprise/client";
import { MemoryLogger, clientEnv, retryDelayAfter } from "./client-helpers.js";
import type { ClientEnv } from "./client-helpers.js";
import { toMs } from "./helpers.js";

class ConnectionError extends Error {}
class TimeoutError extends Error {}
class HttpError extends Error {
  constructor(readonly statusCode: number) {
    super(`HTTP ${statusCode}`);
  }
}

const ms = (d: { seconds: bigint; nanos: number } | undefined) => (d === undefined ? undefined : Number(d.seconds) * 1000 + d.nanos / 1e6);
const wire = (p: ReturnType<typeof retryPolicy> | RetryPolicy | undefined) =>
  p === undefined ? undefined : { limit: p.limit ?? 0, unlimited: p.unlimited ?? false, min: ms(p.backoffMin as never), max: ms(p.backoffMax as never) };

/** Runs one execution of a task with `retries` whose handler is `handler`; returns its final state. */
async function runOnce(env: ClientEnv, retries: RetriesOption | undefined, handler: TaskHandler, args: unknown = null): Promise<Execution> {
  const name = `t${Math.random().toString(36).slice(2, 8)}`;
  const worker = env.worker().task(name, retries === undefined ? {} : { retries }, handler);
  await worker.start();
  const handle = await env.client().submit(name, args);
  await handle.result().catch(() => undefined);
  return handle.get();
}

/** A handler that throws `errors[attempt - 1]` and returns "ok" once they run out. */
const failing =
  (...errors: unknown[]): TaskHandler =>
  (_args, ctx) => {
    if (ctx.attempt <= errors.length) throw errors[ctx.attempt - 1];
    return "ok";
  };

describe("retries forms map onto the wire RetryPolicy", () => {
  test("retries: N, Retries, true and limit null send the wire policies of docs/semantics.md, with explicit backoffs", () => {
    expect(wire(retryPolicy(undefined))).toBeUndefined();
    expect(wire(retryPolicy(0))).toBeUndefined();
    expect(wire(retryPolicy(false))).toBeUndefined();
    expect(wire(retryPolicy(2))).toEqual({ limit: 2, unlimited: false, min: 0, max: 0 });
    expect(wire(retryPolicy(true))).toEqual({ limit: 0, unlimited: true, min: 1000, max: 60_000 });
    expect(wire(retryPolicy(new Retries({ limit: 3 })))).toEqual({ limit: 3, unlimited: false, min: 1000, max: 60_000 });
    expect(wire(retryPolicy(new Retries({ limit: 2, backoff: [300, 300] })))).toEqual({ limit: 2, unlimited: false, min: 300_000, max: 300_000 });
    expect(wire(retryPolicy(new Retries({ limit: 5, backoff: [300, 600] })))).toEqual({ limit: 5, unlimited: false, min: 300_000, max: 600_000 });
    expect(wire(retryPolicy(new Retries({ limit: null, backoff: [10, 300] })))).toEqual({ limit: 0, unlimited: true, min: 10_000, max: 300_000 });
    expect(wire(retryPolicy(new Retries({ limit: null })))).toEqual({ limit: 0, unlimited: true, min: 1000, max: 60_000 });
  });

  test("bad retries values are refused where they are written, naming the option", () => {
    expect(() => new Retries({ limit: -1 })).toThrow(/Retries.limit/);
    expect(() => new Retries({ limit: 2, backoff: [5, 1] })).toThrow(/Retries.backoff/);
    expect(() => retryPolicy(1.5)).toThrow(/retries/);
  });

  test("a retry policy or timeout longer than the coordinator's limits is refused at registration, naming the task and the field", async () => {
    const year = 365 * 86_400;
    const worker = new Worker({ logger: new MemoryLogger() });
    try {
      const handler = () => null;
      expect(() => worker.task("slow", { retries: new Retries({ limit: 3, backoff: [1, year + 1] }) }, handler)).toThrow(/^task "slow": retries\.backoff\[1\]: must be at most 365 days/);
      expect(() => worker.task("slow", { retries: new Retries({ limit: null, backoff: [year + 1, year + 1] }) }, handler)).toThrow(/^task "slow": retries\.backoff\[0\]: must be at most 365 days/);
      expect(() => worker.task("slow", { retries: new Retries({ limit: 3, maxElapsed: 10 * year + 1 }) }, handler)).toThrow(/^task "slow": retries\.maxElapsed: must be at most 3650 days/);
      expect(() => worker.task("slow", { timeout: year + 1 }, handler)).toThrow(/^task "slow": timeout: must be at most 365 days/);
      // The limits themselves are allowed.
      worker.task("slow", { retries: new Retries({ limit: 3, backoff: [year, year], maxElapsed: 10 * year }), timeout: year }, handler);
    } finally {
      await worker.stop();
    }
  });

  test("a retry limit over 10000 or a budget over 1000000 is refused where it is written; a budget's burst of 0 means 1, as on the wire", async () => {
    expect(() => new Retries({ limit: 10_001 })).toThrow(/^Retries\.limit: must be a whole number from 0 to 10000/);
    expect(() => retryPolicy(10_001)).toThrow(/^retries: must be a whole number from 0 to 10000/);
    expect(retryPolicy(10_000)).toMatchObject({ limit: 10_000 });
    const worker = new Worker({ logger: new MemoryLogger() });
    try {
      const handler = () => null;
      expect(() => worker.task("t", { retryBudget: { perSecond: 1_000_001 } }, handler)).toThrow(/^task "t": retryBudget\.perSecond: must be a positive number of at most 1000000/);
      expect(() => worker.task("t", { retryBudget: { perSecond: 1, burst: 1_000_001 } }, handler)).toThrow(/^task "t": retryBudget\.burst: must be a whole number from 0 to 1000000/);
      worker.task("t", { retryBudget: { perSecond: 1, burst: 0 } }, handler);
    } finally {
      await worker.stop();
    }
  });

  test("each declared retries form is the policy in effect for executions of its task", async () => {
    const env = await clientEnv();
    try {
      const forms: Record<string, RetriesOption | undefined> = {
        none: undefined,
        zero: 0,
        no: false,
        two: 2,
        forever: true,
        interpolated: new Retries({ limit: 5, backoff: [300, 600] }),
        defaults: new Retries({ limit: 3 }),
        random: new Retries({ limit: null, backoff: [10, 300] }),
      };
      const worker = env.worker();
      for (const [name, retries] of Object.entries(forms)) worker.task(`policy_${name}`, retries === undefined ? {} : { retries }, () => null);
      // Declared at start; a delayed submit stays PENDING, showing the policy in effect.
      await worker.start();
      const client = env.client();
      for (const [name, retries] of Object.entries(forms)) {
        const handle = await client.submit(`policy_${name}`, null, { delay: 3600 });
        const shown = (await handle.get()).retryPolicy;
        const expected = wire(retryPolicy(retries));
        // The coordinator shows no policy when the one in effect allows no retries.
        if (expected === undefined) expect(shown === undefined || (!shown.unlimited && shown.limit === 0)).toBe(true);
        else expect(wire(shown)).toEqual(expected);
        await handle.cancel();
      }
    } finally {
      await env.close();
    }
  });
});

describe("retries forms at run time", () => {
  test("retries: N retries right after each failure and runs at most N + 1 attempts", async () => {
    const env = await clientEnv();
    try {
      const done = await runOnce(env, 2, failing(new Error("1"), new Error("2"), new Error("3")));
      expect(done.state).toBe(ExecutionState.FAILED);
      expect(done.attempts).toHaveLength(3);
      expect(retryDelayAfter(done, 1)).toBe(0);
      expect(retryDelayAfter(done, 2)).toBe(0);
    } finally {
      await env.close();
    }
  });

  test("no retries, 0 and false run at most once: the first error ends the execution FAILED", async () => {
    const env = await clientEnv();
    try {
      for (const retries of [undefined, 0, false] as const) {
        const done = await runOnce(env, retries, failing(new Error("once")));
        expect(done.state).toBe(ExecutionState.FAILED);
        expect(done.attempts).toHaveLength(1);
      }
    } finally {
      await env.close();
    }
  });

  test("Retries with a backoff range waits the interpolated delay before each retry", async () => {
    const env = await clientEnv();
    try {
      const done = await runOnce(env, new Retries({ limit: 3, backoff: [0.1, 0.3] }), failing(new Error("a"), new Error("b"), new Error("c")));
      expect(done.state).toBe(ExecutionState.SUCCEEDED);
      expect([1, 2, 3].map((n) => retryDelayAfter(done, n))).toEqual([100, 200, 300]);
    } finally {
      await env.close();
    }
  });

  test("Retries({ limit: N }) without a backoff waits 1 s before its first retry", async () => {
    const env = await clientEnv();
    try {
      const done = await runOnce(env, new Retries({ limit: 2 }), failing(new Error("a")));
      expect(done.state).toBe(ExecutionState.SUCCEEDED);
      expect(retryDelayAfter(done, 1)).toBe(1000);
    } finally {
      await env.close();
    }
  });

  test("retries: true keeps retrying with a delay in [1 s, 60 s] until an attempt succeeds", async () => {
    // The lowest random draw keeps the test at the 1 s end of the range.
    const env = await clientEnv({ random: () => 0 });
    try {
      const done = await runOnce(env, true, failing(new Error("a")));
      expect(done.state).toBe(ExecutionState.SUCCEEDED);
      expect(done.retryPolicy?.unlimited).toBe(true);
      expect(retryDelayAfter(done, 1)).toBe(1000);
    } finally {
      await env.close();
    }
  });

  test("Retries({ limit: null, backoff }) retries without limit, each delay within [min, max]", async () => {
    const env = await clientEnv();
    try {
      const errors = Array.from({ length: 6 }, (_, i) => new Error(`failure ${i + 1}`));
      const done = await runOnce(env, new Retries({ limit: null, backoff: [0.05, 0.1] }), failing(...errors));
      expect(done.state).toBe(ExecutionState.SUCCEEDED);
      expect(done.attempts).toHaveLength(7);
      for (let n = 1; n <= 6; n++) expect(retryDelayAfter(done, n)).toBeGreaterThanOrEqual(50), expect(retryDelayAfter(done, n)).toBeLessThanOrEqual(100);
    } finally {
      await env.close();
    }
  });
});

describe("when", () => {
  const fast = (when: ConstructorParameters<typeof Retries>[0]["when"]) => new Retries({ limit: 3, backoff: [0, 0], when });

  test("when: an error class retries errors of that class", async () => {
    const env = await clientEnv();
    try {
      const done = await runOnce(env, fast(ConnectionError), failing(new ConnectionError("reset")));
      expect(done.state).toBe(ExecutionState.SUCCEEDED);
      expect(done.attempts).toHaveLength(2);
    } finally {
      await env.close();
    }
  });

  test("when: an error class fails any other error at once without using up retries", async () => {
    const env = await clientEnv();
    try {
      const done = await runOnce(env, fast(ConnectionError), failing(new TypeError("bug")));
      expect(done.state).toBe(ExecutionState.FAILED);
      expect(done.attempts).toHaveLength(1);
      expect(done.failure).toMatchObject({ type: "TypeError", message: "bug", nonRetryable: true });
    } finally {
      await env.close();
    }
  });

  test("when: an array of classes retries any of them and fails others at once", async () => {
    const env = await clientEnv();
    try {
      const when = fast([ConnectionError, TimeoutError]);
      const retried = await runOnce(env, when, failing(new ConnectionError("a"), new TimeoutError("b")));
      expect(retried.state).toBe(ExecutionState.SUCCEEDED);
      expect(retried.attempts).toHaveLength(3);
      const failed = await runOnce(env, when, failing(new TimeoutError("b"), new RangeError("c")));
      expect(failed.state).toBe(ExecutionState.FAILED);
      expect(failed.attempts).toHaveLength(2);
      expect(failed.failure).toMatchObject({ type: "RangeError", nonRetryable: true });
    } finally {
      await env.close();
    }
  });

  test("when: a predicate decides from the error object at the throw", async () => {
    const env = await clientEnv();
    try {
      const when = fast((e) => e instanceof HttpError && e.statusCode >= 500);
      const retried = await runOnce(env, when, failing(new HttpError(503), new HttpError(502)));
      expect(retried.state).toBe(ExecutionState.SUCCEEDED);
      expect(retried.attempts).toHaveLength(3);
      const failed = await runOnce(env, when, failing(new HttpError(503), new HttpError(404)));
      expect(failed.state).toBe(ExecutionState.FAILED);
      expect(failed.attempts).toHaveLength(2);
      expect(failed.failure).toMatchObject({ type: "HttpError", message: "HTTP 404", nonRetryable: true });
    } finally {
      await env.close();
    }
  });

  test("a throwing when fails the attempt non-retryably and the report carries both messages", async () => {
    const env = await clientEnv();
    try {
      const when = fast(() => {
        throw new Error("predicate is broken");
      });
      const done = await runOnce(env, when, failing(new ConnectionError("reset by peer")));
      expect(done.state).toBe(ExecutionState.FAILED);
      expect(done.attempts).toHaveLength(1);
      expect(done.failure?.nonRetryable).toBe(true);
      expect(done.failure?.type).toBe("ConnectionError");
      expect(done.failure?.message).toContain("reset by peer");
      expect(done.failure?.message).toContain("predicate is broken");
    } finally {
      await env.close();
    }
  });
});

describe("steering from the handler", () => {
  test("a handler throwing RetryAfterError sets the delay before the next retry, which still counts", async () => {
    const env = await clientEnv();
    try {
      const done = await runOnce(env, new Retries({ limit: 1, backoff: [0, 0] }), failing(new RetryAfterError(0.25, "429 Too Many Requests"), new Error("again")));
      expect(done.state).toBe(ExecutionState.FAILED);
      expect(done.attempts).toHaveLength(2);
      expect(retryDelayAfter(done, 1)).toBe(250);
      expect(done.attempts[0]!.failure).toMatchObject({ type: "RetryAfterError", message: "429 Too Many Requests" });
    } finally {
      await env.close();
    }
  });

  test("any error with a numeric retryAfter property (seconds) requests that delay", async () => {
    const env = await clientEnv();
    try {
      const throttled = Object.assign(new HttpError(503), { retryAfter: 0.15 });
      const done = await runOnce(env, new Retries({ limit: 2, backoff: [5, 5] }), failing(throttled));
      expect(done.state).toBe(ExecutionState.SUCCEEDED);
      expect(retryDelayAfter(done, 1)).toBe(150);
    } finally {
      await env.close();
    }
  });

  test("NonRetryableError ends the execution at once whatever the policy", async () => {
    const env = await clientEnv();
    try {
      const done = await runOnce(env, 5, failing(new NonRetryableError("bad input")));
      expect(done.state).toBe(ExecutionState.FAILED);
      expect(done.attempts).toHaveLength(1);
      expect(done.failure).toMatchObject({ type: "NonRetryableError", nonRetryable: true });
    } finally {
      await env.close();
    }
  });

  test("errors are reported with their type, message and stack, and result() rejects with ExecutionFailedError carrying them", async () => {
    const env = await clientEnv();
    try {
      const worker = env.worker().task("explode", () => {
        throw new ConnectionError("socket hang up");
      });
      await worker.start();
      const handle = await env.client().submit("explode", {});
      const error = await handle.result().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ExecutionFailedError);
      const failed = error as ExecutionFailedError;
      expect(failed.failureType).toBe("ConnectionError");
      expect(failed.failureMessage).toBe("socket hang up");
      expect(failed.failureStack).toContain("client-retries.test.ts");
      expect(failed.execution.id).toBe(handle.id);
      expect(failed.execution.state).toBe(ExecutionState.FAILED);
      expect(toMs(failed.execution.finishedAt)).toBeGreaterThan(0);
    } finally {
      await env.close();
    }
  });
});

// The TypeScript client's retry control beyond Coflux, against a real
// coordinator: Retries' coefficient, jitter and maxElapsed, SnoozeError, a
// task's retryBudget, rerun, and reports re-sent after a lost reply.
import * as grpc from "@grpc/grpc-js";
import { AttemptState, ExecutionState, NonRetryableError, Retries, RetryRule, SnoozeError, retryPolicy } from "@reprise/client";
import { describe, expect, test } from "vitest";
import { CallRecorder, MemoryLogger, clientEnv } from "./client-helpers.js";
import { toMs, until } from "./helpers.js";

describe("Retries beyond Coflux", () => {
  test("Retries sends coefficient, jitter and maxElapsed as backoff_coefficient, jitter and max_elapsed; left out, they are zero", () => {
    expect(retryPolicy(new Retries({ limit: 5, backoff: [1, 30], coefficient: 2, jitter: 0.25, maxElapsed: 3600 }))).toMatchObject({
      limit: 5,
      backoffMin: { seconds: 1n, nanos: 0 },
      backoffMax: { seconds: 30n, nanos: 0 },
      backoffCoefficient: 2,
      jitter: 0.25,
      maxElapsed: { seconds: 3600n, nanos: 0 },
    });
    expect(retryPolicy(new Retries({ limit: null, backoff: [1, 2] }))).toMatchObject({ unlimited: true, backoffCoefficient: 0, jitter: 0, maxElapsed: undefined });
  });

  test("Retries rejects a coefficient below 1 (not 0), a jitter outside [0, 1] and a negative maxElapsed, naming the option", () => {
    expect(() => new Retries({ limit: 1, coefficient: 0.5 })).toThrow(/^Retries\.coefficient: /);
    expect(() => new Retries({ limit: 1, coefficient: Number.NaN })).toThrow(/^Retries\.coefficient: /);
    expect(() => new Retries({ limit: 1, jitter: 1.5 })).toThrow(/^Retries\.jitter: /);
    expect(() => new Retries({ limit: 1, maxElapsed: -1 })).toThrow(/^Retries\.maxElapsed: /);
    expect(() => new SnoozeError(-1)).toThrow(/^SnoozeError: /);
  });

  test("a worker's exponential Retries make the coordinator wait backoff × coefficient^(k−1) between attempts", async () => {
    const env = await clientEnv();
    try {
      const worker = env.worker().task("flaky", { retries: new Retries({ limit: 3, backoff: [0.1, 10], coefficient: 3 }) }, (_args, ctx) => {
        if (ctx.attempt < 4) throw new Error("down");
        return "up";
      });
      await worker.start();
      const handle = await env.client().submit("flaky", null);
      expect(await handle.result()).toBe("up");
      const attempts = (await handle.get()).attempts;
      const waits = attempts.slice(1).map((a, i) => toMs(a.scheduledAt) - toMs(attempts[i]!.finishedAt));
      expect(waits).toEqual([100, 300, 900]);
    } finally {
      await env.close();
    }
  });
});

describe("SnoozeError", () => {
  test("a handler that throws SnoozeError ends its attempt SNOOZED, uses up no retry, and runs again after the delay, even at most once", async () => {
    const env = await clientEnv();
    try {
      const logger = new MemoryLogger();
      const worker = env.worker({ logger }).task("poll", { retries: new Retries({ limit: 0, when: () => false }) }, (_args, ctx) => {
        if (ctx.attempt < 3) throw new SnoozeError(0.2);
        return ctx.attempt;
      });
      await worker.start();
      const handle = await env.client().submit("poll", null);
      expect(await handle.result()).toBe(3);
      const { attempts } = await handle.get();
      expect(attempts.map((a) => a.state)).toEqual([AttemptState.SNOOZED, AttemptState.SNOOZED, AttemptState.SUCCEEDED]);
      expect(attempts.map((a) => a.retryRule)).toEqual([RetryRule.SNOOZE, RetryRule.SNOOZE, RetryRule.UNSPECIFIED]);
      expect(toMs(attempts[1]!.scheduledAt) - toMs(attempts[0]!.finishedAt)).toBe(200);
      expect(logger.entries.filter((e) => e.message === "attempt snoozed")).toHaveLength(2);
      expect(logger.entries.filter((e) => e.level === "warn")).toEqual([]);
    } finally {
      await env.close();
    }
  });
});

describe("delays past the coordinator's longest", () => {
  test("a snooze or a retryAfter of more than 365 days is cut to 365 days, so that the coordinator takes the report", async () => {
    const env = await clientEnv();
    const year = 365 * 86_400;
    try {
      const worker = env
        .worker()
        .task("later", () => {
          throw new SnoozeError(400 * 86_400);
        })
        .task("throttled", { retries: 1 }, () => {
          throw Object.assign(new Error("429"), { retryAfter: 400 * 86_400 });
        });
      await worker.start();
      const client = env.client();
      const [later, throttled] = await Promise.all([client.submit("later", null), client.submit("throttled", null)]);
      await until(async () => (await later.get()).attempts[0]?.state === AttemptState.SNOOZED, 5000, "the snooze to be recorded");
      await until(async () => (await throttled.get()).attempts[0]?.state === AttemptState.FAILED, 5000, "the failure to be recorded");
      const snoozed = await later.get();
      expect(toMs(snoozed.nextAttemptAt) - toMs(snoozed.attempts[0]!.finishedAt)).toBe(year * 1000);
      const failed = await throttled.get();
      expect(failed.attempts[0]!.retryRule).toBe(RetryRule.RETRY_AFTER);
      expect(toMs(failed.nextAttemptAt) - toMs(failed.attempts[0]!.finishedAt)).toBe(year * 1000);
    } finally {
      await env.close();
    }
  });
});

describe("retryBudget", () => {
  test("a task's retryBudget is declared with it, and the coordinator then spreads the task's retries at its rate", async () => {
    const env = await clientEnv();
    try {
      const recorder = new CallRecorder();
      const worker = env
        .worker({ grpcOptions: { interceptors: [recorder.interceptor] }, concurrency: 10 })
        .task("api", { retries: 1, retryBudget: { perSecond: 5, burst: 1 } }, (_args, ctx) => {
          if (ctx.attempt === 1) throw new Error("429");
          return "ok";
        });
      await worker.start();
      const declared = recorder.requests<{ tasks: { name: string; retryBudget?: { retriesPerSecond: number; burst: number } }[] }>("DeclareTasks");
      expect(declared[0]!.tasks[0]!.retryBudget).toMatchObject({ retriesPerSecond: 5, burst: 1 });
      const client = env.client();
      const handles = await Promise.all(Array.from({ length: 4 }, () => client.submit("api", null)));
      for (const handle of handles) expect(await handle.result()).toBe("ok");
      const retries = (await Promise.all(handles.map((h) => h.get()))).map((e) => e.attempts[1]!).sort((a, b) => toMs(a.scheduledAt) - toMs(b.scheduledAt));
      // One token at once, then one every 200 ms.
      for (let i = 1; i < retries.length; i++) expect(toMs(retries[i]!.scheduledAt) - toMs(retries[i - 1]!.scheduledAt)).toBeGreaterThanOrEqual(200);
    } finally {
      await env.close();
    }
  });

  test("a retryBudget without a positive rate or with a negative or fractional burst is refused at task(), naming the option", async () => {
    const env = await clientEnv();
    try {
      const worker = env.worker();
      expect(() => worker.task("a", { retryBudget: { perSecond: 0 } }, () => 1)).toThrow(/^task "a": retryBudget\.perSecond: /);
      expect(() => worker.task("b", { retryBudget: { perSecond: 1, burst: -1 } }, () => 1)).toThrow(/^task "b": retryBudget\.burst: /);
      expect(() => worker.task("c", { retryBudget: { perSecond: 1, burst: 1.5 } }, () => 1)).toThrow(/^task "c": retryBudget\.burst: /);
    } finally {
      await env.close();
    }
  });
});

describe("rerun", () => {
  test("client.rerun and handle.rerun run a failed execution again under the same id, and result() then waits for its new end", async () => {
    const env = await clientEnv();
    try {
      let fixed = false;
      const worker = env.worker().task("charge", (_args) => {
        if (!fixed) throw new NonRetryableError("card declined");
        return "charged";
      });
      await worker.start();
      const client = env.client();
      const handle = await client.submit("charge", null);
      await expect(handle.result()).rejects.toThrow(/card declined/);
      fixed = true;
      const rerun = await client.rerun(handle.id);
      expect(rerun).toMatchObject({ id: handle.id, state: ExecutionState.PENDING });
      expect(await client.execution(handle.id).result()).toBe("charged");
      expect((await handle.get()).attempts.map((a) => a.number)).toEqual([1, 2]);
      await expect(handle.rerun()).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    } finally {
      await env.close();
    }
  });
});

describe("reports re-sent after a lost reply", () => {
  test("a result re-sent after its reply was lost is recorded once, and the worker logs no refusal: the coordinator answers duplicate", async () => {
    const env = await clientEnv();
    try {
      const logger = new MemoryLogger();
      let lost = 0;
      // The coordinator records the first report, but its reply never arrives.
      const loseFirstReply: grpc.Interceptor = (options, nextCall) => {
        const dropping = options.method_definition.path.endsWith("/ReportOutcomes") && lost++ === 0;
        return new grpc.InterceptingCall(nextCall(options), {
          start(metadata, listener, next) {
            next(metadata, {
              // A unary call whose status is not OK fails, whatever message came before it.
              onReceiveStatus(status, nextStatus) {
                nextStatus(dropping ? { code: grpc.status.UNAVAILABLE, details: "the reply was lost", metadata: status.metadata } : status);
              },
            });
          },
        });
      };
      const worker = env.worker({ logger, grpcOptions: { interceptors: [loseFirstReply] } }).task("once", () => "done");
      await worker.start();
      const handle = await env.client().submit("once", null);
      expect(await handle.result()).toBe("done");
      await until(() => logger.entries.some((e) => e.message === "outcome already recorded"), 5000, "the re-sent report's answer");
      expect(lost).toBeGreaterThanOrEqual(2);
      expect(logger.entries.filter((e) => e.message.includes("refused"))).toEqual([]);
      expect((await handle.get()).attempts).toHaveLength(1);
    } finally {
      await env.close();
    }
  });
});

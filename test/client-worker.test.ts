// The worker's runtime rules: the AbortSignal of each attempt, stop() draining,
// the concurrency limit with leasing for free slots, batched heartbeats and
// micro-batched reports, against a real coordinator.
import * as grpc from "@grpc/grpc-js";
import { describe, expect, test } from "vitest";
import { AttemptAbortedError, ExecutionCancelledError, ExecutionFailedError, ExecutionState, ExecutionTimedOutError, NonRetryableError, Retries } from "@reprise/client";
import type { HeartbeatRequest, LeaseAttemptsRequest, ReportOutcomesRequest, TaskContext } from "@reprise/client";
import { CallRecorder, Gate, MemoryLogger, clientEnv } from "./client-helpers.js";
import { until } from "./helpers.js";

class ConnectionError extends Error {}

/** Resolves with the signal's reason when it aborts. */
const aborted = (ctx: TaskContext) =>
  new Promise<unknown>((resolve) => ctx.signal.addEventListener("abort", () => resolve(ctx.signal.reason), { once: true }));

describe("the attempt's AbortSignal", () => {
  test("cancelling a running execution aborts the handler's signal and result() rejects with ExecutionCancelledError", async () => {
    const env = await clientEnv();
    try {
      const recorder = new CallRecorder();
      let reason: unknown;
      let started = false;
      const worker = env.worker({ leaseDuration: 0.3, grpcOptions: { interceptors: [recorder.interceptor] } }).task("long", async (_args, ctx) => {
        started = true;
        reason = await aborted(ctx);
        return "finished anyway";
      });
      await worker.start();
      const handle = await env.client().submit("long", {});
      await until(() => started, 5000, "the handler to start");
      await handle.cancel();
      const error = await handle.result().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ExecutionCancelledError);
      await until(() => reason !== undefined, 5000, "the signal to fire");
      expect(reason).toBeInstanceOf(AttemptAbortedError);
      expect((reason as AttemptAbortedError).reason).toBe("cancelled");
      await until(() => worker.running === 0, 5000, "the handler to return");
      // A cancelled attempt's report would be refused, so none is sent.
      expect(recorder.requests<ReportOutcomesRequest>("ReportOutcomes")).toHaveLength(0);
    } finally {
      await env.close();
    }
  });

  test("a handler that first reads its signal after the execution was cancelled gets one that has already fired", async () => {
    const env = await clientEnv();
    try {
      const gate = new Gate();
      const recorder = new CallRecorder();
      let started = false;
      let seen: { aborted: boolean; reason: unknown } | undefined;
      const worker = env.worker({ leaseDuration: 0.3, grpcOptions: { interceptors: [recorder.interceptor] } }).task("late", async (_args, ctx) => {
        started = true;
        await gate.opened;
        seen = { aborted: ctx.signal.aborted, reason: ctx.signal.reason };
      });
      await worker.start();
      const handle = await env.client().submit("late", {});
      await until(() => started, 5000, "the handler to start");
      await handle.cancel();
      // The worker hears of the cancellation in the answer to its next heartbeat: wait for two more.
      const heartbeats = recorder.requests("Heartbeat").length;
      await until(() => recorder.requests("Heartbeat").length >= heartbeats + 2, 5000, "two more heartbeats");
      gate.open();
      await until(() => seen !== undefined, 5000, "the handler to look");
      expect(seen!.aborted).toBe(true);
      expect((seen!.reason as AttemptAbortedError).reason).toBe("cancelled");
    } finally {
      await env.close();
    }
  });

  test("a task timeout aborts the handler's signal and, with no retries left, result() rejects with ExecutionTimedOutError", async () => {
    const env = await clientEnv();
    try {
      let reason: unknown;
      const worker = env.worker().task("slow", { timeout: 0.2 }, async (_args, ctx) => {
        reason = await aborted(ctx);
        throw ctx.signal.reason;
      });
      await worker.start();
      const handle = await env.client().submit("slow", {});
      const error = await handle.result().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ExecutionTimedOutError);
      expect((error as ExecutionTimedOutError).failureType).toBe("TimedOut");
      expect(reason).toBeInstanceOf(AttemptAbortedError);
      expect(["timedOut", "lost"]).toContain((reason as AttemptAbortedError).reason);
    } finally {
      await env.close();
    }
  });

  test("a lost lease aborts the handler's signal and the abandoned attempt is retried", async () => {
    const env = await clientEnv();
    try {
      // Fault injection: while `blocked`, a heartbeat's request is never sent,
      // so the call runs into its deadline and the lease is not extended.
      let blocked = true;
      const dropHeartbeats: grpc.Interceptor = (options, nextCall) =>
        blocked && options.method_definition.path.endsWith("/Heartbeat")
          ? new grpc.InterceptingCall(nextCall(options), { sendMessage() {}, halfClose() {} })
          : new grpc.InterceptingCall(nextCall(options));
      const reasons: unknown[] = [];
      const worker = env.worker({ leaseDuration: 0.3, grpcOptions: { interceptors: [dropHeartbeats] } });
      worker.task("fragile", { retries: new Retries({ limit: 1, backoff: [0, 0] }) }, async (_args, ctx) => {
        if (ctx.attempt > 1) return `attempt ${ctx.attempt}`;
        reasons.push(await aborted(ctx));
        return "too late";
      });
      await worker.start();
      const handle = await env.client().submit("fragile", {});
      await until(async () => (await handle.get()).attempts[0]?.state === 4 /* ABANDONED */, 5000, "the lease to expire");
      blocked = false;
      await expect(handle.result()).resolves.toBe("attempt 2");
      await until(() => reasons.length === 1, 5000, "the signal to fire");
      expect((reasons[0] as AttemptAbortedError).reason).toBe("lost");
    } finally {
      await env.close();
    }
  });
});

describe("stop()", () => {
  test("stop() stops leasing, lets in-flight attempts finish and reports their results", async () => {
    const env = await clientEnv();
    try {
      const gate = new Gate();
      let started = 0;
      const worker = env.worker().task("drain", async () => {
        started++;
        await gate.opened;
        return "drained";
      });
      await worker.start();
      const client = env.client();
      const first = await client.submit("drain", {});
      await until(() => started === 1, 5000, "the attempt to start");
      const stopping = worker.stop();
      const second = await client.submit("drain", {});
      gate.open();
      await stopping;
      expect(await first.result()).toBe("drained");
      // Submitted after stop() began: never leased by the stopped worker.
      expect((await second.get()).state).toBe(ExecutionState.PENDING);
      expect(started).toBe(1);
      await second.cancel();
    } finally {
      await env.close();
    }
  });

  test("stop() past its grace aborts the signals of attempts still running and reports each as a retryable WorkerShutdown failure that `when` never sees", async () => {
    const env = await clientEnv();
    try {
      let started = false;
      let reason: unknown;
      const asked: unknown[] = [];
      // A `when` that would refuse the AttemptAbortedError the handler throws.
      const when = (error: unknown) => (asked.push(error), error instanceof ConnectionError);
      const worker = env.worker().task("stubborn", { retries: new Retries({ limit: 1, backoff: [0, 0], when }) }, async (_args, ctx) => {
        started = true;
        reason = await aborted(ctx);
        throw ctx.signal.reason;
      });
      await worker.start();
      const handle = await env.client().submit("stubborn", {});
      await until(() => started, 5000, "the attempt to start");
      await worker.stop({ grace: 0.05 });
      expect((reason as AttemptAbortedError).reason).toBe("stopping");
      // The failure was reported before stop() resolved, so the retry is already pending.
      const execution = await handle.get();
      expect(execution.state).toBe(ExecutionState.PENDING);
      expect(execution.attempts[0]!.failure).toMatchObject({ type: "WorkerShutdown", nonRetryable: false });
      expect(execution.attempts[0]!.failure?.message).toContain("the worker is stopping");
      expect(asked).toEqual([]);
      await handle.cancel();
    } finally {
      await env.close();
    }
  });
});

describe("concurrency and batching", () => {
  test("a worker never runs more than concurrency attempts and leases only as many as it has free slots", async () => {
    const env = await clientEnv();
    try {
      const recorder = new CallRecorder();
      const releases: (() => void)[] = [];
      let active = 0;
      let maxActive = 0;
      let finished = 0;
      const worker = env.worker({ concurrency: 3, grpcOptions: { interceptors: [recorder.interceptor] } }).task("busy", async (args: number) => {
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise<void>((resolve) => releases.push(resolve));
        active--;
        finished++;
        return args * 2;
      });
      const client = env.client();
      const handles = await Promise.all(Array.from({ length: 7 }, (_, i) => client.submit<number>("busy", i)));
      await worker.start();
      await until(() => active === 3, 5000, "three attempts to run");
      const running = await env.coordinator.executions.listExecutions({ task: "busy", state: ExecutionState.RUNNING });
      expect(running.executions).toHaveLength(3);
      const firstLease = recorder.requests<LeaseAttemptsRequest>("LeaseAttempts")[0]!;
      expect(firstLease.maxAttempts).toBe(3);
      // A long-poll: it waits pollWait (2 s in these tests) for work.
      expect(Number(firstLease.wait?.seconds)).toBe(2);
      releases.shift()!();
      await until(() => active === 3 && releases.length === 3, 5000, "a freed slot to be filled");
      while (finished < 7) {
        await until(() => releases.length > 0 || finished === 7, 5000, "the next attempt");
        releases.shift()?.();
      }
      expect(await Promise.all(handles.map((h) => h.result()))).toEqual([0, 2, 4, 6, 8, 10, 12]);
      expect(maxActive).toBe(3);
      const asked = recorder.requests<LeaseAttemptsRequest>("LeaseAttempts").map((r) => r.maxAttempts);
      expect(Math.max(...asked)).toBe(3);
      expect(asked).toContain(1);
    } finally {
      await env.close();
    }
  });

  test("heartbeats keep attempts alive past their lease, as one batched RPC for all in-flight attempts", async () => {
    const env = await clientEnv();
    try {
      const recorder = new CallRecorder();
      const heartbeats = () => recorder.requests<HeartbeatRequest>("Heartbeat");
      let running = 0;
      const worker = env.worker({ leaseDuration: 0.3, grpcOptions: { interceptors: [recorder.interceptor] } }).task("long", async () => {
        running++;
        // Outlive the 300 ms lease several times over.
        await until(() => heartbeats().filter((h) => h.leaseTokens.length === 3).length >= 5, 10_000, "heartbeats");
        return "alive";
      });
      const client = env.client();
      const handles = await Promise.all([1, 2, 3].map(() => client.submit("long", {})));
      await worker.start();
      expect(await Promise.all(handles.map((h) => h.result()))).toEqual(["alive", "alive", "alive"]);
      for (const h of handles) expect((await h.get()).attempts).toHaveLength(1);
      // Never one RPC per attempt: once all three ran, each heartbeat carried all three.
      const firstFull = heartbeats().findIndex((h) => h.leaseTokens.length === 3);
      expect(firstFull).toBeGreaterThanOrEqual(0);
      expect(heartbeats().slice(firstFull, firstFull + 5).every((h) => h.leaseTokens.length === 3)).toBe(true);
      expect(running).toBe(3);
    } finally {
      await env.close();
    }
  });

  test("heartbeats go in calls of at most the coordinator's 1000 tokens, so a worker holding more leases keeps them all alive", async () => {
    const env = await clientEnv();
    try {
      const recorder = new CallRecorder();
      // Fault injection: ReportOutcomes calls wait at the gate, so each finished
      // attempt keeps its lease, and its place in the heartbeats, until then.
      const reports = new Gate();
      const holdReports: grpc.Interceptor = (options, nextCall) =>
        new grpc.InterceptingCall(
          nextCall(options),
          options.method_definition.path.endsWith("/ReportOutcomes") ? { start: (metadata, listener, next) => void reports.opened.then(() => next(metadata, listener)) } : {},
        );
      const count = 1100;
      let ran = 0;
      // Leases of 2 s leave the coordinator time to take 1100 reports at once on a busy machine.
      const worker = env.worker({ leaseDuration: 2, abortGrace: 30, concurrency: 500, grpcOptions: { interceptors: [recorder.interceptor, holdReports] } });
      worker.task("many", (n: number) => {
        ran++;
        return n;
      });
      const client = env.client();
      await Promise.all(Array.from({ length: count }, (_, n) => client.submit("many", n)));
      await worker.start();
      await until(() => ran === count, 10_000, "every attempt to run");
      // Longer than a lease: without heartbeats, every lease would run out meanwhile.
      const heldSince = Date.now();
      await until(() => Date.now() > heldSince + 3000, 5000, "the reports to be held past a lease");
      reports.open();
      // It returns once the coordinator has answered every report.
      await worker.stop();
      // At most once: an attempt whose lease ran out would have ended ABANDONED, and its result been refused.
      let succeeded = 0;
      for (let pageToken = ""; ; ) {
        const page = await env.coordinator.executions.listExecutions({ task: "many", state: ExecutionState.SUCCEEDED, pageSize: 1000, pageToken });
        succeeded += page.executions.length;
        pageToken = page.nextPageToken;
        if (pageToken === "") break;
      }
      expect(succeeded).toBe(count);
      expect(Math.max(...recorder.requests<HeartbeatRequest>("Heartbeat").map((h) => h.leaseTokens.length))).toBe(1000);
    } finally {
      await env.close();
    }
  });

  test("outcomes finished in the same turn are reported in one ReportOutcomes call", async () => {
    const env = await clientEnv();
    try {
      const recorder = new CallRecorder();
      const gate = new Gate();
      let started = 0;
      const worker = env.worker({ concurrency: 5, grpcOptions: { interceptors: [recorder.interceptor] } }).task("batch", async (n: number) => {
        started++;
        await gate.opened;
        return n;
      });
      const client = env.client();
      const handles = await Promise.all([0, 1, 2, 3, 4].map((n) => client.submit<number>("batch", n)));
      await worker.start();
      await until(() => started === 5, 5000, "five attempts to run");
      gate.open();
      expect(await Promise.all(handles.map((h) => h.result()))).toEqual([0, 1, 2, 3, 4]);
      const reports = recorder.requests<ReportOutcomesRequest>("ReportOutcomes");
      expect(reports).toHaveLength(1);
      expect(reports[0]!.outcomes).toHaveLength(5);
    } finally {
      await env.close();
    }
  });

  test("a worker reports the outcomes of the attempts it just ran before it leases again", async () => {
    const env = await clientEnv();
    try {
      const recorder = new CallRecorder();
      const worker = env.worker({ concurrency: 5, grpcOptions: { interceptors: [recorder.interceptor] } }).task("quick", (n: number) => {
        if (n === 1) throw new NonRetryableError("one fails at once");
        return n;
      });
      const client = env.client();
      const handles = await Promise.all([0, 1, 2].map((n) => client.submit<number>("quick", n)));
      await worker.start();
      expect(await handles[0]!.result()).toBe(0);
      expect(await handles[1]!.result().catch((e: unknown) => e)).toBeInstanceOf(ExecutionFailedError);
      expect(await handles[2]!.result()).toBe(2);
      // All three came in the first lease and settled at once: their outcomes,
      // the failure included, went out in one call before the next lease.
      const order = recorder.calls.filter((c) => c.method === "LeaseAttempts" || c.method === "ReportOutcomes");
      expect(order.slice(0, 3).map((c) => c.method)).toEqual(["LeaseAttempts", "ReportOutcomes", "LeaseAttempts"]);
      expect((order[1]!.request as ReportOutcomesRequest).outcomes).toHaveLength(3);
    } finally {
      await env.close();
    }
  });

  test("arguments the codec cannot decode fail the attempt without using up retries", async () => {
    const env = await clientEnv();
    try {
      const logger = new MemoryLogger();
      const worker = env.worker({ logger }).task("strict", { retries: 3 }, (args: unknown) => args);
      await worker.start();
      const done = await env.coordinator.executions.submit({ task: "strict", arguments: { data: new TextEncoder().encode("{not json"), contentType: "application/json" } });
      const handle = env.client().execution(done.execution!.id);
      const error = await handle.result().catch((e: unknown) => e);
      expect(String(error)).toContain("cannot decode the arguments");
      expect((await handle.get()).attempts).toHaveLength(1);
    } finally {
      await env.close();
    }
  });

  test("a result over the coordinator's payload limit fails its execution for good, as ResultTooLarge, without sinking the rest of the batch", async () => {
    const env = await clientEnv({ limits: { maxPayloadBytes: 1000 } });
    try {
      const logger = new MemoryLogger();
      const recorder = new CallRecorder();
      const gate = new Gate();
      let started = 0;
      // Retries would not help: the same handler returns as large a result again.
      const worker = env.worker({ logger, grpcOptions: { interceptors: [recorder.interceptor] } }).task("sized", { retries: 2 }, async (size: number) => {
        started++;
        await gate.opened;
        return "x".repeat(size);
      });
      const client = env.client();
      const small = await client.submit<string>("sized", 10);
      const big = await client.submit<string>("sized", 5000);
      await worker.start();
      await until(() => started === 2, 5000, "both attempts to run");
      gate.open();
      expect(await small.result()).toBe("x".repeat(10));
      const error = await big.result().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ExecutionFailedError);
      expect((error as ExecutionFailedError).failureType).toBe("ResultTooLarge");
      expect((error as ExecutionFailedError).failureMessage).toContain("RESOURCE_EXHAUSTED");
      expect(started).toBe(2);
      expect((await big.get()).attempts.map((a) => a.failure?.nonRetryable)).toEqual([true]);
      // One batch of two, rejected whole, then each outcome alone.
      expect(recorder.requests<ReportOutcomesRequest>("ReportOutcomes").map((r) => r.outcomes.length).slice(0, 3)).toEqual([2, 1, 1]);
    } finally {
      await env.close();
    }
  });
});

// The caller's side: submit, result() through retries, watch(), the typed
// errors of each bad end, idempotency, per-submit retries and codecs.
import { describe, expect, test } from "vitest";
import {
  ExecutionAbandonedError,
  ExecutionCancelledError,
  ExecutionState,
  Retries,
} from "@reprise/client";
import type { Codec } from "@reprise/client";
import { Authorizer } from "../server/api/auth.js";
import { Gate, clientEnv } from "./client-helpers.js";
import { json, millis, until } from "./helpers.js";

describe("waiting on an execution", () => {
  test("result() waits through every retry and resolves with the decoded result", async () => {
    const env = await clientEnv();
    try {
      const worker = env.worker().task("flaky", { retries: new Retries({ limit: 3, backoff: [0.05, 0.1] }) }, (args: { to: string }, ctx) => {
        if (ctx.attempt < 3) throw new Error(`attempt ${ctx.attempt} failed`);
        return { sent: args.to, attempt: ctx.attempt };
      });
      await worker.start();
      const handle = await env.client().submit<{ sent: string; attempt: number }>("flaky", { to: "ops" });
      expect(await handle.result()).toEqual({ sent: "ops", attempt: 3 });
    } finally {
      await env.close();
    }
  });

  test("watch() yields the current state, then each change through retries, and ends after the terminal state", async () => {
    const env = await clientEnv();
    try {
      const worker = env.worker().task("once_more", { retries: new Retries({ limit: 1, backoff: [0.05, 0.05] }) }, (_args, ctx) => {
        if (ctx.attempt === 1) throw new Error("first try fails");
        return "done";
      });
      const handle = await env.client().submit("once_more", null);
      const states: ExecutionState[] = [];
      const watching = (async () => {
        for await (const snapshot of handle.watch()) {
          states.push(snapshot.state);
          if (states.length === 1) await worker.start();
        }
      })();
      await watching;
      const S = ExecutionState;
      expect(states).toEqual([S.PENDING, S.RUNNING, S.PENDING, S.RUNNING, S.SUCCEEDED]);
    } finally {
      await env.close();
    }
  });

  test("a watch that attaches after the end gets the final state at once", async () => {
    const env = await clientEnv();
    try {
      await env.worker().task("quick", () => 42).start();
      const handle = await env.client().submit("quick", null);
      expect(await handle.result()).toBe(42);
      const snapshots = [];
      for await (const snapshot of handle.watch()) snapshots.push(snapshot);
      expect(snapshots.map((s) => s.state)).toEqual([ExecutionState.SUCCEEDED]);
    } finally {
      await env.close();
    }
  });

  test("leaving watch() early cancels its stream", async () => {
    const env = await clientEnv();
    try {
      const handle = await env.client().submit("nobody_runs_this", null);
      for await (const snapshot of handle.watch()) {
        expect(snapshot.state).toBe(ExecutionState.PENDING);
        break;
      }
      await until(() => env.coordinator.server.coordinator.stats.watches === 0, 5000, "the watch to end on the coordinator");
      await handle.cancel();
    } finally {
      await env.close();
    }
  });

  test("result() stops waiting when its signal aborts", async () => {
    const env = await clientEnv();
    try {
      const handle = await env.client().submit("nobody_runs_this", null);
      const controller = new AbortController();
      const waiting = handle.result({ signal: controller.signal });
      controller.abort(new Error("caller gave up"));
      await expect(waiting).rejects.toThrow("caller gave up");
      await until(() => env.coordinator.server.coordinator.stats.watches === 0, 5000, "the watch to end on the coordinator");
      await handle.cancel();
    } finally {
      await env.close();
    }
  });
});

test("closing the client ends its waits with an error instead of retrying forever", async () => {
  const env = await clientEnv();
  try {
    const client = env.client();
    const handle = await client.submit("nobody_runs_this", null);
    const waiting = handle.result().catch((e: unknown) => e);
    client.close();
    expect(String(await waiting)).toContain("the Client was closed");
    await env.coordinator.executions.cancelExecution({ executionId: handle.id });
  } finally {
    await env.close();
  }
});

test("more waiters than the coordinator's per-connection watch quota all get their results", async () => {
  const env = await clientEnv({ limits: { maxWatchesPerConnection: 2 } });
  try {
    const gate = new Gate();
    await env.worker().task("crowd", async (n: number) => {
      await gate.opened;
      return n;
    }).start();
    const client = env.client();
    const handles = await Promise.all([0, 1, 2, 3, 4].map((n) => client.submit<number>("crowd", n)));
    const results = Promise.all(handles.map((h) => h.result()));
    await until(() => env.coordinator.server.coordinator.stats.watches === 2, 5000, "the quota to fill");
    gate.open();
    expect(await results).toEqual([0, 1, 2, 3, 4]);
  } finally {
    await env.close();
  }
});

test("with coordinator auth on, a worker token and a caller token run an execution end to end", async () => {
  const authorizer = new Authorizer([
    { token: "worker-secret", role: "worker" },
    { token: "caller-secret", role: "caller" },
  ]);
  const env = await clientEnv({ authorizer });
  try {
    await env.worker({ token: "worker-secret" }).task("guarded", (n: number) => n + 1).start();
    const handle = await env.client({ token: "caller-secret" }).submit<number>("guarded", 1);
    expect(await handle.result()).toBe(2);
    await expect(env.client().submit("guarded", 1)).rejects.toThrow(/UNAUTHENTICATED/);
  } finally {
    await env.close();
  }
});

describe("typed errors of result()", () => {
  test("an abandoned at-most-once execution rejects result() with ExecutionAbandonedError", async () => {
    const env = await clientEnv();
    try {
      const handle = await env.client().submit("vanishing", { n: 1 });
      // A worker that leases and dies: no heartbeat, no outcome.
      const { attempts } = await env.coordinator.workers.leaseAttempts({ workerId: "dead", tasks: ["vanishing"], leaseDuration: millis(100) });
      expect(attempts).toHaveLength(1);
      const error = await handle.result().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ExecutionAbandonedError);
      expect((error as ExecutionAbandonedError).failureType).toBe("Abandoned");
      expect((error as ExecutionAbandonedError).execution.attempts).toHaveLength(1);
    } finally {
      await env.close();
    }
  });

  test("a cancelled pending execution rejects result() with ExecutionCancelledError and cancel() returns it CANCELLED", async () => {
    const env = await clientEnv();
    try {
      const handle = await env.client().submit("later", null, { delay: 3600 });
      const waiting = handle.result().catch((e: unknown) => e);
      expect((await handle.cancel()).state).toBe(ExecutionState.CANCELLED);
      const error = await waiting;
      expect(error).toBeInstanceOf(ExecutionCancelledError);
      expect((error as ExecutionCancelledError).executionId).toBe(handle.id);
    } finally {
      await env.close();
    }
  });
});

describe("submitting", () => {
  test("a repeated idempotencyKey returns the same execution and creates nothing", async () => {
    const env = await clientEnv();
    try {
      const client = env.client();
      const first = await client.submit("send_notification", { to: "ops" }, { idempotencyKey: "n-1" });
      const again = await client.submit("send_notification", { to: "someone else" }, { idempotencyKey: "n-1" });
      expect(again.id).toBe(first.id);
      const { executions } = await env.coordinator.executions.listExecutions({ task: "send_notification" });
      expect(executions).toHaveLength(1);
      await first.cancel();
    } finally {
      await env.close();
    }
  });

  test("a submit's own retries override the task's declared policy, even 0, false or new Retries({ limit: 0 })", async () => {
    const env = await clientEnv();
    try {
      await env.worker().task("declared_twice", { retries: 2 }, () => {
        throw new Error("always");
      }).start();
      const client = env.client();
      const more = await client.submit("declared_twice", null, { retries: new Retries({ limit: 3, backoff: [0, 0] }) });
      const none = await client.submit("declared_twice", null, { retries: 0 });
      const off = await client.submit("declared_twice", null, { retries: false });
      const zero = await client.submit("declared_twice", null, { retries: new Retries({ limit: 0 }) });
      await Promise.all([more, none, off, zero].map((handle) => handle.result().catch(() => undefined)));
      expect((await more.get()).attempts).toHaveLength(4);
      for (const handle of [none, off, zero]) expect((await handle.get()).attempts).toHaveLength(1);
    } finally {
      await env.close();
    }
  });

  test("payloads are JSON by default, and a codec option replaces JSON on both sides", async () => {
    const env = await clientEnv();
    try {
      // A codec JSON cannot stand in for: it keeps bigints.
      const bigintCodec: Codec = {
        contentType: "application/x-bigint-json",
        encode: (value) => new TextEncoder().encode(JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? `${v}n` : v))),
        decode: (data) =>
          JSON.parse(new TextDecoder().decode(data), (_k, v: unknown) => (typeof v === "string" && /^\d+n$/.test(v) ? BigInt(v.slice(0, -1)) : v)) as unknown,
      };
      await env.worker({ codec: bigintCodec }).task("double", (n: bigint) => n * 2n).start();
      const handle = await env.client({ codec: bigintCodec }).submit<bigint>("double", 2n ** 70n);
      expect(await handle.result()).toBe(2n ** 71n);
      expect((await handle.get()).arguments?.contentType).toBe("application/x-bigint-json");

      await env.worker().task("echo", (args: unknown) => args).start();
      const plain = await env.client().submit("echo", { a: [1, "two"] });
      expect(await plain.result()).toEqual({ a: [1, "two"] });
      const execution = await plain.get();
      expect(execution.result).toMatchObject({ contentType: "application/json" });
      expect(new TextDecoder().decode(execution.arguments!.data)).toBe(new TextDecoder().decode(json({ a: [1, "two"] }).data));
    } finally {
      await env.close();
    }
  });
});

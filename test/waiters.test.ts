// WatchExecution: current state first, every change, end after the terminal
// state, late waiters, and any number of waiters per execution.
import { status } from "@grpc/grpc-js";
import { ExecutionState } from "@reprise/wire";
import type { Execution } from "@reprise/wire";
import { afterEach, describe, expect, test } from "vitest";
import { FakeClock, startTestCoordinator, until } from "./helpers.js";
import type { TestCoordinator } from "./helpers.js";
import { fail, leaseNow, submit, succeed } from "./wire-helpers.js";

let c: TestCoordinator;

afterEach(async () => {
  await c?.close();
});

/** Starts a watch and resolves once its first snapshot (the current state) has arrived. */
async function watch(executionId: string) {
  const stream = c.executions.watchExecution({ executionId });
  const seen: Execution[] = [];
  let firstArrived!: () => void;
  const first = new Promise<void>((resolve) => (firstArrived = resolve));
  const ended = (async () => {
    for await (const message of stream) {
      seen.push(message.execution!);
      firstArrived();
    }
  })();
  ended.catch(() => firstArrived());
  await first;
  return { seen, ended, states: () => seen.map((e) => e.state) };
}

describe("waiters", () => {
  test("a watch gets the current state first, then every change through all retries, and ends after the terminal state", async () => {
    c = await startTestCoordinator({ clock: new FakeClock() });
    const execution = await submit(c, "t", { retryPolicy: { limit: 2 } });
    const w = await watch(execution.id);
    expect(w.states()).toEqual([ExecutionState.PENDING]);
    for (let attempt = 1; attempt <= 2; attempt++) {
      const [leased] = await leaseNow(c, ["t"]);
      await fail(c, leased!);
    }
    const [last] = await leaseNow(c, ["t"]);
    await succeed(c, last!, { done: true });
    await w.ended;
    expect(w.states()).toEqual([
      ExecutionState.PENDING,
      ExecutionState.RUNNING,
      ExecutionState.PENDING,
      ExecutionState.RUNNING,
      ExecutionState.PENDING,
      ExecutionState.RUNNING,
      ExecutionState.SUCCEEDED,
    ]);
    const final = w.seen.at(-1)!;
    expect(final.attempts).toHaveLength(3);
    expect(JSON.parse(new TextDecoder().decode(final.result!.data))).toEqual({ done: true });
  });

  test("any number of watches follow one execution, and each ends after the terminal state", async () => {
    c = await startTestCoordinator();
    const execution = await submit(c, "t");
    const watches = await Promise.all(Array.from({ length: 5 }, () => watch(execution.id)));
    expect(c.server.coordinator.stats.watches).toBe(5);
    const [leased] = await leaseNow(c, ["t"]);
    await fail(c, leased!);
    await Promise.all(watches.map((w) => w.ended));
    for (const w of watches) expect(w.states()).toEqual([ExecutionState.PENDING, ExecutionState.RUNNING, ExecutionState.FAILED]);
    expect(c.server.coordinator.stats.watches).toBe(0);
  });

  test("a watch that attaches after the end gets the final state at once and ends", async () => {
    c = await startTestCoordinator();
    const execution = await submit(c, "t");
    const [leased] = await leaseNow(c, ["t"]);
    await succeed(c, leased!);
    const w = await watch(execution.id);
    await w.ended;
    expect(w.states()).toEqual([ExecutionState.SUCCEEDED]);
  });

  test("a watch the caller cancels is released by the coordinator", async () => {
    c = await startTestCoordinator();
    const execution = await submit(c, "t");
    const stream = c.executions.watchExecution({ executionId: execution.id });
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();
    expect(c.server.coordinator.stats.watches).toBe(1);
    stream.cancel();
    await until(() => c.server.coordinator.stats.watches === 0, 5000, "the watch to be released");
  });

  test("watching an unknown execution is NOT_FOUND and an empty id is INVALID_ARGUMENT", async () => {
    c = await startTestCoordinator();
    const codeOf = async (executionId: string) => {
      try {
        for await (const _ of c.executions.watchExecution({ executionId })) return "message";
      } catch (error) {
        return (error as { code: number }).code;
      }
      return "ended";
    };
    expect(await codeOf("no-such-execution")).toBe(status.NOT_FOUND);
    expect(await codeOf("")).toBe(status.INVALID_ARGUMENT);
  });
});

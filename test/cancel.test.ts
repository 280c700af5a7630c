// CancelExecution in every state.
import { status } from "@grpc/grpc-js";
import { AttemptState, ExecutionState } from "@reprise/wire";
import { afterEach, describe, expect, test } from "vitest";
import { FakeClock, seconds, startTestCoordinator } from "./helpers.js";
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

const cancel = async (executionId: string) => (await c.executions.cancelExecution({ executionId })).execution!;

describe("cancellation", () => {
  test("cancelling a PENDING execution ends it CANCELLED at once and it never runs", async () => {
    await start();
    const execution = await submit(c, "t", { retryPolicy: { limit: 3 } });
    const cancelled = await cancel(execution.id);
    expect(cancelled.state).toBe(ExecutionState.CANCELLED);
    expect(cancelled.finishedAt).toBeDefined();
    expect(cancelled.nextAttemptAt).toBeUndefined();
    await leaseNow(c, ["t"], 0);
  });

  test("cancelling an execution that waits for a retry ends it CANCELLED and it is never retried", async () => {
    await start();
    const execution = await submit(c, "t", { retryPolicy: { limit: 3, backoffMin: seconds(10) } });
    const [leased] = await leaseNow(c, ["t"]);
    await fail(c, leased!);
    expect((await cancel(execution.id)).state).toBe(ExecutionState.CANCELLED);
    await clock.advance(3600_000);
    await leaseNow(c, ["t"], 0);
    const done = await get(c, execution.id);
    expect(done.state).toBe(ExecutionState.CANCELLED);
    expect(done.attempts).toHaveLength(1);
  });

  test("cancelling a RUNNING execution ends it and its attempt CANCELLED at once; heartbeats say cancel_requested and reports are refused", async () => {
    await start();
    const execution = await submit(c, "t", { retryPolicy: { limit: 3 } });
    const [leased] = await leaseNow(c, ["t"]);
    const cancelled = await cancel(execution.id);
    expect(cancelled.state).toBe(ExecutionState.CANCELLED);
    expect(cancelled.attempts.map((a) => a.state)).toEqual([AttemptState.CANCELLED]);
    const hb = await c.workers.heartbeat({ leaseTokens: [leased!.leaseToken] });
    expect(hb.cancelRequested).toEqual([leased!.leaseToken]);
    expect(hb.lost).toEqual([]);
    const refused = await fail(c, leased!);
    expect(refused).toMatchObject({ accepted: false, reason: "the execution was cancelled" });
    expect((await succeed(c, leased!)).accepted).toBe(false);
    await clock.advance(3600_000);
    await leaseNow(c, ["t"], 0);
    expect((await get(c, execution.id)).state).toBe(ExecutionState.CANCELLED);
  });

  test("cancelling an ended execution returns it unchanged", async () => {
    await start();
    const execution = await submit(c, "t");
    const [leased] = await leaseNow(c, ["t"]);
    await succeed(c, leased!);
    const before = await get(c, execution.id);
    await clock.advance(1000);
    expect(await cancel(execution.id)).toEqual(before);
  });

  test("cancelling an unknown execution is NOT_FOUND and an empty id is INVALID_ARGUMENT", async () => {
    await start();
    await expect(cancel("missing")).rejects.toMatchObject({ code: status.NOT_FOUND });
    await expect(cancel("")).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
  });
});

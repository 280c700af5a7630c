// `reprise serve --retain DURATION`: executions that finished longer ago are
// deleted with their attempts; what is kept stays whole; the idempotency keys
// of deleted executions are free again.
import { status } from "@grpc/grpc-js";
import { afterEach, describe, expect, test } from "vitest";
import { loadServeConfig } from "../server/operator/config.js";
import { retentionIntervalMs } from "../server/coordinator/retention.js";
import { FakeClock, seconds, startTestCoordinator } from "./helpers.js";
import type { TestCoordinator } from "./helpers.js";
import { fail, get, leaseNow, submit, succeed } from "./wire-helpers.js";

let c: TestCoordinator | undefined;

afterEach(async () => {
  await c?.close();
  c = undefined;
});

const HOUR = 3_600_000;

describe("retention", () => {
  test("deletes executions that finished longer ago than --retain with their attempts; what is kept stays whole", async () => {
    const clock = new FakeClock();
    c = await startTestCoordinator({ clock, retainMs: HOUR });
    const old = await submit(c, "t", { idempotencyKey: "order-1" });
    await succeed(c, (await leaseNow(c, ["t"]))[0]!);
    await clock.advance(30 * 60_000);
    const young = await submit(c, "t", { idempotencyKey: "order-2", retryPolicy: { limit: 1 } });
    await fail(c, (await leaseNow(c, ["t"]))[0]!);
    await fail(c, (await leaseNow(c, ["t"]))[0]!);
    const waiting = await submit(c, "t", { delay: seconds(86_400) });
    const youngBefore = await get(c, young.id);
    expect(youngBefore.attempts).toHaveLength(2);

    await clock.advance(31 * 60_000);
    await c.server.retention!.pass();
    await c.server.retention!.pass();

    await expect(c.executions.getExecution({ executionId: old.id })).rejects.toMatchObject({ code: status.NOT_FOUND });
    expect(await get(c, young.id)).toEqual(youngBefore);
    expect((await get(c, waiting.id)).attempts).toEqual([]);
    const { executions } = await c.executions.listExecutions({ task: "t" });
    expect(executions.map((e) => e.id).sort()).toEqual([young.id, waiting.id].sort());
  });

  test("the idempotency key of a deleted execution is free again: a repeat Submit creates a new execution", async () => {
    const clock = new FakeClock();
    c = await startTestCoordinator({ clock, retainMs: HOUR });
    const first = await submit(c, "t", { idempotencyKey: "order-1" });
    await succeed(c, (await leaseNow(c, ["t"]))[0]!);
    await clock.advance(2 * HOUR);
    await c.server.retention!.pass();
    await c.server.retention!.pass();
    const again = await submit(c, "t", { idempotencyKey: "order-1" });
    expect(again.id).not.toBe(first.id);
    expect(again.attempts).toEqual([]);
  });

  test("retention is off by default, and never deletes a PENDING or RUNNING execution, however old", async () => {
    const clock = new FakeClock();
    c = await startTestCoordinator({ clock });
    expect(c.server.retention).toBeNull();
    await c.close();
    c = await startTestCoordinator({ clock, retainMs: HOUR });
    const pending = await submit(c, "never-leased");
    const running = await submit(c, "t");
    await leaseNow(c, ["t"], 1, HOUR);
    clock.jump(5 * 86_400_000);
    expect(await c.server.retention!.pass()).toBe(0);
    expect((await get(c, pending.id)).id).toBe(pending.id);
    expect((await get(c, running.id)).attempts).toHaveLength(1);
  });

  test("--retain takes a duration of at least a minute, and passes run a tenth of it apart, from 1 s to 1 min", () => {
    expect(loadServeConfig({ retain: "30d" }, {}).retainMs).toBe(30 * 86_400_000);
    expect(loadServeConfig({}, { REPRISE_RETAIN: "72h" }).retainMs).toBe(72 * HOUR);
    expect(loadServeConfig({}, {}).retainMs).toBeNull();
    expect(() => loadServeConfig({ retain: "30s" }, {})).toThrow(/^--retain: must be at least 1m/);
    expect(() => loadServeConfig({ retain: "a week" }, {})).toThrow(/^--retain: must be a duration/);
    expect([retentionIntervalMs(60_000), retentionIntervalMs(5 * 60_000), retentionIntervalMs(30 * 86_400_000)]).toEqual([6000, 30_000, 60_000]);
  });
});

// Crash safety: SIGKILL the real coordinator process in the middle of work and
// restart it on the same database file.
import { join } from "node:path";
import { ExecutionState } from "@reprise/wire";
import type { LeasedAttempt } from "@reprise/wire";
import { describe, expect, test } from "vitest";
import { json, millis, seconds, tempDir, toMs, until } from "./helpers.js";
import { spawnCoordinator } from "./process-helpers.js";
import type { ChildCoordinator } from "./process-helpers.js";

const lease = async (c: ChildCoordinator, task: string, leaseMs: number, waitMs = 0) =>
  (await c.workers.leaseAttempts({ workerId: "w", tasks: [task], leaseDuration: millis(leaseMs), wait: millis(waitMs) })).attempts;

const report = async (c: ChildCoordinator, attempt: LeasedAttempt, ok: boolean) =>
  (
    await c.workers.reportOutcomes({
      outcomes: [
        {
          leaseToken: attempt.leaseToken,
          outcome: ok ? { case: "result", value: json("done") } : { case: "failure", value: { type: "Flaky", message: "try again" } },
        },
      ],
    })
  ).receipts[0]!;

describe("crash safety", () => {
  test("after kill -9 and a restart on the same database, pending and retry-waiting executions still run, leased at-most-once executions end ABANDONED and never start again, and old leases are fenced correctly", async () => {
    const db = join(tempDir(), "reprise.db");
    let c = await spawnCoordinator(db);
    const submit = async (task: string, init: Record<string, unknown> = {}) =>
      (await c.executions.submit({ task, arguments: json(task), ...init })).execution!.id;

    const pending = await submit("pending");
    const retryWaiting = await submit("retry_waiting", { retryPolicy: { limit: 2, backoffMin: seconds(1) } });
    const [firstTry] = await lease(c, "retry_waiting", 30_000);
    expect((await report(c, firstTry!, false)).willRetry).toBe(true);
    const atMostOnce = await submit("at_most_once");
    const [heldByDeadWorker] = await lease(c, "at_most_once", 1000);
    const retryable = await submit("retryable", { retryPolicy: { limit: 1 } });
    await lease(c, "retryable", 1000);
    const liveLease = await submit("live");
    const [heldByLiveWorker] = await lease(c, "live", 60_000);
    const leaseExpiresAt = toMs(heldByLiveWorker!.leaseExpiresAt);

    // Submits racing the kill: every acknowledged one must survive.
    const acknowledged: string[] = [];
    const racing = (async () => {
      for (let i = 0; i < 2000; i++) {
        try {
          acknowledged.push((await c.executions.submit({ task: "racing", idempotencyKey: `r${i}` })).execution!.id);
        } catch {
          return;
        }
      }
    })();
    await until(() => acknowledged.length >= 20, 10_000, "submits before the kill");
    c.child.kill("SIGKILL");
    expect(await c.exited).toEqual({ code: null, signal: "SIGKILL" });
    await racing;
    c.closeClients();

    c = await spawnCoordinator(db);
    try {
      for (const id of acknowledged) expect((await c.executions.getExecution({ executionId: id })).execution?.id).toBe(id);

      const [pendingRuns] = await lease(c, "pending", 30_000);
      expect(pendingRuns!.executionId).toBe(pending);

      const [retryRuns] = await lease(c, "retry_waiting", 30_000, 5000);
      expect([retryRuns!.executionId, retryRuns!.attempt]).toEqual([retryWaiting, 2]);

      await until(
        async () => (await c.executions.getExecution({ executionId: atMostOnce })).execution!.state === ExecutionState.ABANDONED,
        10_000,
        "the at-most-once execution to be abandoned",
      );
      expect(await lease(c, "at_most_once", 30_000, 1200)).toEqual([]);
      const abandoned = (await c.executions.getExecution({ executionId: atMostOnce })).execution!;
      expect(abandoned.attempts).toHaveLength(1);
      expect(abandoned.failure?.type).toBe("Abandoned");

      const [retried] = await lease(c, "retryable", 30_000, 5000);
      expect([retried!.executionId, retried!.attempt]).toEqual([retryable, 2]);

      expect((await report(c, heldByDeadWorker!, true)).accepted).toBe(false);
      const live = (await c.executions.getExecution({ executionId: liveLease })).execution!;
      expect(toMs(live.attempts[0]!.leaseExpiresAt)).toBe(leaseExpiresAt);
      expect((await report(c, heldByLiveWorker!, true)).accepted).toBe(true);
      expect((await c.executions.getExecution({ executionId: liveLease })).execution!.state).toBe(ExecutionState.SUCCEEDED);
    } finally {
      c.closeClients();
      c.child.kill("SIGKILL");
      await c.exited;
    }
  });
});

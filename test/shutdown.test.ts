// SIGTERM: long-polls return empty, watches end with UNAVAILABLE, pending
// commits are flushed, and the process exits 0 within 5 s.
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { ExecutionState } from "@reprise/wire";
import { describe, expect, test } from "vitest";
import { seconds, tempDir, until } from "./helpers.js";
import { spawnCoordinator } from "./process-helpers.js";

describe("shutdown", () => {
  test("on SIGTERM long-polls return empty, a worker that asks again is refused with UNAVAILABLE, watches end with UNAVAILABLE, nothing acknowledged is lost, and the process exits 0 within 5 s", async () => {
    const db = join(tempDir(), "reprise.db");
    const c = await spawnCoordinator(db);
    const { execution } = await c.executions.submit({ task: "watched" });
    const poll = c.workers.leaseAttempts({ workerId: "w", tasks: ["nothing_due"], wait: seconds(60) });
    const watchEnd = (async () => {
      try {
        for await (const _ of c.executions.watchExecution({ executionId: execution!.id })) {
          // the current state, then nothing until shutdown
        }
        return "ended OK";
      } catch (error) {
        return (error as { code: number }).code;
      }
    })();
    const acknowledged: string[] = [];
    let stop = false;
    const submitting = (async () => {
      for (let i = 0; i < 5000 && !stop; i++) {
        try {
          acknowledged.push((await c.executions.submit({ task: "busy" })).execution!.id);
        } catch {
          return;
        }
      }
    })();
    await until(() => acknowledged.length >= 20, 10_000, "some submits");
    const signalledAt = Date.now();
    c.child.kill("SIGTERM");
    expect((await poll).attempts).toEqual([]);
    // Asked again at once, as a worker would: refused, not answered empty again and again.
    const asked = await c.workers.leaseAttempts({ workerId: "w", tasks: ["nothing_due"], wait: seconds(60) }).then(
      () => "answered",
      (error: { code: number }) => error.code,
    );
    expect(asked).toBe(status.UNAVAILABLE);
    expect(await watchEnd).toBe(status.UNAVAILABLE);
    const exit = await c.exited;
    stop = true;
    await submitting;
    c.closeClients();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalledAt).toBeLessThan(5000);

    const again = await spawnCoordinator(db);
    try {
      for (const id of acknowledged) {
        expect((await again.executions.getExecution({ executionId: id })).execution?.state).toBe(ExecutionState.PENDING);
      }
    } finally {
      again.closeClients();
      again.child.kill("SIGTERM");
      expect(await again.exited).toEqual({ code: 0, signal: null });
    }
  });
});

// A lease that cannot be delivered is handed back instead of being abandoned.
import { EventEmitter } from "node:events";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { ExecutionState, LeaseAttemptsRequestSchema } from "@reprise/wire";
import { describe, expect, test } from "vitest";
import { Coordinator } from "../server/coordinator/coordinator.js";
import { DEFAULT_LIMITS } from "../server/api/limits.js";
import { ConnectionQuota } from "../server/api/quota.js";
import { SqliteStore } from "../server/store/sqlite/sqlite-store.js";
import { workerService } from "../server/api/worker-service.js";
import { tempDir } from "./helpers.js";

describe("undelivered leases", () => {
  test("a lease committed for a LeaseAttempts call that was cancelled meanwhile is handed back, so an at-most-once execution still runs once", async () => {
    const store = new SqliteStore({ path: join(tempDir(), "r.db") });
    const coordinator = new Coordinator({ store });
    coordinator.start();
    try {
      const service = workerService(coordinator, DEFAULT_LIMITS, new ConnectionQuota("long-polls", 64, "--x"));
      const { execution } = await coordinator.submit({ task: "charge", arguments: { data: new Uint8Array(), contentType: "" }, retryPolicy: null, idempotencyKey: null, delayMs: 0, labels: {} });

      // The worker cancels its call while the lease is being committed.
      const call = Object.assign(new EventEmitter(), { getPeer: () => "test:1" });
      const reply = service.leaseAttempts(create(LeaseAttemptsRequestSchema, { workerId: "w", tasks: ["charge"] }), call as never);
      call.emit("cancelled");
      expect((await reply).attempts).toEqual([]);

      const returned = await coordinator.get(execution.id);
      expect(returned.state).toBe(ExecutionState.PENDING);
      expect(returned.attempts).toEqual([]);
      expect(returned.nextAttemptAt).toEqual(execution.nextAttemptAt);

      const [attempt] = await coordinator.lease({ workerId: "w2", tasks: ["charge"], maxAttempts: 1, leaseMs: 30_000, waitMs: 0 }, new AbortController().signal);
      expect(attempt!.attempt).toBe(1);
      expect((await coordinator.get(execution.id)).attempts.map((a) => a.workerId)).toEqual(["w2"]);
    } finally {
      await coordinator.shutdown();
      await store.close();
    }
  });
});

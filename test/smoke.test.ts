import { describe, expect, test } from "vitest";
import { ExecutionState } from "@reprise/wire";
import { json, startTestCoordinator } from "./helpers.js";

describe("coordinator", () => {
  test("an execution is submitted, leased and completed over loopback gRPC", async () => {
    const c = await startTestCoordinator();
    try {
      const { execution } = await c.executions.submit({ task: "hello", arguments: json({ n: 1 }) });
      const { attempts } = await c.workers.leaseAttempts({ workerId: "w", tasks: ["hello"] });
      expect(attempts).toHaveLength(1);
      const [receipt] = (await c.workers.reportOutcomes({ outcomes: [{ leaseToken: attempts[0]!.leaseToken, outcome: { case: "result", value: json(2) } }] })).receipts;
      expect(receipt!.accepted).toBe(true);
      const done = (await c.executions.getExecution({ executionId: execution!.id })).execution!;
      expect(done.state).toBe(ExecutionState.SUCCEEDED);
    } finally {
      await c.close();
    }
  });
});

// Small steps of the worker protocol, spoken directly over the wire, for tests
// that pin the coordinator's rules without a client library in between.
import type { ExecutionState, LeasedAttempt, OutcomeReceipt, RetryPolicy } from "@reprise/wire";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RetryPolicySchema, SubmitRequestSchema } from "@reprise/wire";
import { expect } from "vitest";
import type { TestCoordinator as FullTestCoordinator } from "./helpers.js";
import { json, seconds } from "./helpers.js";

/** Anything with the two service clients: an in-process test coordinator or a child process. */
type TestCoordinator = Pick<FullTestCoordinator, "executions" | "workers">;

export type PolicyInit = MessageInitShape<typeof RetryPolicySchema> | RetryPolicy;

export async function submit(c: TestCoordinator, task: string, init: Omit<MessageInitShape<typeof SubmitRequestSchema>, "task" | "$typeName"> = {}) {
  const { execution } = await c.executions.submit({ task, arguments: json({ task }), ...init });
  return execution!;
}

/** Leases without waiting and expects exactly `count` attempts. */
export async function leaseNow(c: TestCoordinator, tasks: string[], count = 1, leaseMs?: number): Promise<LeasedAttempt[]> {
  const { attempts } = await c.workers.leaseAttempts({
    workerId: "test-worker",
    tasks,
    maxAttempts: Math.max(count, 1),
    leaseDuration: leaseMs === undefined ? undefined : { seconds: BigInt(Math.trunc(leaseMs / 1000)), nanos: (leaseMs % 1000) * 1e6 },
  });
  expect(attempts).toHaveLength(count);
  return attempts;
}

export async function fail(
  c: TestCoordinator,
  attempt: LeasedAttempt,
  failure: { type?: string; message?: string; nonRetryable?: boolean; retryAfterSeconds?: number } = {},
): Promise<OutcomeReceipt> {
  const { receipts } = await c.workers.reportOutcomes({
    outcomes: [
      {
        leaseToken: attempt.leaseToken,
        outcome: {
          case: "failure",
          value: {
            type: failure.type ?? "ConnectionError",
            message: failure.message ?? "connection refused",
            nonRetryable: failure.nonRetryable ?? false,
            retryAfter: failure.retryAfterSeconds === undefined ? undefined : seconds(failure.retryAfterSeconds),
          },
        },
      },
    ],
  });
  return receipts[0]!;
}

export async function succeed(c: TestCoordinator, attempt: LeasedAttempt, value: unknown = "ok"): Promise<OutcomeReceipt> {
  const { receipts } = await c.workers.reportOutcomes({
    outcomes: [{ leaseToken: attempt.leaseToken, outcome: { case: "result", value: json(value) } }],
  });
  return receipts[0]!;
}

export async function stateOf(c: TestCoordinator, executionId: string): Promise<ExecutionState> {
  return (await c.executions.getExecution({ executionId })).execution!.state;
}

export async function get(c: TestCoordinator, executionId: string) {
  return (await c.executions.getExecution({ executionId })).execution!;
}

// WorkerService: validates each request, naming the bad field, and hands it to
// the coordinator. Stale tokens are never errors: they are answered per token.
import type { ServiceHandlers, WorkerService } from "@reprise/wire";
import { encodePolicy } from "../coordinator/coordinator.js";
import type { Coordinator } from "../coordinator/coordinator.js";
import { callSignal } from "./execution-service.js";
import { fixedLimits } from "./limits.js";
import type { Limits } from "./limits.js";
import type { ConnectionQuota } from "./quota.js";
import {
  checkCount,
  checkDuration,
  checkFailure,
  checkPayload,
  checkRetryBudget,
  checkRetryPolicy,
  checkSnooze,
  checkTaskName,
  checkWorkerId,
  invalid,
} from "./validate.js";

export function workerService(coordinator: Coordinator, limits: Limits, longPolls: ConnectionQuota): ServiceHandlers<typeof WorkerService> {
  return {
    async declareTasks(request) {
      checkWorkerId(request.workerId, "worker_id", false);
      checkCount(request.tasks.length, "tasks", limits.maxBatchSize);
      const tasks = request.tasks.map((task, i) => {
        checkTaskName(task.name, `tasks[${i}].name`, limits);
        checkRetryPolicy(task.retryPolicy, `tasks[${i}].retry_policy`);
        const timeoutMs = checkDuration(task.timeout, `tasks[${i}].timeout`, fixedLimits.durationMs);
        const retryBudget = checkRetryBudget(task.retryBudget, `tasks[${i}].retry_budget`);
        return { name: task.name, retryPolicy: encodePolicy(task.retryPolicy), timeoutMs: timeoutMs === 0 ? null : timeoutMs, retryBudget };
      });
      await coordinator.declare(request.workerId, tasks);
      return {};
    },

    async leaseAttempts(request, call) {
      checkWorkerId(request.workerId, "worker_id", false);
      if (request.tasks.length === 0) throw invalid("tasks", "must name at least one task");
      checkCount(request.tasks.length, "tasks", limits.maxBatchSize);
      request.tasks.forEach((task, i) => checkTaskName(task, `tasks[${i}]`, limits));
      if (request.maxAttempts > limits.maxBatchSize) throw invalid("max_attempts", `must be at most ${limits.maxBatchSize}`);
      const waitMs = checkDuration(request.wait, "wait", fixedLimits.waitMs);
      const leaseMs = checkDuration(request.leaseDuration, "lease_duration", limits.maxLeaseMs) || fixedLimits.defaultLeaseMs;
      if (leaseMs < limits.minLeaseMs) throw invalid("lease_duration", `must be at least ${limits.minLeaseMs} ms`);
      const release = waitMs > 0 ? longPolls.acquire(call.getPeer()) : () => {};
      try {
        const signal = callSignal(call);
        const attempts = await coordinator.lease(
          { workerId: request.workerId, tasks: request.tasks, maxAttempts: request.maxAttempts || 1, leaseMs, waitMs },
          signal,
        );
        // The worker went away while its leases were being committed: they can
        // never reach it, so hand them back rather than let them be abandoned.
        if (signal.aborted && attempts.length > 0) {
          await coordinator.returnLeases(attempts.map((a) => a.leaseToken));
          return { attempts: [] };
        }
        return { attempts };
      } finally {
        release();
      }
    },

    async heartbeat(request) {
      checkCount(request.leaseTokens.length, "lease_tokens", limits.maxBatchSize);
      checkWorkerId(request.workerId, "worker_id", false);
      return coordinator.heartbeat(request.leaseTokens);
    },

    async reportOutcomes(request) {
      checkCount(request.outcomes.length, "outcomes", limits.maxBatchSize);
      request.outcomes.forEach((outcome, i) => {
        if (outcome.outcome.case === "result") checkPayload(outcome.outcome.value, `outcomes[${i}].result`, limits.maxPayloadBytes);
        if (outcome.outcome.case === "failure") checkFailure(outcome.outcome.value, `outcomes[${i}].failure`);
        if (outcome.outcome.case === "snooze") checkSnooze(outcome.outcome.value, `outcomes[${i}].snooze`);
      });
      return { receipts: await coordinator.report(request.outcomes) };
    },
  };
}

// WorkerService: validates each request, naming the bad field, and hands it to
// the coordinator. Stale tokens are never errors: they are answered per token.
import type { ServiceHandlers, WorkerService } from "@reprise/client/wire";
import { encodePolicy } from "./coordinator.js";
import type { Coordinator } from "./coordinator.js";
import { callSignal } from "./execution-service.js";
import { limits } from "./limits.js";
import {
  checkCount,
  checkDuration,
  checkFailure,
  checkPayload,
  checkRetryPolicy,
  checkTaskName,
  checkWorkerId,
  invalid,
} from "./validate.js";

export function workerService(coordinator: Coordinator, options: { maxPayloadBytes: number }): ServiceHandlers<typeof WorkerService> {
  return {
    async declareTasks(request) {
      checkWorkerId(request.workerId, "worker_id", false);
      checkCount(request.tasks.length, "tasks", limits.tasksPerRequest);
      const tasks = request.tasks.map((task, i) => {
        checkTaskName(task.name, `tasks[${i}].name`);
        checkRetryPolicy(task.retryPolicy, `tasks[${i}].retry_policy`);
        const timeoutMs = checkDuration(task.timeout, `tasks[${i}].timeout`, limits.durationMs);
        return { name: task.name, retryPolicy: encodePolicy(task.retryPolicy), timeoutMs: timeoutMs === 0 ? null : timeoutMs };
      });
      await coordinator.declare(request.workerId, tasks);
      return {};
    },

    async leaseAttempts(request, call) {
      checkWorkerId(request.workerId, "worker_id", false);
      if (request.tasks.length === 0) throw invalid("tasks", "must name at least one task");
      checkCount(request.tasks.length, "tasks", limits.tasksPerRequest);
      request.tasks.forEach((task, i) => checkTaskName(task, `tasks[${i}]`));
      if (request.maxAttempts > limits.maxAttemptsPerLease) {
        throw invalid("max_attempts", `must be at most ${limits.maxAttemptsPerLease}`);
      }
      const waitMs = checkDuration(request.wait, "wait", limits.waitMs);
      const leaseMs = checkDuration(request.leaseDuration, "lease_duration", limits.leaseMaxMs) || limits.defaultLeaseMs;
      if (leaseMs < limits.leaseMinMs) throw invalid("lease_duration", `must be at least ${limits.leaseMinMs} ms`);
      const attempts = await coordinator.lease(
        {
          workerId: request.workerId,
          tasks: request.tasks,
          maxAttempts: request.maxAttempts || 1,
          leaseMs,
          waitMs,
        },
        callSignal(call),
      );
      return { attempts };
    },

    async heartbeat(request) {
      checkCount(request.leaseTokens.length, "lease_tokens", limits.tokensPerHeartbeat);
      checkWorkerId(request.workerId, "worker_id", false);
      return coordinator.heartbeat(request.leaseTokens);
    },

    async reportOutcomes(request) {
      checkCount(request.outcomes.length, "outcomes", limits.outcomesPerReport);
      request.outcomes.forEach((outcome, i) => {
        if (outcome.outcome.case === "result") checkPayload(outcome.outcome.value, `outcomes[${i}].result`, options.maxPayloadBytes);
        if (outcome.outcome.case === "failure") checkFailure(outcome.outcome.value, `outcomes[${i}].failure`);
      });
      return { receipts: await coordinator.report(request.outcomes) };
    },
  };
}

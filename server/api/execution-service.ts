// ExecutionService: validates each request, naming the bad field, and hands it
// to the coordinator.
import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { ExecutionState, WatchExecutionResponseSchema } from "@reprise/wire";
import type { ExecutionService, ListExecutionsRequest, ServiceHandlers, SubmitRequest } from "@reprise/wire";
import type { ServerUnaryCall, ServerWritableStream } from "@grpc/grpc-js";
import { encodePolicy } from "../coordinator/coordinator.js";
import type { Coordinator, SubmitParams } from "../coordinator/coordinator.js";
import { fixedLimits } from "./limits.js";
import { msToDuration, msToTimestamp } from "../coordinator/time.js";
import { storedPolicy } from "../coordinator/snapshot.js";
import { labelsInKeyOrder } from "../store/list-page.js";
import type { TaskRecord } from "../store/store.js";
import type { Limits } from "./limits.js";
import type { ConnectionQuota } from "./quota.js";
import {
  checkCount,
  checkDuration,
  checkExecutionId,
  checkLabels,
  checkPayload,
  checkRetryPolicy,
  checkTaskName,
  invalid,
} from "./validate.js";

/** Aborts when the client cancels the call or its connection drops. */
export function callSignal(call: ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>): AbortSignal {
  const controller = new AbortController();
  call.on("cancelled", () => controller.abort());
  return controller.signal;
}

/**
 * The filters a page token belongs to, as a short digest: a token passed with
 * other filters would page through another list from a position in this one.
 */
function listFilters(request: ListExecutionsRequest): string {
  const labels = labelsInKeyOrder(request.labels);
  return createHash("sha256").update(JSON.stringify([request.task, request.state, request.idempotencyKey, labels])).digest("base64url").slice(0, 8);
}

/** The position after this page, and the filters it was listed with. */
function encodePageToken(seq: number, filters: string): string {
  return Buffer.from(`s${seq}.${filters}`).toString("base64url");
}

function decodePageToken(token: string, filters: string): number | undefined {
  if (token === "") return undefined;
  const match = /^s(\d{1,16})\.([\w-]{8})$/.exec(Buffer.from(token, "base64url").toString());
  if (!match) throw invalid("page_token", "is not a token returned by ListExecutions");
  if (match[2] !== filters) {
    throw invalid("page_token", "was returned for a list with another task, state, labels or idempotency_key; start again with an empty page_token");
  }
  return Number(match[1]);
}

/** A stored declaration in its wire form. */
function taskDefinition(task: TaskRecord) {
  return {
    name: task.name,
    retryPolicy: task.retryPolicy === null ? undefined : storedPolicy(task.retryPolicy).policy,
    timeout: task.timeoutMs === null ? undefined : msToDuration(task.timeoutMs),
    retryBudget: task.retryBudget === null ? undefined : { retriesPerSecond: task.retryBudget.perSecond, burst: task.retryBudget.burst },
  };
}

function checkIdempotencyKey(key: string, field: string): void {
  if (Buffer.byteLength(key) > fixedLimits.idempotencyKeyBytes) throw invalid(field, `must be at most ${fixedLimits.idempotencyKeyBytes} bytes`);
}

/** Validates one Submit; `prefix` places its fields inside a batch. */
function submission(request: SubmitRequest, prefix: string, limits: Limits): SubmitParams {
  checkTaskName(request.task, `${prefix}task`, limits);
  checkPayload(request.arguments, `${prefix}arguments`, limits.maxPayloadBytes);
  checkRetryPolicy(request.retryPolicy, `${prefix}retry_policy`);
  checkIdempotencyKey(request.idempotencyKey, `${prefix}idempotency_key`);
  const delayMs = checkDuration(request.delay, `${prefix}delay`, fixedLimits.durationMs);
  checkLabels(request.labels, `${prefix}labels`);
  return {
    task: request.task,
    arguments: { data: request.arguments?.data ?? new Uint8Array(), contentType: request.arguments?.contentType ?? "" },
    retryPolicy: encodePolicy(request.retryPolicy),
    idempotencyKey: request.idempotencyKey === "" ? null : request.idempotencyKey,
    delayMs,
    labels: request.labels,
  };
}

export function executionService(
  coordinator: Coordinator,
  limits: Limits,
  watches: ConnectionQuota,
): ServiceHandlers<typeof ExecutionService> {
  return {
    async submit(request) {
      const [result] = await coordinator.submitMany([submission(request, "", limits)]);
      return result!;
    },

    async submitBatch(request) {
      checkCount(request.submissions.length, "submissions", limits.maxBatchSize);
      const batch = request.submissions.map((s, i) => submission(s, `submissions[${i}].`, limits));
      return { results: await coordinator.submitMany(batch) };
    },

    async getExecution(request) {
      checkExecutionId(request.executionId);
      return { execution: await coordinator.get(request.executionId) };
    },

    async listExecutions(request) {
      if (request.pageSize < 0 || request.pageSize > fixedLimits.maxPageSize) {
        throw invalid("page_size", `must be between 0 and ${fixedLimits.maxPageSize}`);
      }
      if (!(request.state in ExecutionState)) throw invalid("state", `${request.state} is not an ExecutionState`);
      if (request.task !== "") checkTaskName(request.task, "task", limits);
      checkIdempotencyKey(request.idempotencyKey, "idempotency_key");
      checkLabels(request.labels, "labels");
      const filters = listFilters(request);
      const page = await coordinator.list({
        idempotencyKey: request.idempotencyKey === "" ? undefined : request.idempotencyKey,
        task: request.task === "" ? undefined : request.task,
        state: request.state === ExecutionState.UNSPECIFIED ? undefined : request.state,
        labels: request.labels,
        beforeSeq: decodePageToken(request.pageToken, filters),
        limit: request.pageSize === 0 ? fixedLimits.defaultPageSize : request.pageSize,
      });
      return {
        executions: page.executions,
        nextPageToken: page.nextBeforeSeq === null ? "" : encodePageToken(page.nextBeforeSeq, filters),
      };
    },

    async watchExecution(request, call) {
      checkExecutionId(request.executionId);
      const release = watches.acquire(call.getPeer());
      try {
        await coordinator.watch(
          request.executionId,
          (execution) => call.write(create(WatchExecutionResponseSchema, { execution })),
          callSignal(call),
        );
      } finally {
        release();
      }
    },

    async cancelExecution(request) {
      checkExecutionId(request.executionId);
      return { execution: await coordinator.cancel(request.executionId) };
    },

    async rerunExecution(request) {
      checkExecutionId(request.executionId);
      return { execution: await coordinator.rerun(request.executionId) };
    },

    async listTasks() {
      return {
        tasks: (await coordinator.listTasks()).map((task) => ({
          name: task.name,
          declaration: task.declaration === null ? undefined : taskDefinition(task.declaration),
          declaredBy: task.declaration?.workerId ?? "",
          declaredAt: task.declaration === null ? undefined : msToTimestamp(task.declaration.declaredAt),
          executions: task.executions.map(({ state, count }) => ({ state, count: BigInt(count) })),
          due: BigInt(task.due),
          workers: task.workers,
          workerLastSeenAt: task.lastSeenAt === null ? undefined : msToTimestamp(task.lastSeenAt),
          noWorker: task.noWorker,
          failuresLastHour: task.failuresLastHour,
          retriesLastHour: task.retriesLastHour,
          frequentFailures: task.frequentFailures,
        })),
      };
    },

    async listWorkers(request) {
      if (request.task !== "") checkTaskName(request.task, "task", limits);
      const workers = await coordinator.listWorkers(request.task === "" ? undefined : request.task);
      return {
        workers: workers.map((worker) => ({ id: worker.id, tasks: worker.tasks, lastSeenAt: msToTimestamp(worker.lastSeenAt) })),
      };
    },
  };
}

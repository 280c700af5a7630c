// Builds the wire form of executions and attempts from store records.
import { create, fromBinary } from "@bufbuild/protobuf";
import { AttemptSchema, ExecutionSchema, FailureSchema, PayloadSchema, RetryPolicySchema } from "@reprise/client/wire";
import type { Execution, Failure, Payload, RetryPolicy } from "@reprise/client/wire";
import { resolvePolicy } from "./policy.js";
import type { AttemptRecord, ExecutionRecord, FailureRecord, PayloadRecord } from "./store.js";
import { msToDuration, msToTimestamp } from "./time.js";

export function decodePolicy(bytes: Uint8Array | null): RetryPolicy | undefined {
  return bytes === null ? undefined : fromBinary(RetryPolicySchema, bytes);
}

/** A policy that allows no retries is shown as absent, like no policy at all. */
function shownPolicy(bytes: Uint8Array | null): RetryPolicy | undefined {
  const policy = decodePolicy(bytes);
  return resolvePolicy(policy) === null ? undefined : policy;
}

export function toPayload(record: PayloadRecord): Payload {
  return create(PayloadSchema, { data: record.data, contentType: record.contentType });
}

export function toFailure(record: FailureRecord): Failure {
  return create(FailureSchema, {
    type: record.type,
    message: record.message,
    stackTrace: record.stackTrace,
    nonRetryable: record.nonRetryable,
    retryAfter: record.retryAfterMs > 0 ? msToDuration(record.retryAfterMs) : undefined,
  });
}

const optionalTime = (ms: number | null) => (ms === null ? undefined : msToTimestamp(ms));

/** `policyInEffect` is the serialized policy that applies now (the Submit's own, else the task's). */
export function toExecution(record: ExecutionRecord, attempts: AttemptRecord[], policyInEffect: Uint8Array | null): Execution {
  return create(ExecutionSchema, {
    id: record.id,
    task: record.task,
    state: record.state,
    arguments: toPayload(record.arguments),
    retryPolicy: shownPolicy(policyInEffect),
    attempts: attempts.map((attempt) =>
      create(AttemptSchema, {
        number: attempt.number,
        state: attempt.state,
        workerId: attempt.workerId,
        scheduledAt: msToTimestamp(attempt.scheduledAt),
        startedAt: msToTimestamp(attempt.startedAt),
        finishedAt: optionalTime(attempt.finishedAt),
        failure: attempt.failure ? toFailure(attempt.failure) : undefined,
        retryPolicy: shownPolicy(attempt.retryPolicy),
        leaseExpiresAt: attempt.finishedAt === null ? msToTimestamp(attempt.leaseExpiresAt) : undefined,
      }),
    ),
    result: record.result ? toPayload(record.result) : undefined,
    failure: record.failure ? toFailure(record.failure) : undefined,
    nextAttemptAt: optionalTime(record.nextAttemptAt),
    createdAt: msToTimestamp(record.createdAt),
    finishedAt: optionalTime(record.finishedAt),
    idempotencyKey: record.idempotencyKey ?? "",
    labels: record.labels,
  });
}

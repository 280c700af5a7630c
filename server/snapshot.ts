// Builds the wire form of executions and attempts from store records.
import { fromBinary } from "@bufbuild/protobuf";
import { RetryPolicySchema } from "@reprise/client/wire";
import type { Attempt, Execution, Failure, Payload, RetryPolicy } from "@reprise/client/wire";
import { resolvePolicy } from "./policy.js";
import type { AttemptRecord, ExecutionRecord, FailureRecord, PayloadRecord } from "./store.js";
import { msToDuration, msToTimestamp } from "./time.js";

export function decodePolicy(bytes: Uint8Array | null): RetryPolicy | undefined {
  return bytes === null ? undefined : fromBinary(RetryPolicySchema, bytes);
}

/**
 * A policy that allows no retries is shown as absent, like no policy at all.
 * Decoded once per stored policy: a task's declaration appears in every
 * snapshot of its executions, and snapshots never change what they hold.
 */
const shownPolicies = new WeakMap<Uint8Array, RetryPolicy | undefined>();
function shownPolicy(bytes: Uint8Array | null): RetryPolicy | undefined {
  if (bytes === null) return undefined;
  if (shownPolicies.has(bytes)) return shownPolicies.get(bytes);
  const policy = decodePolicy(bytes);
  const shown = resolvePolicy(policy) === null ? undefined : policy;
  shownPolicies.set(bytes, shown);
  return shown;
}

// Object literals rather than create() calls, which first fill every field with
// its default; the types still demand every field that has no default.
export function toPayload(record: PayloadRecord): Payload {
  return { $typeName: "reprise.v1.Payload", data: record.data, contentType: record.contentType };
}

export function toFailure(record: FailureRecord): Failure {
  return {
    $typeName: "reprise.v1.Failure",
    type: record.type,
    message: record.message,
    stackTrace: record.stackTrace,
    nonRetryable: record.nonRetryable,
    retryAfter: record.retryAfterMs > 0 ? msToDuration(record.retryAfterMs) : undefined,
  };
}

const optionalTime = (ms: number | null) => (ms === null ? undefined : msToTimestamp(ms));

function toAttempt(attempt: AttemptRecord): Attempt {
  return {
    $typeName: "reprise.v1.Attempt",
    number: attempt.number,
    state: attempt.state,
    workerId: attempt.workerId,
    scheduledAt: msToTimestamp(attempt.scheduledAt),
    startedAt: msToTimestamp(attempt.startedAt),
    finishedAt: optionalTime(attempt.finishedAt),
    failure: attempt.failure ? toFailure(attempt.failure) : undefined,
    retryPolicy: shownPolicy(attempt.retryPolicy),
    leaseExpiresAt: attempt.finishedAt === null ? msToTimestamp(attempt.leaseExpiresAt) : undefined,
  };
}

/** `policyInEffect` is the serialized policy that applies now (the Submit's own, else the task's). */
export function toExecution(record: ExecutionRecord, attempts: AttemptRecord[], policyInEffect: Uint8Array | null): Execution {
  return {
    $typeName: "reprise.v1.Execution",
    id: record.id,
    task: record.task,
    state: record.state,
    arguments: toPayload(record.arguments),
    retryPolicy: shownPolicy(policyInEffect),
    attempts: attempts.map(toAttempt),
    result: record.result ? toPayload(record.result) : undefined,
    failure: record.failure ? toFailure(record.failure) : undefined,
    nextAttemptAt: optionalTime(record.nextAttemptAt),
    createdAt: msToTimestamp(record.createdAt),
    finishedAt: optionalTime(record.finishedAt),
    idempotencyKey: record.idempotencyKey ?? "",
    labels: record.labels,
  };
}

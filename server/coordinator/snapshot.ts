// Builds the wire form of executions and attempts from store records.
import { fromBinary } from "@bufbuild/protobuf";
import { ExecutionState, RetryPolicySchema } from "@reprise/wire";
import type { Attempt, Execution, Failure, Payload, RetryPolicy } from "@reprise/wire";
import { resolvePolicy } from "./policy.js";
import type { ResolvedPolicy } from "./policy.js";
import type { AttemptRecord, ExecutionRecord, FailureRecord, PayloadRecord } from "../store/store.js";
import { msToDuration, msToTimestamp } from "./time.js";

/** A stored policy, decoded, and resolved into the retry math (null: it allows no retries). */
export interface StoredPolicy {
  policy: RetryPolicy;
  resolved: ResolvedPolicy | null;
}

/**
 * Decoded and resolved once per stored copy: a task's declaration is reused by
 * every decision and every snapshot of its executions, which never change what
 * they hold.
 */
const storedPolicies = new WeakMap<Uint8Array, StoredPolicy>();
export function storedPolicy(bytes: Uint8Array): StoredPolicy {
  let stored = storedPolicies.get(bytes);
  if (stored === undefined) {
    const policy = fromBinary(RetryPolicySchema, bytes);
    storedPolicies.set(bytes, (stored = { policy, resolved: resolvePolicy(policy) }));
  }
  return stored;
}

/** An execution state as the API names it, for example "SUCCEEDED". */
export const stateName = (state: number): string => ExecutionState[state] ?? String(state);

/** A policy that allows no retries is shown as absent, like no policy at all. */
function shownPolicy(bytes: Uint8Array | null): RetryPolicy | undefined {
  if (bytes === null) return undefined;
  const { policy, resolved } = storedPolicy(bytes);
  return resolved === null ? undefined : policy;
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
    retryRule: attempt.decision?.rule ?? 0,
    retryAt: optionalTime(attempt.decision?.retryAt ?? null),
    retryComputedAt: optionalTime(attempt.decision?.computedAt ?? null),
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

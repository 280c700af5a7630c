// Request validation. Every rejection is a StatusError whose message starts
// with the field's path, because tools often show only the message.
import { status } from "@grpc/grpc-js";
import { StatusError } from "@reprise/wire";
import type { Failure, Payload, RetryBudget, RetryPolicy, Snooze } from "@reprise/wire";
import type { RetryBudgetRecord } from "../store/store.js";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { DEFAULT_LIMITS, fixedLimits as limits } from "./limits.js";
import type { Limits } from "./limits.js";
import { durationToMs } from "../coordinator/time.js";

/**
 * A caller's value quoted for an error message, cut short: status messages
 * travel in an HTTP/2 trailer, and an echoed 300 KB id would not fit.
 */
export function quote(value: string, max = 64): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
}

export function invalid(field: string, problem: string): StatusError {
  return new StatusError(status.INVALID_ARGUMENT, `${field}: ${problem}`);
}

function checkBytes(value: string, field: string, max: number): void {
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > max) throw invalid(field, `is ${bytes} bytes; the maximum is ${max}`);
}

export function checkTaskName(name: string, field: string, configured: Limits): void {
  if (name.length === 0) throw invalid(field, "must not be empty");
  checkBytes(name, field, configured.maxTaskNameBytes);
  if (!configured.taskNamePattern.test(name)) {
    // The default pattern is read more easily in words; one set with --task-name-pattern is shown as it is.
    const meaning = configured.taskNamePattern.source === DEFAULT_LIMITS.taskNamePattern.source ? " (no whitespace or control characters)" : "";
    throw invalid(field, `${quote(name)} does not match ${configured.taskNamePattern}${meaning}`);
  }
}

export function checkExecutionId(id: string, field = "execution_id"): void {
  if (id.length === 0) throw invalid(field, "must not be empty");
  checkBytes(id, field, limits.executionIdBytes);
}

export function checkWorkerId(id: string, field: string, required: boolean): void {
  if (required && id.length === 0) throw invalid(field, "must not be empty");
  checkBytes(id, field, limits.workerIdBytes);
}

/** Checks a duration's sign and maximum and returns it in whole milliseconds (0 when absent). */
export function checkDuration(duration: Duration | undefined, field: string, maxMs: number): number {
  if (duration === undefined) return 0;
  if (duration.seconds < 0n || duration.nanos < 0) throw invalid(field, "must not be negative");
  if (duration.nanos > 999_999_999) throw invalid(field, "nanos must be below 1e9");
  if (duration.seconds > BigInt(Math.ceil(maxMs / 1000)) || durationToMs(duration) > maxMs) {
    throw invalid(field, `must be at most ${maxMs} ms`);
  }
  return durationToMs(duration);
}

export function checkRetryPolicy(policy: RetryPolicy | undefined, field: string): void {
  if (policy === undefined) return;
  if (policy.unlimited && policy.limit > 0) {
    throw invalid(`${field}.unlimited`, "must not be set together with a non-zero limit");
  }
  if (policy.limit > limits.retryLimit) throw invalid(`${field}.limit`, `must be at most ${limits.retryLimit}`);
  const min = checkDuration(policy.backoffMin, `${field}.backoff_min`, limits.durationMs);
  const max = checkDuration(policy.backoffMax, `${field}.backoff_max`, limits.durationMs);
  if (policy.backoffMin && policy.backoffMax && min > max) {
    throw invalid(`${field}.backoff_min`, `(${min} ms) must not be greater than backoff_max (${max} ms)`);
  }
  const coefficient = policy.backoffCoefficient;
  if (!Number.isFinite(coefficient) || (coefficient !== 0 && coefficient < 1)) {
    throw invalid(`${field}.backoff_coefficient`, `must be 0 (Coflux's rule) or a finite number of at least 1, not ${coefficient}`);
  }
  if (!Number.isFinite(policy.jitter) || policy.jitter < 0 || policy.jitter > 1) {
    throw invalid(`${field}.jitter`, `must be a fraction in [0, 1], not ${policy.jitter}`);
  }
  checkDuration(policy.maxElapsed, `${field}.max_elapsed`, limits.maxElapsedMs);
}

/** Checks a task's retry budget and returns it as stored (null: none). */
export function checkRetryBudget(budget: RetryBudget | undefined, field: string): RetryBudgetRecord | null {
  if (budget === undefined) return null;
  const rate = budget.retriesPerSecond;
  if (!Number.isFinite(rate) || rate < 0 || rate > limits.retryBudgetRate) {
    throw invalid(`${field}.retries_per_second`, `must be a finite number from 0 to ${limits.retryBudgetRate}, not ${rate}`);
  }
  if (budget.burst > limits.retryBudgetBurst) throw invalid(`${field}.burst`, `must be at most ${limits.retryBudgetBurst}`);
  return rate === 0 ? null : { perSecond: rate, burst: budget.burst || 1 };
}

export function checkSnooze(snooze: Snooze, field: string): void {
  checkDuration(snooze.delay, `${field}.delay`, limits.durationMs);
}

/** Payload sizes are RESOURCE_EXHAUSTED, not INVALID_ARGUMENT: the request was well formed. */
export function checkPayload(payload: Payload | undefined, field: string, maxBytes: number): void {
  if (payload === undefined) return;
  if (payload.data.byteLength > maxBytes) {
    throw new StatusError(
      status.RESOURCE_EXHAUSTED,
      `${field}.data: is ${payload.data.byteLength} bytes; the maximum payload size is ${maxBytes}`,
    );
  }
  checkBytes(payload.contentType, `${field}.content_type`, limits.contentTypeBytes);
}

/**
 * Labels written as key=value (the JSON API's `label=` parameters, the CLI's
 * `--label` options), as a map. The value may hold `=`; a pair without a key,
 * or a key given twice, is refused through `fail`, with the problem to name.
 * `form` is how the caller's own help spells a pair.
 */
export function labelsFromPairs(pairs: readonly string[], form: string, fail: (problem: string) => Error): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of pairs) {
    const equals = pair.indexOf("=");
    if (equals <= 0) throw fail(`must be ${form}; got ${quote(pair)}`);
    const key = pair.slice(0, equals);
    if (key in labels) throw fail(`names ${quote(key)} twice`);
    labels[key] = pair.slice(equals + 1);
  }
  return labels;
}

export function checkLabels(labels: Record<string, string>, field: string): void {
  const keys = Object.keys(labels);
  if (keys.length > limits.labels) throw invalid(field, `has ${keys.length} entries; the maximum is ${limits.labels}`);
  for (const key of keys) {
    if (key.length === 0) throw invalid(field, "keys must not be empty");
    checkBytes(key, `${field}[${quote(key)}] key`, limits.labelKeyBytes);
    checkBytes(labels[key]!, `${field}[${quote(key)}]`, limits.labelValueBytes);
  }
}

export function checkFailure(failure: Failure, field: string): void {
  checkBytes(failure.type, `${field}.type`, limits.failureTypeBytes);
  checkBytes(failure.message, `${field}.message`, limits.failureMessageBytes);
  checkBytes(failure.stackTrace, `${field}.stack_trace`, limits.failureStackBytes);
  checkDuration(failure.retryAfter, `${field}.retry_after`, limits.durationMs);
}

export function checkCount(count: number, field: string, max: number): void {
  if (count > max) throw invalid(field, `has ${count} entries; the maximum is ${max}`);
}

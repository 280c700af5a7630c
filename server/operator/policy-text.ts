// A retry policy described for people, one way for the CLI and the console
// (which imports this file into its bundle, so it imports nothing itself).

/** A RetryPolicy's fields, from either a protobuf message or its JSON; a backoff left out is null. */
export interface PolicyFields {
  limit: number;
  unlimited: boolean;
  backoffMinMs: number | null;
  backoffMaxMs: number | null;
  coefficient: number;
  jitter: number;
  maxElapsedMs: number;
}

/**
 * "3 retries, after 0.25–1 s", "unlimited retries, each after 1–60 s
 * (random)", "6 retries, after 1 s × 2^(k−1), at most 30 s, jitter 0.5,
 * within 10m 00s". A backoff left out means what it means on the wire: 0, or
 * for an unlimited policy the default range [1 s, 60 s].
 */
export function describePolicy(policy: PolicyFields | undefined, duration: (ms: number) => string): string {
  if (!policy || (!policy.unlimited && policy.limit === 0)) return "no retries (at most once)";
  const { backoffMinMs, backoffMaxMs } = policy;
  const min = backoffMinMs !== null ? backoffMinMs / 1000 : policy.unlimited && backoffMaxMs === null ? 1 : 0;
  const max = backoffMaxMs !== null ? backoffMaxMs / 1000 : policy.unlimited && backoffMinMs === null ? 60 : min;
  const count = policy.unlimited ? "unlimited retries" : `${policy.limit} ${policy.limit === 1 ? "retry" : "retries"}`;
  let text: string;
  if (policy.coefficient !== 0 && min > 0) {
    text = `${count}, after ${min} s × ${policy.coefficient}^(k−1), at most ${max} s`;
  } else {
    const backoff = min === 0 && max === 0 ? "immediately" : min === max ? `after ${min} s` : `after ${min}–${max} s`;
    text = policy.unlimited ? `${count}, each ${backoff === "immediately" ? backoff : `${backoff} (random)`}` : `${count}, ${backoff}`;
  }
  if (policy.jitter > 0) text += `, jitter ${policy.jitter}`;
  if (policy.maxElapsedMs > 0) text += `, within ${duration(policy.maxElapsedMs)}`;
  return text;
}

// The retry math: pure functions of the policy, the failure number, a random
// source and the times they need, so that every schedule can be table-tested
// without a clock or a store.
import type { RetryPolicy } from "@reprise/wire";
import { durationToMs } from "./time.js";

/** A retry policy with every default filled in. Times are whole milliseconds. */
export interface ResolvedPolicy {
  /** Retries allowed after the first attempt; ignored when unlimited. */
  readonly limit: number;
  readonly unlimited: boolean;
  readonly backoffMinMs: number;
  readonly backoffMaxMs: number;
  /** 0: Coflux's rule (interpolated or uniform random); otherwise ≥ 1, exponential. */
  readonly coefficient: number;
  /** In [0, 1]: how far below its schedule a delay may be drawn. */
  readonly jitter: number;
  /** 0: no bound on when the last retry may start. */
  readonly maxElapsedMs: number;
}

/** Coflux's defaults for `retries=True` and `Retries(limit=N)` without backoff. */
export const DEFAULT_UNLIMITED_BACKOFF_MS = { min: 1000, max: 60_000 } as const;

/**
 * Fills in the wire defaults. Returns null when the policy allows no retries
 * (absent, or limit 0 and not unlimited): the at-most-once default.
 */
export function resolvePolicy(policy: RetryPolicy | undefined): ResolvedPolicy | null {
  if (policy === undefined || (!policy.unlimited && policy.limit === 0)) return null;
  const min = policy.backoffMin ? durationToMs(policy.backoffMin) : undefined;
  const max = policy.backoffMax ? durationToMs(policy.backoffMax) : undefined;
  const extras = {
    coefficient: policy.backoffCoefficient,
    jitter: policy.jitter,
    maxElapsedMs: policy.maxElapsed ? durationToMs(policy.maxElapsed) : 0,
  };
  if (policy.unlimited && min === undefined && max === undefined) {
    return { limit: 0, unlimited: true, backoffMinMs: DEFAULT_UNLIMITED_BACKOFF_MS.min, backoffMaxMs: DEFAULT_UNLIMITED_BACKOFF_MS.max, ...extras };
  }
  const backoffMinMs = min ?? 0;
  return { limit: policy.limit, unlimited: policy.unlimited, backoffMinMs, backoffMaxMs: max ?? backoffMinMs, ...extras };
}

/**
 * The delay before retry number `failureNumber` (the retry that follows the
 * k-th failure, abandonment or timeout, counting from 1), or null when no
 * retry is left. `random` is uniform in [0, 1).
 *
 * Coefficient 0, limited: min + (max - min) * (k - 1) / (N - 1), and min when N = 1.
 * Coefficient 0, unlimited: uniform over the whole milliseconds of [min, max].
 * Coefficient c ≥ 1: min(max, min * c^(k - 1)), limited or not.
 * Then jitter j: uniform over the whole milliseconds of [d * (1 - j), d].
 */
export function retryDelayMs(policy: ResolvedPolicy, failureNumber: number, random: () => number): number | null {
  if (!policy.unlimited && failureNumber > policy.limit) return null;
  const delay = scheduledDelayMs(policy, failureNumber, random);
  if (policy.jitter === 0 || delay === 0) return delay;
  const low = Math.ceil(delay * (1 - policy.jitter));
  return low + Math.floor(random() * (delay - low + 1));
}

function scheduledDelayMs(policy: ResolvedPolicy, k: number, random: () => number): number {
  const { backoffMinMs: min, backoffMaxMs: max, coefficient } = policy;
  if (coefficient !== 0) {
    // min * c^(k - 1) overflows to Infinity for a large k; 0 * Infinity is NaN.
    if (min === 0) return 0;
    return Math.min(max, Math.round(min * coefficient ** (k - 1)));
  }
  if (policy.unlimited) return min + Math.floor(random() * (max - min + 1));
  if (policy.limit === 1) return min;
  return Math.round(min + ((max - min) * (k - 1)) / (policy.limit - 1));
}

/** Numbers of the proto enum reprise.v1.RetryRule: which rule decided what followed an attempt. */
export const RetryRule = {
  none: 0,
  backoff: 1,
  retryAfter: 2,
  snooze: 3,
  budget: 4,
  maxElapsed: 5,
  limit: 6,
  nonRetryable: 7,
} as const;

/** How the logs, the CLI and the docs name each rule. */
export const RULE_NAMES: Record<number, string> = {
  [RetryRule.backoff]: "backoff",
  [RetryRule.retryAfter]: "retry_after",
  [RetryRule.snooze]: "snooze",
  [RetryRule.budget]: "budget",
  [RetryRule.maxElapsed]: "max_elapsed",
  [RetryRule.limit]: "limit",
  [RetryRule.nonRetryable]: "non_retryable",
};

/** What follows a failure, an abandonment or a timeout, before any retry budget. */
export type RetryPlan =
  | { retry: true; rule: typeof RetryRule.backoff | typeof RetryRule.retryAfter; dueAt: number }
  | { retry: false; rule: typeof RetryRule.limit | typeof RetryRule.nonRetryable | typeof RetryRule.maxElapsed };

/**
 * Decides whether a retry follows and when, from the policy in effect (null:
 * none), the failure's number k in the current run, and the times involved:
 * `now` (when the failure was recorded) and `runScheduledAt` (the first
 * attempt's earliest start, or the re-run), from which `max_elapsed` counts.
 */
export function planRetry(params: {
  policy: ResolvedPolicy | null;
  failureNumber: number;
  retryable: boolean;
  retryAfterMs: number;
  now: number;
  runScheduledAt: number;
  random: () => number;
}): RetryPlan {
  const { policy } = params;
  if (!params.retryable) return { retry: false, rule: RetryRule.nonRetryable };
  if (policy === null) return { retry: false, rule: RetryRule.limit };
  const computed = retryDelayMs(policy, params.failureNumber, params.random);
  if (computed === null) return { retry: false, rule: RetryRule.limit };
  const byRetryAfter = params.retryAfterMs > 0;
  const dueAt = params.now + (byRetryAfter ? params.retryAfterMs : computed);
  if (dueAt > latestRetryAt(policy, params.runScheduledAt)) return { retry: false, rule: RetryRule.maxElapsed };
  return { retry: true, rule: byRetryAfter ? RetryRule.retryAfter : RetryRule.backoff, dueAt };
}

/** The latest moment a retry may start under `max_elapsed` (Infinity when unbounded). */
export function latestRetryAt(policy: ResolvedPolicy, runScheduledAt: number): number {
  return policy.maxElapsedMs === 0 ? Infinity : runScheduledAt + policy.maxElapsedMs;
}

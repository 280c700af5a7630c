// The retry math: pure functions of the policy, the failure number and a random
// source, so that the whole Coflux table can be tested without a clock.
import type { RetryPolicy } from "@reprise/wire";
import { durationToMs } from "./time.js";

/** A retry policy with every default filled in. Times are whole milliseconds. */
export interface ResolvedPolicy {
  /** Retries allowed after the first attempt; ignored when unlimited. */
  readonly limit: number;
  readonly unlimited: boolean;
  readonly backoffMinMs: number;
  readonly backoffMaxMs: number;
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
  if (policy.unlimited && min === undefined && max === undefined) {
    return { limit: 0, unlimited: true, backoffMinMs: DEFAULT_UNLIMITED_BACKOFF_MS.min, backoffMaxMs: DEFAULT_UNLIMITED_BACKOFF_MS.max };
  }
  const backoffMinMs = min ?? 0;
  return { limit: policy.limit, unlimited: policy.unlimited, backoffMinMs, backoffMaxMs: max ?? backoffMinMs };
}

/**
 * The delay before retry number `failureNumber` (the retry that follows the
 * failure of attempt `failureNumber`, counting from 1), or null when no retry
 * is left.
 *
 * Limited: min + (max - min) * (k - 1) / (N - 1), and min when N = 1.
 * Unlimited: uniform over the whole milliseconds of [min, max].
 */
export function retryDelayMs(policy: ResolvedPolicy, failureNumber: number, random: () => number): number | null {
  const { backoffMinMs: min, backoffMaxMs: max } = policy;
  if (policy.unlimited) return min + Math.floor(random() * (max - min + 1));
  if (failureNumber > policy.limit) return null;
  if (policy.limit === 1) return min;
  return Math.round(min + ((max - min) * (failureNumber - 1)) / (policy.limit - 1));
}

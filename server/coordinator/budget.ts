// The retry budget: a token bucket per task, kept on the retries' own schedule.
// A pure function of the bucket's state, so that the stores only keep it and
// every node decides with the same arithmetic.
//
// The bucket is counted in due time, not in the time decisions are made: a
// thousand failures whose retries are all due ten minutes from now would
// otherwise each find the bucket as it is now, full, and all come back at once.
// So the bucket stands at the latest due time it has handed out (`at`); a retry
// due later first lets tokens accrue up to its due time, and a retry due
// earlier is counted at `at`, where the bucket already stands.

import type { BucketState, RetryBudgetRecord } from "../store/store.js";

export interface TokenTaken {
  /** When the retry may start: its due time, or later when the bucket deferred it. */
  dueAt: number;
  deferred: boolean;
  bucket: BucketState;
}

/**
 * Takes one token for a retry due at `dueAt`. When none is left, the retry is
 * deferred to the moment the next token accrues. Returns null, taking
 * nothing, when that moment falls after `notAfter` (the policy's max_elapsed).
 * A bucket never seen before (`bucket` undefined) is full.
 */
export function takeRetryToken(budget: RetryBudgetRecord, bucket: BucketState | undefined, dueAt: number, notAfter: number): TokenTaken | null {
  const at = bucket === undefined ? dueAt : Math.max(dueAt, bucket.at);
  const accrued = bucket === undefined ? budget.burst : bucket.tokens + ((at - bucket.at) * budget.perSecond) / 1000;
  const tokens = Math.min(budget.burst, accrued);
  if (tokens >= 1) return { dueAt, deferred: false, bucket: { tokens: tokens - 1, at } };
  const waitMs = Math.ceil(((1 - tokens) * 1000) / budget.perSecond);
  const deferredTo = at + waitMs;
  if (deferredTo > notAfter) return null;
  return { dueAt: deferredTo, deferred: true, bucket: { tokens: tokens + (waitMs * budget.perSecond) / 1000 - 1, at: deferredTo } };
}

// The retry budget's token bucket as a pure function, checked against a
// brute-force bucket that replays every booked start from the beginning.
import { describe, expect, test } from "vitest";
import { MAX_RUNS, takeRetryToken } from "../server/coordinator/budget.js";
import type { BucketState, RetryBudgetRecord } from "../server/store/store.js";
import { seededRandom } from "./fuzz/generate.js";

/** Whether a full bucket could hand out a token at every one of `starts`. */
function conformant(budget: RetryBudgetRecord, starts: number[]): boolean {
  const sorted = [...starts].sort((a, b) => a - b);
  let tokens = budget.burst;
  let at = sorted[0] ?? 0;
  for (const start of sorted) {
    tokens = Math.min(budget.burst, tokens + ((start - at) * budget.perSecond) / 1000);
    at = start;
    if (tokens < 1 - 1e-9) return false;
    tokens -= 1;
  }
  return true;
}

/** The earliest whole ms from `dueAt` on that a bucket which already booked `starts` can take. */
function bruteForceEarliest(budget: RetryBudgetRecord, starts: number[], dueAt: number): number {
  for (let at = dueAt; ; at++) if (conformant(budget, [...starts, at])) return at;
}

/** Takes tokens for retries due in `dues` order, each decided at `now`, and returns the starts. */
function take(budget: RetryBudgetRecord, requests: { now: number; dueAt: number }[], bucket?: BucketState): { starts: number[]; bucket?: BucketState } {
  const starts: number[] = [];
  for (const { now, dueAt } of requests) {
    const taken = takeRetryToken(budget, bucket, dueAt, Infinity, now)!;
    bucket = taken.bucket;
    starts.push(taken.dueAt);
  }
  return { starts, bucket };
}

describe("retry budget: the token bucket", () => {
  const budget = { perSecond: 2, burst: 2 };

  test("a bucket never used is full: burst retries go at their due time, then each waits for the next token, 1/rate apart", () => {
    expect(take(budget, Array.from({ length: 6 }, () => ({ now: 0, dueAt: 10_000 }))).starts).toEqual([10_000, 10_000, 10_500, 11_000, 11_500, 12_000]);
  });

  test("tokens accrue up to burst on the retries' schedule: a retry due later finds the tokens that accrued by its due time", () => {
    const empty: BucketState = { tokens: 0, at: 10_000, step: 500, runs: [] };
    expect(takeRetryToken(budget, empty, 10_250, Infinity, 0)).toMatchObject({ dueAt: 10_500, deferred: true });
    expect(takeRetryToken(budget, empty, 10_500, Infinity, 0)).toMatchObject({ dueAt: 10_500, deferred: false });
    // Never more than burst, however long the bucket rested: two go at once, the third waits.
    expect(take(budget, [1, 2, 3].map(() => ({ now: 0, dueAt: 1e9 })), empty).starts).toEqual([1e9, 1e9, 1e9 + 500]);
  });

  test("a retry due sooner than one booked far ahead starts at its own due time: the booked one keeps its token", () => {
    const one = { perSecond: 1, burst: 1 };
    // Due in an hour, then one due at once, then one due in a minute.
    expect(take(one, [{ now: 0, dueAt: 3_600_000 }, { now: 0, dueAt: 0 }, { now: 0, dueAt: 60_000 }]).starts).toEqual([3_600_000, 0, 60_000]);
    // A retry_after of 5 s, then three retries due at once: they start at 0, 1 and 2 s, not after it.
    expect(take(one, [{ now: 0, dueAt: 5000 }, ...[1, 2, 3].map(() => ({ now: 0, dueAt: 0 }))]).starts).toEqual([5000, 0, 1000, 2000]);
    // docs/retries.md's table: A due in an hour, B and C due at once, D due half a second before A.
    expect(take(one, [3_600_000, 0, 0, 3_599_500].map((dueAt) => ({ now: 0, dueAt }))).starts).toEqual([3_600_000, 0, 1000, 3_601_000]);
  });

  test("a retry that would take a token a later booking needs goes after that booking instead", () => {
    const one = { perSecond: 1, burst: 1 };
    // Booked at 10 s. A retry due at 9.5 s would leave the 10 s booking half a token: it goes at 11 s.
    expect(take(one, [{ now: 0, dueAt: 10_000 }, { now: 0, dueAt: 9500 }]).starts).toEqual([10_000, 11_000]);
    // Due at 9 s it fits exactly: a token is back by 10 s.
    expect(take(one, [{ now: 0, dueAt: 10_000 }, { now: 0, dueAt: 9000 }]).starts).toEqual([10_000, 9000]);
  });

  test("a retry due among the bookings of a run that each leave a token spare starts at its due time, between them", () => {
    const roomy = { perSecond: 2, burst: 3 };
    // Three bookings half a second apart, each finding three tokens.
    const run: BucketState = { tokens: 3, at: 10_000, step: 500, runs: [[10_000, 3]] };
    const taken = takeRetryToken(roomy, run, 10_200, Infinity, 0)!;
    expect(taken).toMatchObject({ dueAt: 10_200, deferred: false });
    expect(taken.bucket.runs).toEqual([[10_000, 1], [10_200, 1], [10_500, 2]]);
    expect(conformant(roomy, [10_000, 10_200, 10_500, 11_000])).toBe(true);
    // The same run finding only one token each has no room: a retry due there goes after it.
    expect(takeRetryToken(roomy, { ...run, tokens: 1 }, 10_200, Infinity, 0)!.dueAt).toBe(11_500);
    expect(bruteForceEarliest(roomy, [10_000, 10_500, 11_000], 10_200)).toBe(10_200);
  });

  test("a storm whose retries are due together ten minutes ahead is spread at the rate from there, and a retry due sooner still goes at its due time", () => {
    const storm = take(budget, Array.from({ length: 1000 }, () => ({ now: 0, dueAt: 600_000 })));
    expect(storm.starts.slice(0, 4)).toEqual([600_000, 600_000, 600_500, 601_000]);
    expect(storm.starts.at(-1)).toBe(600_000 + 998 * 500);
    // The storm is kept in a few runs, however many retries it holds.
    expect(storm.bucket!.runs.length).toBeLessThanOrEqual(3);
    expect(takeRetryToken(budget, storm.bucket, 60_000, Infinity, 0)).toMatchObject({ dueAt: 60_000, deferred: false });
    // A retry due inside the storm has no token there: it goes after the storm's last.
    expect(takeRetryToken(budget, storm.bucket, 700_000, Infinity, 0)!.dueAt).toBe(600_000 + 999 * 500);
  });

  test("a deferral past notAfter takes nothing and returns null", () => {
    const empty: BucketState = { tokens: 0, at: 10_000, step: 500, runs: [] };
    expect(takeRetryToken(budget, empty, 10_000, 10_499, 0)).toBeNull();
    expect(takeRetryToken(budget, empty, 10_000, 10_500, 0)).not.toBeNull();
    const far = take({ perSecond: 1, burst: 1 }, [{ now: 0, dueAt: 3_600_000 }]).bucket;
    // One booked an hour ahead does not end a retry due now whose max_elapsed is a minute away.
    expect(takeRetryToken({ perSecond: 1, burst: 1 }, far, 0, 60_000, 0)).toMatchObject({ dueAt: 0, deferred: false });
  });

  test("every retry starts at the earliest whole ms a brute-force bucket allows, whatever order the due times come in (200 random sequences)", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const random = seededRandom(seed);
      const rate = [1, 2, 4, 5, 10][Math.floor(random() * 5)]!;
      const budget = { perSecond: rate, burst: 1 + Math.floor(random() * 3) };
      const starts: number[] = [];
      let bucket: BucketState | undefined;
      let now = 0;
      for (let i = 0; i < 20; i++) {
        now += Math.floor(random() * 300);
        const dueAt = now + Math.floor(random() * (random() < 0.2 ? 8000 : 1500));
        const taken = takeRetryToken(budget, bucket, dueAt, Infinity, now)!;
        const expected = bruteForceEarliest(budget, starts, dueAt);
        if (taken.dueAt !== expected) throw new Error(`seed ${seed}, request ${i} (now ${now}, due ${dueAt}): started at ${taken.dueAt}, the earliest is ${expected}; booked before: ${starts.join(", ")}`);
        expect(taken.deferred).toBe(expected > dueAt);
        starts.push(taken.dueAt);
        bucket = taken.bucket;
      }
      expect(bucket!.runs.length).toBeLessThanOrEqual(MAX_RUNS);
    }
  });

  test(`beyond ${MAX_RUNS} runs booked ahead the earliest are folded in: retries may start later than they had to, never more than the budget allows`, () => {
    const random = seededRandom(7);
    const budget = { perSecond: 10, burst: 2 };
    // 500 retries due at random moments of the next ten minutes, decided at once.
    const { starts, bucket } = take(budget, Array.from({ length: 500 }, () => ({ now: 0, dueAt: Math.floor(random() * 600_000) })));
    expect(bucket!.runs.length).toBeLessThanOrEqual(MAX_RUNS);
    expect(conformant(budget, starts)).toBe(true);
    // A retry due before the folded bookings is counted where the bucket stands.
    expect(takeRetryToken(budget, bucket, 0, Infinity, 0)!.dueAt).toBeGreaterThanOrEqual(bucket!.at);
  });

  test("a bucket booked at another rate keeps its bookings as its level after them: the new rate starts from there", () => {
    const booked = take({ perSecond: 1, burst: 1 }, [{ now: 0, dueAt: 5000 }]).bucket!;
    // At 2 per second the bucket stands at 5 s with no token; the next accrues half a second later.
    expect(takeRetryToken({ perSecond: 2, burst: 1 }, booked, 0, Infinity, 0)).toMatchObject({ dueAt: 5500, deferred: true });
  });

  test("bookings in the past are folded into the level, so the bucket keeps only what is still ahead", () => {
    const one = { perSecond: 1, burst: 1 };
    const { bucket } = take(one, [1, 2, 3].map((s) => ({ now: 0, dueAt: s * 10_000 })));
    expect(bucket!.runs).toHaveLength(3);
    const later = takeRetryToken(one, bucket, 25_000, Infinity, 25_000)!;
    expect(later.bucket.runs).toEqual([[25_000, 1], [30_000, 1]]);
    expect(later.bucket.at).toBe(20_000);
  });
});

// The retry budget: a token bucket per task, kept on the retries' own schedule.
// A pure function of the bucket's state, so that the stores only keep it and
// every node decides with the same arithmetic.
//
// The bucket is counted in due time, not in the time decisions are made: a
// thousand failures whose retries are all due ten minutes from now would
// otherwise each find the bucket as it is now, full, and all come back at once.
// So every retry takes its token at the moment it is due, and the bucket
// remembers the retries it has booked ahead of now. A new retry starts at the
// earliest moment, from its due time on, where a token is there for it and
// taking it leaves every retry booked after it its own token: the set of
// booked starts, the new one included, never needs more than a full bucket
// and what accrues. Retries may come due in any order: a retry due at once is
// not held back by one booked an hour ahead.
//
// Bookings are kept as runs: a storm of deferred retries lands one token's
// time apart (`step`), and a run keeps them in two numbers however many they
// are. Bookings that are past are folded into the bucket's level; beyond
// MAX_RUNS runs the earliest are folded too, and a retry due before the
// bucket's time is then counted where the bucket stands. That is never more
// than the budget allows, only later than it had to be.

import type { BucketState, RetryBudgetRecord } from "../store/store.js";

/** The most runs of booked retries a bucket keeps one by one. */
export const MAX_RUNS = 64;

/** Rounding slack when levels and times are compared. */
const EPSILON = 1e-9;

export interface TokenTaken {
  /** When the retry may start, in whole ms: its due time, or later when the bucket deferred it. */
  dueAt: number;
  deferred: boolean;
  bucket: BucketState;
}

/** A run of booked retries: `count` starts, `step` ms apart from `start`. */
type Run = BucketState["runs"][number];

interface Level {
  /** Tokens at `at`, after every booking up to `at` took its own. */
  tokens: number;
  at: number;
  /** Time (ms) the bucket has stood full since the level the walk started from. */
  full: number;
}

/**
 * Takes one token for a retry due at `dueAt`, decided at `now`. When no token
 * can be taken then, the retry is deferred to the moment one can. Returns
 * null, taking nothing, when that moment falls after `notAfter` (the policy's
 * max_elapsed). A bucket never seen before (`bucket` undefined) is full.
 */
export function takeRetryToken(budget: RetryBudgetRecord, bucket: BucketState | undefined, dueAt: number, notAfter: number, now: number): TokenTaken | null {
  const rate = budget.perSecond / 1000;
  const step = 1000 / budget.perSecond;
  const cap = budget.burst;
  // A bucket booked at another rate keeps its bookings only as its level after them.
  const sameRate = bucket !== undefined && bucket.step === step;
  let level: Level = bucket === undefined ? { tokens: cap, at: Math.min(now, dueAt), full: 0 } : { tokens: bucket.tokens, at: bucket.at, full: 0 };
  let runs: Run[] = bucket === undefined ? [] : bucket.runs.map(([start, count]) => [start, count]);
  if (!sameRate) ({ level, runs } = foldRuns(level, runs, runs.length, bucket?.step ?? step, rate, cap));
  ({ level, runs } = foldPast(level, runs, now, step, rate, cap));

  const from = Math.max(dueAt, level.at);
  const found = earliestStart(level, runs, from, step, rate, cap);
  const start = Math.max(dueAt, Math.ceil(found.at - EPSILON));
  if (start > notAfter) return null;
  insert(runs, found, step);
  ({ level, runs } = foldRuns(level, runs, runs.length - MAX_RUNS, step, rate, cap));
  return { dueAt: start, deferred: start > dueAt, bucket: { tokens: level.tokens, at: level.at, step, runs } };
}

/** The level at `at`, from `level`, before any booking at `at` takes its token. */
function levelAt(level: Level, at: number, rate: number, cap: number): Level {
  const fullFrom = level.at + Math.max(0, cap - level.tokens) / rate;
  return { tokens: Math.min(cap, level.tokens + (at - level.at) * rate), at, full: level.full + Math.max(0, at - Math.max(level.at, fullFrom)) };
}

/**
 * The level after the first `count` bookings of a run `step` apart, the first
 * finding `before` at `start`. Between two bookings a token's worth accrues
 * when `step` is the bucket's own, so each booking of such a run finds the
 * same level; at another rate the level drifts by the difference.
 */
function afterRun(before: Level, start: number, count: number, step: number, rate: number, cap: number): Level {
  const last = start + (count - 1) * step;
  const drift = step * rate - 1;
  const finds = Math.min(cap, before.tokens + (count - 1) * drift);
  return { tokens: finds - 1, at: last, full: before.full };
}

/** Folds the first `n` runs into the level. */
function foldRuns(level: Level, runs: Run[], n: number, step: number, rate: number, cap: number): { level: Level; runs: Run[] } {
  for (const [start, count] of runs.slice(0, Math.max(0, n))) level = afterRun(levelAt(level, start, rate, cap), start, count, step, rate, cap);
  return { level: { ...level, full: 0 }, runs: runs.slice(Math.max(0, n)) };
}

/** Folds the bookings at or before `now`: no retry decided from now on can start before them. */
function foldPast(level: Level, runs: Run[], now: number, step: number, rate: number, cap: number): { level: Level; runs: Run[] } {
  while (runs.length > 0 && runs[0]![0] <= now) {
    const [start, count] = runs[0]!;
    const past = Math.min(count, Math.floor((now - start) / step) + 1);
    level = afterRun(levelAt(level, start, rate, cap), start, past, step, rate, cap);
    if (past === count) runs = runs.slice(1);
    else runs = [[start + past * step, count - past], ...runs.slice(1)];
  }
  return { level: { ...level, full: 0 }, runs };
}

interface Found {
  /** The exact moment the token is taken. */
  at: number;
  /** How many runs lie wholly before it, and how many of the next run's bookings. */
  runsBefore: number;
  within: number;
}

/**
 * The earliest moment from `from` on where a token is there and taking it
 * leaves every later booking its own.
 *
 * Taking a token at t leaves the bucket one token lower after t, until the
 * time the bucket would have stood full makes the token up again. So a booking
 * at s keeps its token exactly when the level it found (v) was at least 2, or
 * the bucket stood full for (2 - v)/rate between t and s. With `full(u)` the
 * time the bucket has stood full up to u, that is `full(t) <= full(s) +
 * (v - 2)/rate` for every booking s after t: one bound, the least of these
 * over the later bookings, which the walk takes from the end.
 */
function earliestStart(level: Level, runs: Run[], from: number, step: number, rate: number, cap: number): Found {
  // The level each run's first booking finds; every booking of a run finds the same.
  const finds: Level[] = [];
  let walk = level;
  for (const [start, count] of runs) {
    const before = levelAt(walk, start, rate, cap);
    finds.push(before);
    walk = afterRun(before, start, count, step, rate, cap);
  }
  const bound: number[] = new Array(runs.length + 1).fill(Infinity);
  for (let i = runs.length - 1; i >= 0; i--) bound[i] = Math.min(bound[i + 1]!, finds[i]!.full + (finds[i]!.tokens - 2) / rate);

  let after = level;
  for (let i = 0; i <= runs.length; i++) {
    // Between the last booking before run i and run i's first.
    const at = Math.max(from, after.at, after.tokens >= 1 - EPSILON ? after.at : after.at + (1 - after.tokens) / rate);
    const next = i < runs.length ? runs[i]![0] : Infinity;
    if (at <= next + EPSILON && levelAt(after, at, rate, cap).full <= bound[i]! + EPSILON) return { at, runsBefore: i, within: 0 };
    if (i === runs.length) break;
    // Among run i's own bookings: each finds finds[i], so there is room only when that leaves a token spare.
    const [start, count] = runs[i]!;
    const last = start + (count - 1) * step;
    const inside = Math.max(from, start);
    if (count > 1 && inside < last && finds[i]!.tokens >= 2 - EPSILON && finds[i]!.full <= bound[i + 1]! + EPSILON) {
      return { at: inside, runsBefore: i, within: Math.min(count - 1, Math.floor((inside - start) / step + EPSILON) + 1) };
    }
    after = afterRun(finds[i]!, start, count, step, rate, cap);
  }
  throw new Error("a token bucket always has room after its last booking");
}

/** Books `found` among the runs: it extends the run before it when it lands one step after it. */
function insert(runs: Run[], found: Found, step: number): void {
  const { at, runsBefore: i, within } = found;
  if (within > 0) {
    const [start, count] = runs[i]!;
    runs.splice(i, 1, [start, within], [at, 1], [start + within * step, count - within]);
    return;
  }
  const before = runs[i - 1];
  if (before !== undefined && Math.abs(before[0] + before[1] * step - at) < 1e-6) before[1] += 1;
  else runs.splice(i, 0, [at, 1]);
}

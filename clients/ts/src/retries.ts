// The `retries` forms of a task (docs/semantics.md) and their wire
// RetryPolicy. Backoffs are always sent explicitly: on the wire an absent
// backoff means 0, except for an unlimited policy, where it means [1 s, 60 s],
// and being explicit keeps the client's meaning independent of that rule.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RetryPolicySchema } from "@reprise/wire";
import { MAX_DURATION_SECONDS, MAX_ELAPSED_SECONDS, durationFromSeconds } from "./time.js";

/** Coflux's default backoff range, in seconds. */
export const DEFAULT_BACKOFF: readonly [number, number] = [1, 60];

/** The coordinator's limits (docs/limits.md): retries of one policy, and a retry budget's rate and burst. */
const MAX_LIMIT = 10_000;
const MAX_BUDGET = 1_000_000;

/** Any error class, matched with `instanceof`. */
export type ErrorClass = abstract new (...args: never[]) => unknown;

/**
 * Which errors are retried: a class, a list of classes, or a predicate. Errors
 * it rejects fail the execution at once without using up retries.
 */
export type When = ErrorClass | readonly ErrorClass[] | ((error: unknown) => boolean);

export interface RetriesInit {
  /** How many retries may follow the first attempt; `null` means unlimited. */
  limit: number | null;
  /**
   * [min, max] in seconds. Limited: retry k waits min + (max − min)·(k−1)/(N−1).
   * Unlimited: each wait is uniform random in [min, max]. Default [1, 60].
   */
  backoff?: readonly [number, number];
  /**
   * Exponential backoff: retry k waits min(max, min × coefficient^(k−1)),
   * limited or unlimited. At least 1; default 0, Coflux's rule above.
   */
  coefficient?: number;
  /** Draws each computed wait d uniformly from [d × (1 − jitter), d]. A fraction from 0 (default) to 1. */
  jitter?: number;
  /** Seconds: schedule no retry that would start later than this after the first attempt's scheduled start. Default: no bound. */
  maxElapsed?: number;
  /** Which errors are retried; default all. Evaluated in the worker at the throw. */
  when?: When;
}

/**
 * Coflux's `cf.Retries(limit=..., backoff=(min, max), when=...)`, and beyond it
 * an exponential coefficient, jitter and a bound on the time spent retrying.
 */
export class Retries {
  readonly limit: number | null;
  readonly backoff: readonly [number, number];
  readonly coefficient: number;
  readonly jitter: number;
  /** Seconds; 0: no bound. */
  readonly maxElapsed: number;
  readonly when: When | undefined;

  constructor(init: RetriesInit) {
    if (init.limit !== null && (!Number.isInteger(init.limit) || init.limit < 0 || init.limit > MAX_LIMIT)) {
      throw new RangeError(`Retries.limit: must be a whole number from 0 to ${MAX_LIMIT}, or null (unlimited); got ${init.limit}`);
    }
    const [min, max] = init.backoff ?? DEFAULT_BACKOFF;
    if (!(min <= max)) throw new RangeError(`Retries.backoff: min must not exceed max; got [${min}, ${max}]`);
    const { coefficient = 0, jitter = 0, maxElapsed = 0 } = init;
    if (!Number.isFinite(coefficient) || (coefficient !== 0 && coefficient < 1)) {
      throw new RangeError(`Retries.coefficient: must be a finite number of at least 1 (or 0 for Coflux's rule); got ${coefficient}`);
    }
    if (!Number.isFinite(jitter) || jitter < 0 || jitter > 1) throw new RangeError(`Retries.jitter: must be a fraction from 0 to 1; got ${jitter}`);
    durationFromSeconds(maxElapsed, "Retries.maxElapsed");
    this.limit = init.limit;
    this.backoff = [min, max];
    this.coefficient = coefficient;
    this.jitter = jitter;
    this.maxElapsed = maxElapsed;
    this.when = init.when;
  }
}

/**
 * A task's retry option:
 * - absent, `0` or `false`: at most once;
 * - `N`: N retries, each right after the failure;
 * - `true`: unlimited, each delay uniform random in [1 s, 60 s];
 * - `new Retries({...})`: see Retries.
 */
export type RetriesOption = number | boolean | Retries;

export type RetryPolicyInit = MessageInitShape<typeof RetryPolicySchema>;

/**
 * The wire policy of a `retries` option, or undefined for at most once.
 * Durations past the coordinator's limits throw, with `name` in the message.
 */
export function retryPolicy(retries: RetriesOption | undefined, name = "retries"): RetryPolicyInit | undefined {
  if (retries === undefined || retries === false || retries === 0) return undefined;
  if (retries === true) return { unlimited: true, ...wireBackoff(DEFAULT_BACKOFF, name) };
  if (typeof retries === "number") {
    if (!Number.isInteger(retries) || retries < 0 || retries > MAX_LIMIT) {
      throw new RangeError(`${name}: must be a whole number from 0 to ${MAX_LIMIT}, a boolean or a Retries; got ${retries}`);
    }
    return { limit: retries, ...wireBackoff([0, 0], name) };
  }
  if (retries.limit === 0) return undefined;
  return {
    ...(retries.limit === null ? { unlimited: true } : { limit: retries.limit }),
    ...wireBackoff(retries.backoff, name),
    backoffCoefficient: retries.coefficient,
    jitter: retries.jitter,
    maxElapsed: retries.maxElapsed > 0 ? durationFromSeconds(retries.maxElapsed, `${name}.maxElapsed`, MAX_ELAPSED_SECONDS) : undefined,
  };
}

function wireBackoff([min, max]: readonly [number, number], name: string): Pick<RetryPolicyInit, "backoffMin" | "backoffMax"> {
  return {
    backoffMin: durationFromSeconds(min, `${name}.backoff[0]`, MAX_DURATION_SECONDS),
    backoffMax: durationFromSeconds(max, `${name}.backoff[1]`, MAX_DURATION_SECONDS),
  };
}

/** The wire RetryBudget of a task's `retryBudget` option, validated. */
export function wireBudget(budget: { perSecond: number; burst?: number }, name: string): { retriesPerSecond: number; burst: number } {
  const { perSecond, burst = 1 } = budget;
  if (!Number.isFinite(perSecond) || perSecond <= 0 || perSecond > MAX_BUDGET) {
    throw new RangeError(`${name}.perSecond: must be a positive number of at most ${MAX_BUDGET}; got ${perSecond}`);
  }
  // 0 means 1, as on the wire and in the Python and Go clients.
  if (!Number.isInteger(burst) || burst < 0 || burst > MAX_BUDGET) throw new RangeError(`${name}.burst: must be a whole number from 0 to ${MAX_BUDGET}; got ${burst}`);
  return { retriesPerSecond: perSecond, burst };
}

/**
 * Whether `error` should be retried under `when`. Classes and predicates are
 * both functions, so a function counts as a class when it is Error, extends
 * Error, or is written with `class`; any other function is a predicate.
 * A throwing predicate propagates: the caller turns it into a non-retryable
 * failure.
 */
export function shouldRetry(when: When | undefined, error: unknown): boolean {
  if (when === undefined) return true;
  if (Array.isArray(when)) return (when as readonly ErrorClass[]).some((cls) => error instanceof cls);
  if (isErrorClass(when)) return error instanceof when;
  return Boolean((when as (error: unknown) => boolean)(error));
}

function isErrorClass(fn: When): fn is ErrorClass {
  if (typeof fn !== "function") return false;
  const prototype: unknown = fn.prototype;
  if (prototype === undefined) return false;
  return fn === Error || prototype instanceof Error || /^class[\s{]/.test(Function.prototype.toString.call(fn));
}

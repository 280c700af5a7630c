// The `retries` forms of a task (docs/semantics.md) and their wire
// RetryPolicy. Backoffs are always sent explicitly: on the wire an absent
// backoff means 0, except for an unlimited policy, where it means [1 s, 60 s],
// and being explicit keeps the client's meaning independent of that rule.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { RetryPolicySchema } from "@reprise/wire";
import { durationFromSeconds } from "./time.js";

/** Coflux's default backoff range, in seconds. */
export const DEFAULT_BACKOFF: readonly [number, number] = [1, 60];

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
  /** Which errors are retried; default all. Evaluated in the worker at the throw. */
  when?: When;
}

/** Coflux's `cf.Retries(limit=..., backoff=(min, max), when=...)`. */
export class Retries {
  readonly limit: number | null;
  readonly backoff: readonly [number, number];
  readonly when: When | undefined;

  constructor(init: RetriesInit) {
    if (init.limit !== null && (!Number.isInteger(init.limit) || init.limit < 0)) {
      throw new RangeError(`Retries.limit: must be a whole number >= 0 or null (unlimited); got ${init.limit}`);
    }
    const [min, max] = init.backoff ?? DEFAULT_BACKOFF;
    if (!(min <= max)) throw new RangeError(`Retries.backoff: min must not exceed max; got [${min}, ${max}]`);
    this.limit = init.limit;
    this.backoff = [min, max];
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

/** The wire policy of a `retries` option, or undefined for at most once. */
export function retryPolicy(retries: RetriesOption | undefined, name = "retries"): RetryPolicyInit | undefined {
  if (retries === undefined || retries === false || retries === 0) return undefined;
  if (retries === true) return unlimited(DEFAULT_BACKOFF, name);
  if (typeof retries === "number") {
    if (!Number.isInteger(retries) || retries < 0) throw new RangeError(`${name}: must be a whole number >= 0, a boolean or a Retries; got ${retries}`);
    return limited(retries, [0, 0], name);
  }
  if (retries.limit === null) return unlimited(retries.backoff, name);
  if (retries.limit === 0) return undefined;
  return limited(retries.limit, retries.backoff, name);
}

function limited(limit: number, [min, max]: readonly [number, number], name: string): RetryPolicyInit {
  return { limit, backoffMin: durationFromSeconds(min, `${name}.backoff[0]`), backoffMax: durationFromSeconds(max, `${name}.backoff[1]`) };
}

function unlimited([min, max]: readonly [number, number], name: string): RetryPolicyInit {
  return { unlimited: true, backoffMin: durationFromSeconds(min, `${name}.backoff[0]`), backoffMax: durationFromSeconds(max, `${name}.backoff[1]`) };
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

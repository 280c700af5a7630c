// The retry math as a pure function: the Coflux table, without a clock.
import { create } from "@bufbuild/protobuf";
import { RetryPolicySchema } from "@reprise/wire";
import { describe, expect, test } from "vitest";
import { RetryRule, planRetry, resolvePolicy, retryDelayMs } from "../server/coordinator/policy.js";
import { seconds } from "./helpers.js";

const policy = (init: Parameters<typeof create<typeof RetryPolicySchema>>[1]) => resolvePolicy(create(RetryPolicySchema, init));
const noRandom = () => {
  throw new Error("limited policies must not use randomness");
};

describe("retry policy", () => {
  test("no policy, limit 0, or limit 0 without unlimited means no retries (at most once)", () => {
    expect(resolvePolicy(undefined)).toBeNull();
    expect(policy({})).toBeNull();
    expect(policy({ limit: 0, backoffMin: seconds(5), backoffMax: seconds(10) })).toBeNull();
  });

  test("retries=N retries N times with backoff [0, 0]: each retry starts right after the failure", () => {
    const p = policy({ limit: 2 })!;
    expect([1, 2].map((k) => retryDelayMs(p, k, noRandom))).toEqual([0, 0]);
    expect(retryDelayMs(p, 3, noRandom)).toBeNull();
  });

  test("retries=true is unlimited with a uniform random delay in [1 s, 60 s]", () => {
    const p = policy({ unlimited: true })!;
    expect(p).toEqual({ limit: 0, unlimited: true, backoffMinMs: 1000, backoffMaxMs: 60_000, coefficient: 0, jitter: 0, maxElapsedMs: 0 });
    expect(retryDelayMs(p, 1, () => 0)).toBe(1000);
    expect(retryDelayMs(p, 1000, () => 0.999_999_999)).toBe(60_000);
    expect(retryDelayMs(p, 7, () => 0.5)).toBe(30_500);
  });

  test("limit N with backoff [min, max] waits min + (max - min)(k - 1)/(N - 1) before retry k", () => {
    const p = policy({ limit: 5, backoffMin: seconds(300), backoffMax: seconds(600) })!;
    expect([1, 2, 3, 4, 5].map((k) => retryDelayMs(p, k, noRandom))).toEqual([300_000, 375_000, 450_000, 525_000, 600_000]);
    expect(retryDelayMs(p, 6, noRandom)).toBeNull();
  });

  test("the Coflux worked example: limit 5, backoff (300, 600) starts attempts at t+0, 300, 675, 1125, 1650, 2250", () => {
    const p = policy({ limit: 5, backoffMin: seconds(300), backoffMax: seconds(600) })!;
    const starts = [0];
    for (let k = 1; k <= 5; k++) starts.push(starts[k - 1]! + retryDelayMs(p, k, noRandom)! / 1000);
    expect(starts).toEqual([0, 300, 675, 1125, 1650, 2250]);
  });

  test("limit 1 with a backoff range waits min before its one retry", () => {
    const p = policy({ limit: 1, backoffMin: seconds(10), backoffMax: seconds(20) })!;
    expect(retryDelayMs(p, 1, noRandom)).toBe(10_000);
    expect(retryDelayMs(p, 2, noRandom)).toBeNull();
  });

  test("limit 2 with backoff (300, 300) waits five minutes before each retry", () => {
    const p = policy({ limit: 2, backoffMin: seconds(300), backoffMax: seconds(300) })!;
    expect([1, 2].map((k) => retryDelayMs(p, k, noRandom))).toEqual([300_000, 300_000]);
  });

  test("unlimited with backoff [min, max] draws each delay uniformly from [min, max]", () => {
    const p = policy({ unlimited: true, backoffMin: seconds(10), backoffMax: seconds(300) })!;
    expect(retryDelayMs(p, 1, () => 0)).toBe(10_000);
    expect(retryDelayMs(p, 2, () => 0.999_999_999)).toBe(300_000);
    let seed = 1;
    const lcg = () => ((seed = (seed * 48_271) % 2_147_483_647) / 2_147_483_647);
    const delays = Array.from({ length: 2000 }, (_, i) => retryDelayMs(p, i + 1, lcg)!);
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(10_000);
    expect(Math.max(...delays)).toBeLessThanOrEqual(300_000);
    const mean = delays.reduce((a, b) => a + b, 0) / delays.length;
    expect(Math.abs(mean - 155_000)).toBeLessThan(10_000);
  });

  test("delays are whole milliseconds, rounded", () => {
    const p = policy({ limit: 4, backoffMin: seconds(0), backoffMax: seconds(1) })!;
    expect([1, 2, 3, 4].map((k) => retryDelayMs(p, k, noRandom))).toEqual([0, 333, 667, 1000]);
    const fine = policy({ limit: 1, backoffMin: { seconds: 0n, nanos: 1_500_000 }, backoffMax: { seconds: 0n, nanos: 1_500_000 } })!;
    expect(retryDelayMs(fine, 1, noRandom)).toBe(2);
  });

  test("an absent backoff_max equals backoff_min", () => {
    expect(policy({ limit: 3, backoffMin: seconds(7) })).toMatchObject({ backoffMinMs: 7000, backoffMaxMs: 7000 });
    expect(policy({ unlimited: true, backoffMin: seconds(90) })).toMatchObject({ backoffMinMs: 90_000, backoffMaxMs: 90_000 });
  });
});

describe("retry control beyond Coflux: the pure math", () => {
  const never = () => {
    throw new Error("this policy must not draw");
  };

  test.each([
    // [limit or unlimited, min s, max s, coefficient, delays of retries 1.. in s]
    [5, 1, 30, 2, [1, 2, 4, 8, 16]],
    [6, 1, 30, 2, [1, 2, 4, 8, 16, 30]],
    [4, 10, 1000, 10, [10, 100, 1000, 1000]],
    [3, 5, 5, 1, [5, 5, 5]],
    ["unlimited", 2, 100, 3, [2, 6, 18, 54, 100, 100, 100]],
  ] as const)("limit %s, backoff [%s s, %s s], coefficient %s waits min(max, min × c^(k−1)): %j", (limit, min, max, coefficient, delays) => {
    const p = policy({
      ...(limit === "unlimited" ? { unlimited: true } : { limit }),
      backoffMin: seconds(min),
      backoffMax: seconds(max),
      backoffCoefficient: coefficient,
    })!;
    expect(delays.map((_, i) => retryDelayMs(p, i + 1, never))).toEqual(delays.map((d) => d * 1000));
    if (limit !== "unlimited") expect(retryDelayMs(p, limit + 1, never)).toBeNull();
  });

  test("an exponential delay stays at backoff_max however large k grows, and is 0 when backoff_min is 0", () => {
    expect(retryDelayMs(policy({ unlimited: true, backoffMin: seconds(1), backoffMax: seconds(60), backoffCoefficient: 2 })!, 10_000, never)).toBe(60_000);
    expect(retryDelayMs(policy({ unlimited: true, backoffMax: seconds(60), backoffCoefficient: 2 })!, 10_000, never)).toBe(0);
  });

  test("jitter j draws the computed delay d uniformly from the whole milliseconds of [d × (1 − j), d], for every form", () => {
    const forms = [
      policy({ limit: 3, backoffMin: seconds(10), backoffMax: seconds(20), jitter: 0.5 })!, // linear: 10, 15, 20 s
      policy({ limit: 3, backoffMin: seconds(10), backoffMax: seconds(40), backoffCoefficient: 2, jitter: 0.5 })!, // 10, 20, 40 s
    ];
    const scheduled = [
      [10_000, 15_000, 20_000],
      [10_000, 20_000, 40_000],
    ];
    forms.forEach((p, f) => {
      scheduled[f]!.forEach((d, i) => {
        expect(retryDelayMs(p, i + 1, () => 0)).toBe(d / 2);
        expect(retryDelayMs(p, i + 1, () => 0.999_999_999)).toBe(d);
      });
    });
    // Full jitter: anywhere from 0 to the schedule.
    const full = policy({ limit: 1, backoffMin: seconds(8), jitter: 1 })!;
    expect(retryDelayMs(full, 1, () => 0)).toBe(0);
    expect(retryDelayMs(full, 1, () => 0.5)).toBe(4000);
    // Unlimited random with jitter draws twice: the Coflux delay, then the jitter.
    const draws = [0.5, 0];
    const random = policy({ unlimited: true, backoffMin: seconds(10), backoffMax: seconds(20), jitter: 0.1 })!;
    expect(retryDelayMs(random, 1, () => draws.shift()!)).toBe(13_500);
  });

  test("planRetry ends at max_elapsed: a retry whose start would fall past run start + max_elapsed is not scheduled, one exactly at the bound is", () => {
    const p = resolvePolicy(create(RetryPolicySchema, { limit: 10, backoffMin: seconds(10), maxElapsed: seconds(30) }))!;
    const plan = (now: number, retryAfterMs = 0) => planRetry({ policy: p, failureNumber: 1, retryable: true, retryAfterMs, now, runScheduledAt: 1000, random: never });
    expect(plan(21_000)).toEqual({ retry: true, rule: RetryRule.backoff, dueAt: 31_000 });
    expect(plan(21_001)).toEqual({ retry: false, rule: RetryRule.maxElapsed });
    expect(plan(1000, 30_000)).toEqual({ retry: true, rule: RetryRule.retryAfter, dueAt: 31_000 });
    expect(plan(1000, 30_001)).toEqual({ retry: false, rule: RetryRule.maxElapsed });
  });

  test("planRetry names the rule that ends an execution: non_retryable before limit, and limit for no policy or no retry left", () => {
    const p = resolvePolicy(create(RetryPolicySchema, { limit: 1 }))!;
    const base = { retryAfterMs: 0, now: 0, runScheduledAt: 0, random: never };
    expect(planRetry({ ...base, policy: p, failureNumber: 1, retryable: false })).toEqual({ retry: false, rule: RetryRule.nonRetryable });
    expect(planRetry({ ...base, policy: null, failureNumber: 1, retryable: true })).toEqual({ retry: false, rule: RetryRule.limit });
    expect(planRetry({ ...base, policy: p, failureNumber: 2, retryable: true })).toEqual({ retry: false, rule: RetryRule.limit });
  });
});

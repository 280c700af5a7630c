// The retry math as a pure function: the Coflux table, without a clock.
import { create } from "@bufbuild/protobuf";
import { RetryPolicySchema } from "@reprise/wire";
import { describe, expect, test } from "vitest";
import { resolvePolicy, retryDelayMs } from "../server/coordinator/policy.js";
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

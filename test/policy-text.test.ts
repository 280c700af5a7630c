// A retry policy in words (server/operator/policy-text.ts), which the CLI
// writes and the console shows; test/console.test.ts checks the console's.
import { create } from "@bufbuild/protobuf";
import { RetryPolicySchema } from "@reprise/wire";
import { describe, expect, test } from "vitest";
import { describePolicy as cliDescribe } from "../server/operator/commands.js";
import { seconds } from "./helpers.js";

describe("a retry policy in words", () => {
  const cases: [string, Parameters<typeof create<typeof RetryPolicySchema>>[1], string][] = [
    ["none", undefined, "no retries (at most once)"],
    ["retries=N", { limit: 3 }, "3 retries, immediately"],
    ["a range", { limit: 3, backoffMin: { nanos: 250_000_000 }, backoffMax: seconds(1) }, "3 retries, after 0.25–1 s"],
    // Left out on the wire, an unlimited policy's backoffs are [1 s, 60 s], not 0.
    ["unlimited, backoffs left out", { unlimited: true }, "unlimited retries, each after 1–60 s (random)"],
    [
      "exponential with jitter and max_elapsed",
      { limit: 6, backoffMin: seconds(1), backoffMax: seconds(30), backoffCoefficient: 2, jitter: 0.5, maxElapsed: seconds(600) },
      "6 retries, after 1 s × 2^(k−1), at most 30 s, jitter 0.5, within 10m 00s",
    ],
  ];

  test.each(cases)("%s, with the wire's defaults for what is left out", (_name, message, words) => {
    expect(cliDescribe(message === undefined ? undefined : create(RetryPolicySchema, message))).toBe(words);
  });
});

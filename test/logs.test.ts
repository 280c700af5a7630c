// The coordinator's log lines: JSON, with states by name.
import { PassThrough } from "node:stream";
import { afterEach, describe, expect, test } from "vitest";
import { jsonLogger } from "../server/operator/log.js";
import { FakeClock, startTestCoordinator } from "./helpers.js";
import type { TestCoordinator } from "./helpers.js";
import { fail, leaseNow, submit } from "./wire-helpers.js";

let c: TestCoordinator | undefined;

afterEach(async () => {
  await c?.close();
  c = undefined;
});

describe("logs", () => {
  test("lifecycle lines name states (failed, abandoned, timed_out), never their enum numbers", async () => {
    const lines: Record<string, unknown>[] = [];
    const stream = new PassThrough();
    stream.on("data", (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
    });
    c = await startTestCoordinator({ clock: new FakeClock(), log: jsonLogger("info", stream) });
    await submit(c, "flaky", { retryPolicy: { limit: 1 } });
    await fail(c, (await leaseNow(c, ["flaky"]))[0]!);
    await fail(c, (await leaseNow(c, ["flaky"]))[0]!);
    await new Promise((resolve) => setImmediate(resolve));
    const retry = lines.find((line) => line.msg === "retry scheduled");
    const ended = lines.find((line) => line.msg === "execution ended");
    expect(retry).toMatchObject({ level: "info", task: "flaky", attempt: 1, attempt_state: "failed" });
    expect(ended).toMatchObject({ level: "info", task: "flaky", attempt: 2, state: "failed" });
  });
});

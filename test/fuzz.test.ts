// Fuzzing every RPC: `npm test` runs a short version; `npm run test:fuzz` runs
// 10,000 requests per RPC (REPRISE_FUZZ_CASES) and prints the tally.
// REPRISE_FUZZ_SEED replays a run; REPRISE_FUZZ_ONLY=WatchExecution,Submit
// limits it to some RPCs.
import { join } from "node:path";
import { ExecutionState } from "@reprise/wire";
import { describe, expect, test } from "vitest";
import { tempDir } from "./helpers.js";
import { fuzzCoordinator } from "./fuzz/run.js";
import { spawnCoordinator } from "./process-helpers.js";
import { fail, get, leaseNow, submit, succeed } from "./wire-helpers.js";

const CASES = Number(process.env.REPRISE_FUZZ_CASES ?? 300);
const SEED = Number(process.env.REPRISE_FUZZ_SEED ?? Date.now() % 2 ** 31);

describe("fuzzing", () => {
  test(
    "generated and undecodable requests to every RPC never crash the coordinator, never get UNKNOWN or INTERNAL, keep memory bounded, and a valid workload afterwards behaves exactly",
    async () => {
      const c = await spawnCoordinator(join(tempDir(), "reprise.db"));
      try {
        const report = await fuzzCoordinator({
          address: c.address,
          pid: c.child.pid!,
          casesPerRpc: CASES,
          seed: SEED,
          onProgress: (done, total) => {
            if (CASES >= 1000 && done % 5000 === 0) process.stderr.write(`fuzz: ${done}/${total} requests\n`);
          },
        });
        const total = Object.values(report.cases).reduce((a, b) => a + b, 0);
        process.stderr.write(
          `fuzz: seed ${report.seed}, ${total} requests, peak RSS ${report.peakRssMb.toFixed(0)} MB, violations ${report.violations.length}` +
            (report.firstUnavailable ? `, first UNAVAILABLE after ${report.firstUnavailable.after} requests (${report.firstUnavailable.method}: ${report.firstUnavailable.details})` : "") +
            "\n" +
            Object.entries(report.codes)
              .map(([method, codes]) => `  ${method.padEnd(16)} ${report.cases[method]} cases: ${Object.entries(codes).map(([k, v]) => `${k} ${v}`).join(", ")}`)
              .join("\n") +
            "\n",
        );
        expect(report.violations).toEqual([]);
        // The coordinator must keep serving: UNAVAILABLE would mean a connection it broke.
        expect(report.firstUnavailable).toBeUndefined();
        expect(c.child.exitCode).toBeNull();
        expect(report.peakRssMb).toBeLessThan(512);
        for (const method of Object.keys(report.cases)) expect(report.cases[method]).toBe(CASES);

        // A valid workload afterwards behaves exactly.
        const execution = await submit(c, "after_fuzz", { retryPolicy: { limit: 1 } });
        const [first] = await leaseNow(c, ["after_fuzz"]);
        expect((await fail(c, first!)).willRetry).toBe(true);
        const [second] = await leaseNow(c, ["after_fuzz"]);
        expect((await succeed(c, second!)).accepted).toBe(true);
        const done = await get(c, execution.id);
        expect(done.state).toBe(ExecutionState.SUCCEEDED);
        expect(done.attempts).toHaveLength(2);
      } finally {
        c.closeClients();
        c.child.kill("SIGTERM");
        await c.exited;
      }
    },
    Math.max(60_000, CASES * 40),
  );
});

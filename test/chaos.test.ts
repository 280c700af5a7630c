// The chaos run: `npm test` runs about 15 s of it; `npm run test:chaos` runs
// REPRISE_CHAOS_SECONDS (60 by default there) and prints the figures.
import { describe, expect, test } from "vitest";
import { runChaos } from "./chaos/run.js";

const SECONDS = Number(process.env.REPRISE_CHAOS_SECONDS ?? 15);

describe("chaos", () => {
  test(
    "under worker and coordinator kill -9s every execution ends, no limit is exceeded, no at-most-once task runs twice, no two attempts overlap, no stale outcome is accepted, delays follow the policy and every waiter sees the stored end",
    async () => {
      const report = await runChaos({ seconds: SECONDS, log: (line) => process.stderr.write(`${line}\n`) });
      process.stderr.write(
        `chaos: ${report.seconds.toFixed(0)} s; ${report.acknowledged}/${report.submitted} submits acknowledged; ${report.executions} executions, ${report.attempts} attempts; ` +
          `${report.cancellations} cancellations; ${report.workerKills} worker kills; ${report.coordinatorRestarts} coordinator restarts; ` +
          `final states ${JSON.stringify(report.byState)}; violations ${report.violations.length}\n` +
          report.violations.slice(0, 20).map((v) => `  ${v}\n`).join(""),
      );
      expect(report.violations).toEqual([]);
      expect(report.coordinatorRestarts).toBeGreaterThanOrEqual(3);
      expect(report.workerKills).toBeGreaterThan(0);
      expect(report.executions).toBeGreaterThan(SECONDS * 10);
    },
    (SECONDS + 180) * 1000,
  );
});

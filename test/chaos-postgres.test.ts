// The chaos run on a cluster: three `reprise serve` nodes on one PostgreSQL
// database, callers, waiters and workers spread over them, worker and node
// kill -9s, and PostgreSQL itself stopped for a few seconds in the middle.
// `npm test` runs about 15 s of it; `npm run test:chaos:postgres` runs
// REPRISE_CHAOS_SECONDS (60 by default there) and prints the figures.
import { describe, expect, test } from "vitest";
import { runChaos } from "./chaos/run.js";
import { sleep } from "./cluster-helpers.js";
import { postgresAvailable, startPostgres } from "./postgres-server.js";

const SECONDS = Number(process.env.REPRISE_CHAOS_SECONDS ?? 15);
const POSTGRES_DOWN_MS = 3000;
const PG_RESTART = "postgres restart";

describe.skipIf(process.env.REPRISE_TEST_POSTGRES === "off" || !postgresAvailable())("chaos on a PostgreSQL cluster", () => {
  test(
    "across three nodes, under worker and node kill -9s and a PostgreSQL restart, every acknowledged execution ends once, no at-most-once task runs twice, no two attempts overlap, every expired lease is abandoned once, delays follow the policy and every watch moves forward and ends once",
    async () => {
      // A private server: the run stops and starts it.
      const server = await startPostgres();
      try {
        const report = await runChaos({
          seconds: SECONDS,
          db: await server.createDatabase("chaos"),
          nodes: 3,
          coordinatorRestarts: Math.max(3, Math.round(SECONDS / 15)),
          rate: 45,
          workerKillEveryMs: [1000, 2000],
          watchRate: 0.1,
          faults: [
            {
              at: 0.5,
              name: PG_RESTART,
              async inject() {
                await server.stopServer();
                await sleep(POSTGRES_DOWN_MS);
                await server.startServer();
              },
            },
          ],
          log: (line) => process.stderr.write(`${line}\n`),
        });
        process.stderr.write(
          `chaos (postgres, 3 nodes): ${report.seconds.toFixed(0)} s; ${report.acknowledged}/${report.submitted} submits acknowledged (${report.resubmits} resubmits); ` +
            `${report.executions} executions, ${report.attempts} attempts; ${report.cancellations} cancellations; ${report.workerKills} worker kills; ` +
            `${report.coordinatorRestarts} node kills; ${report.faults[PG_RESTART] ?? 0} PG restarts; ${report.watches} watches; ` +
            `failed calls ${JSON.stringify(report.callErrors)}; final states ${JSON.stringify(report.byState)}; violations ${report.violations.length}\n` +
            report.violations.slice(0, 20).map((v) => `  ${v}\n`).join(""),
        );
        expect(report.violations).toEqual([]);
        // While a node or the database is down, calls fail with UNAVAILABLE, never INTERNAL or UNKNOWN.
        expect(Object.keys(report.callErrors).filter((code) => code === "INTERNAL" || code === "UNKNOWN")).toEqual([]);
        expect(report.coordinatorRestarts).toBeGreaterThanOrEqual(3);
        expect(report.faults[PG_RESTART]).toBe(1);
        expect(report.workerKills).toBeGreaterThanOrEqual(Math.max(3, Math.floor(SECONDS / 3)));
        expect(report.acknowledged).toBe(report.submitted);
        expect(report.executions).toBeGreaterThan(SECONDS * 10);
        expect(report.watches).toBeGreaterThan(0);
      } finally {
        await server.close();
      }
    },
    (SECONDS + 240) * 1000,
  );
});

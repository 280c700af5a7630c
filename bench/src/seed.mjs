// W5's database: `count` executions of the task "bench", each of which has
// failed its first attempt and waits for a retry a day later. It is built once
// through the public API (SubmitBatch, LeaseAttempts, ReportOutcomes) on a
// coordinator of its own, then copied for each repetition.
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { now, progress } from "./common.mjs";
import { clientModule } from "./paths.mjs";
import { startCoordinator } from "./systems/reprise.mjs";

const { ExecutionService, WorkerService, createServiceClient } = await import(clientModule);
const BATCH = 1000;
const DAY = { seconds: 86_400n, nanos: 0 };

export async function buildPendingRetries(workDir, count) {
  mkdirSync(workDir, { recursive: true });
  const db = join(workDir, `seed-${count}.db`);
  for (const suffix of ["", "-wal", "-shm"]) rmSync(db + suffix, { force: true });
  const coordinator = await startCoordinator({ db });
  const executions = createServiceClient(ExecutionService, coordinator.address);
  const workers = createServiceClient(WorkerService, coordinator.address);
  const started = now();
  try {
    const retryPolicy = { limit: 1, backoffMin: DAY, backoffMax: DAY };
    let failed = 0;
    for (let start = 0; start < count; start += BATCH) {
      const size = Math.min(BATCH, count - start);
      const submissions = [];
      for (let i = 0; i < size; i++) {
        submissions.push({ task: "bench", retryPolicy, arguments: { data: Buffer.from(`{"i":${start + i}}`), contentType: "application/json" } });
      }
      await executions.submitBatch({ submissions });
      // Lease what was just submitted and fail it, so that it waits for its retry.
      for (let tries = 0; failed < start + size && tries < 100; tries++) {
        const { attempts } = await workers.leaseAttempts({ workerId: "bench-seeder", tasks: ["bench"], maxAttempts: BATCH });
        if (attempts.length === 0) continue;
        const { receipts } = await workers.reportOutcomes({
          outcomes: attempts.map((a) => ({ leaseToken: a.leaseToken, outcome: { case: "failure", value: { type: "Seeded", message: "wait a day" } } })),
        });
        failed += receipts.filter((r) => r.accepted && r.willRetry).length;
      }
      if ((start / BATCH) % 100 === 99) {
        progress(`W5 seed: ${failed.toLocaleString("en")} executions waiting for a retry (${((now() - started) / 1000).toFixed(0)} s)`);
      }
    }
    if (failed !== count) throw new Error(`W5 seed: ${failed} of ${count} executions are waiting for a retry`);
    return { db, seconds: (now() - started) / 1000 };
  } finally {
    executions.raw.close();
    workers.raw.close();
    await coordinator.stop();
  }
}

// graphile-worker on the harness side: WorkerUtils.addJobs in batches for bulk
// enqueue, addJob one at a time (it NOTIFYs the listening worker). Its worker
// does not await the completion write before its events fire, so the end is
// confirmed in the database: no job left.
import { makeWorkerUtils } from "graphile-worker";
import pg from "pg";
import { chunks, now, sleep } from "../common.mjs";

const BATCH = 1000;

export class GraphileSystem {
  name = "graphile";
  label = "graphile-worker";
  /** failJob sets run_at = greatest(now(), run_at) + exp(least(attempts, 10)) seconds, fixed in SQL. */
  minRetryDelay = "e¹ s ≈ 2.718 s before the first retry (fixed exponential backoff, not configurable)";

  constructor({ pgUrl }) {
    if (!pgUrl) throw new Error("BENCH_PG_URL is not set: run bench/run.sh");
    this.pgUrl = pgUrl;
  }

  async prepare() {
    if (!this.utils) {
      this.utils = await makeWorkerUtils({ connectionString: this.pgUrl });
      await this.utils.migrate();
      this.pool = new pg.Pool({ connectionString: this.pgUrl, max: 1 });
    }
    const { rows } = await this.pool.query("select count(*)::int as n from graphile_worker._private_jobs");
    if (rows[0].n !== 0) await this.pool.query("delete from graphile_worker._private_jobs");
  }

  workerConfig() {
    // pollInterval stays at its default (2 s): new jobs arrive through LISTEN/NOTIFY,
    // and only jobs that become due later (retries) wait for a poll.
    return { pgUrl: this.pgUrl, queue: "bench" };
  }

  retryDelayMs(workload) {
    return workload === "W4" ? Math.E * 1000 : 0;
  }

  maxAttempts(workload) {
    return workload === "W2" || workload === "W4" ? 2 : 1;
  }

  async enqueueBulk(count, workload) {
    const maxAttempts = this.maxAttempts(workload);
    for (const [start, end] of chunks(count, BATCH)) {
      const specs = [];
      for (let i = start; i < end; i++) specs.push({ identifier: "bench", payload: { i }, maxAttempts });
      await this.utils.addJobs(specs);
    }
  }

  async submitOne(args, workload) {
    await this.utils.addJob("bench", args, { maxAttempts: this.maxAttempts(workload) });
  }

  async confirmDone() {
    const deadline = now() + 30_000;
    while (now() < deadline) {
      const { rows } = await this.pool.query("select exists (select 1 from graphile_worker._private_jobs) as left");
      if (!rows[0].left) return;
      await sleep(2);
    }
    throw new Error("graphile-worker jobs were left in the database");
  }

  async finish() {}

  async close() {
    await this.utils?.release();
    await this.pool?.end();
  }
}

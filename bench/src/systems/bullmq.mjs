// BullMQ on the harness side: one queue per run on the private Redis, bulk
// enqueue with addBulk, one at a time with add. Its Worker emits "completed"
// only after the job is moved to completed in Redis, so that is the end.
import { Queue } from "bullmq";
import { chunks } from "../common.mjs";

const BATCH = 1000;

export class BullmqSystem {
  name = "bullmq";
  label = "BullMQ";
  /** attempts: 2 with no backoff moves a failed job straight back to wait. */
  minRetryDelay = "0 ms (`attempts: 2` without `backoff`)";

  constructor({ redisPort }) {
    if (!redisPort) throw new Error("BENCH_REDIS_PORT is not set: run bench/run.sh");
    this.connection = { host: "127.0.0.1", port: redisPort };
    this.runs = 0;
  }

  async prepare(workload) {
    this.queueName = `bench-${workload}-${process.pid}-${++this.runs}`;
    this.queue = new Queue(this.queueName, { connection: this.connection });
    await this.queue.waitUntilReady();
  }

  workerConfig() {
    return { redisPort: this.connection.port, queue: this.queueName };
  }

  retryDelayMs(workload) {
    return workload === "W4" ? 1000 : 0;
  }

  jobOptions(workload) {
    // Completed jobs are removed, as graphile-worker deletes them and as BullMQ's
    // docs advise for queues that see many jobs.
    const base = { removeOnComplete: true, removeOnFail: true };
    if (workload === "W2") return { ...base, attempts: 2 };
    if (workload === "W4") return { ...base, attempts: 2, backoff: { type: "fixed", delay: 1000 } };
    return base;
  }

  async enqueueBulk(count, workload) {
    const opts = this.jobOptions(workload);
    for (const [start, end] of chunks(count, BATCH)) {
      const jobs = [];
      for (let i = start; i < end; i++) jobs.push({ name: "bench", data: { i }, opts });
      await this.queue.addBulk(jobs);
    }
  }

  async submitOne(args, workload) {
    await this.queue.add("bench", args, this.jobOptions(workload));
  }

  async confirmDone() {}

  async finish() {
    if (!this.queue) return;
    await this.queue.obliterate({ force: true }).catch(() => {});
    await this.queue.close();
    this.queue = undefined;
  }
}

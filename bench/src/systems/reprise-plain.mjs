// "Any language": Reprise driven through its protos alone (plain-protos.mjs),
// the way an independent client would: unary Submit calls, 64 in flight for
// the throughput workloads and one at a time for W3 and W4, and a worker whose
// loop is the one docs/clients.md describes (worker.mjs, startPlain). One
// coordinator serves every workload of the run, as it would in service: each
// workload meets what the earlier ones left in its history.
import { join } from "node:path";
import { now, sleep } from "../common.mjs";
import { jsonPayload, plainExecutions } from "../plain-protos.mjs";
import { removeDatabase } from "../history.mjs";
import { startCoordinator } from "./reprise.mjs";

/** Unary Submits in flight at once while enqueueing in bulk. */
const IN_FLIGHT = 64;

export class ReprisePlainSystem {
  name = "reprise-plain";
  label = "Reprise, plain proto-loader client";
  minRetryDelay = "0 ms (`limit: 1`, backoff [0, 0])";

  constructor({ workDir, nodeArgs = [] }) {
    this.db = join(workDir, `reprise-plain-${process.pid}.db`);
    this.nodeArgs = nodeArgs;
  }

  /** The one coordinator of the run, started at the first workload. */
  async prepare(workload) {
    this.workload = workload;
    if (!this.coordinator) {
      this.coordinator = await this.serve();
      this.executions = plainExecutions(this.coordinator.address);
    }
  }

  /** Starts what the client talks to: { address, memory(), stop() }. */
  async serve() {
    removeDatabase(this.db);
    return startCoordinator({ db: this.db, nodeArgs: this.nodeArgs });
  }

  /** Each workload has its task, declared by its worker with its own policy. */
  task(workload) {
    return `plain-${workload}`;
  }

  workerConfig(workload) {
    return { address: this.coordinator.address, queue: this.task(workload) };
  }

  retryDelayMs(workload) {
    return workload === "W4" ? 1000 : 0;
  }

  async enqueueBulk(count, workload) {
    let next = 0;
    const submitter = async () => {
      while (next < count) {
        const i = next++;
        await this.executions.submit({ task: this.task(workload), arguments: jsonPayload({ i }) });
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, submitter));
  }

  async submitOne(args, workload) {
    await this.executions.submit({ task: this.task(workload), arguments: jsonPayload(args) });
  }

  async confirmDone({ lastId }) {
    const deadline = now() + 30_000;
    while (now() < deadline) {
      const { execution } = await this.executions.getExecution({ executionId: lastId });
      if (execution.state === "EXECUTION_STATE_SUCCEEDED") return;
      await sleep(1);
    }
    throw new Error(`execution ${lastId} did not reach SUCCEEDED`);
  }

  /** The coordinator keeps serving: the next workload uses it. */
  async finish() {
    if (this.coordinator) this.lastPeak = this.coordinator.memory().peakRssMiB;
  }

  /** At the end of the run. */
  async close() {
    this.executions?.raw.close();
    await this.coordinator?.stop();
    this.coordinator = undefined;
    removeDatabase(this.db);
  }
}

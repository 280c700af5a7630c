// A chaos worker process: `node dist/test/chaos/worker.js ADDRESS WORKER_ID`.
// Each task sleeps and fails as its arguments say, so the load generator decides
// the mix. The policies are the ones the chaos checks expect (policies.ts).
import { NonRetryableError, Worker } from "@reprise/client";
import type { TaskContext } from "@reprise/client";
import { CHAOS_TASKS } from "./policies.js";
import type { Behaviour } from "./policies.js";

const [address, workerId] = process.argv.slice(2);
if (!address || !workerId) {
  process.stderr.write("usage: worker.js ADDRESS WORKER_ID\n");
  process.exit(2);
}

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: (message: string) => process.stderr.write(`${workerId}: ${message}\n`) };
const worker = new Worker({
  address,
  workerId,
  concurrency: 16,
  leaseDuration: 1,
  pollWait: 5,
  stopGrace: 2,
  reconnect: { minDelay: 0.05, maxDelay: 0.5 },
  logger: quiet,
});

async function behave(args: Behaviour, ctx: TaskContext): Promise<{ attempt: number }> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, args.sleepMs);
    ctx.signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
  const roll = Math.random();
  if (roll < args.nonRetryableRate) throw new NonRetryableError("permanent failure");
  if (roll < args.nonRetryableRate + args.failRate) throw new Error(`flaky failure on attempt ${ctx.attempt}`);
  return { attempt: ctx.attempt };
}

for (const [name, task] of Object.entries(CHAOS_TASKS)) worker.task(name, task.options, behave);

process.once("SIGTERM", () => {
  worker.stop({ grace: 1 }).finally(() => process.exit(0));
});
worker.start().then(
  () => process.stdout.write("ready\n"),
  (error: unknown) => {
    process.stderr.write(`${workerId}: ${String(error)}\n`);
    process.exit(1);
  },
);

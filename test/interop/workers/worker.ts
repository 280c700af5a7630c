// The TypeScript worker of the cross-language interop suite
// (test/interop/interop.test.ts). It uses only @reprise/client. `npm run
// build` compiles it to dist/test/interop/workers/worker.js.
//
//   node dist/test/interop/workers/worker.js --address HOST:PORT --worker-id ID
//
// Tasks:
//   ts.echo   answers { lang: "typescript", attempt, echo: <the arguments> };
//   ts.flaky  2 retries 5 s apart, but attempt 1 throws (after 200 ms) a
//             RetryAfterError of 0.3 s, which replaces that backoff; attempt 2
//             answers like ts.echo.
//
// Every attempt prints "started TASK EXECUTION_ID attempt N" on stdout first.
import { parseArgs } from "node:util";
import { Retries, RetryAfterError, Worker } from "@reprise/client";
import type { TaskContext } from "@reprise/client";

const { values } = parseArgs({
  options: { address: { type: "string" }, "worker-id": { type: "string" } },
});
if (!values.address || !values["worker-id"]) throw new Error("usage: worker.js --address HOST:PORT --worker-id ID");

const worker = new Worker({
  address: values.address,
  workerId: values["worker-id"],
  leaseDuration: 1,
  pollWait: 5,
  stopGrace: 5,
});

function started(ctx: TaskContext): void {
  console.log(`started ${ctx.task} ${ctx.executionId} attempt ${ctx.attempt}`);
}

worker.task("ts.echo", (args: unknown, ctx) => {
  started(ctx);
  return { lang: "typescript", attempt: ctx.attempt, echo: args };
});

worker.task("ts.flaky", { retries: new Retries({ limit: 2, backoff: [5, 5] }) }, async (args: unknown, ctx) => {
  started(ctx);
  if (ctx.attempt === 1) {
    // Long enough for a caller that watches right after its submit to see this attempt RUNNING.
    await new Promise((resolve) => setTimeout(resolve, 200));
    throw new RetryAfterError(0.3, "HTTP 503 (simulated, attempt 1)");
  }
  return { lang: "typescript", attempt: ctx.attempt, echo: args };
});

await worker.start();
console.log(`worker ${values["worker-id"]}: serving ts.echo, ts.flaky`);

let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    void worker.stop().then(() => console.log("worker: stopped"));
  });
}

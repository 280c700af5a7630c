// Every snippet of Coflux's "Automatic retries" page as a Reprise task.
//
//   node dist/examples/ts/worker.js [host:port]
//
// Each handler pretends to call something flaky: its arguments say how many
// attempts fail (`failAttempts`) and with what, so the caller can watch the
// retries happen.
import { Retries, Worker } from "@reprise/client";
import type { TaskContext } from "@reprise/client";
import { ConnectionError, HttpError, TimeoutError } from "./errors.js";

export interface FlakyArgs {
  /** How many attempts fail before one succeeds. Default 0. */
  failAttempts?: number;
  /** What the failing attempts throw. Default "connection". */
  error?: "connection" | "timeout" | "http" | "bug";
  /** The HTTP status of an "http" error. Default 503. */
  status?: number;
}

function flaky(label: string) {
  return async (args: FlakyArgs, ctx: TaskContext) => {
    console.log(`${label}: execution ${ctx.executionId}, attempt ${ctx.attempt}`);
    if (ctx.attempt <= (args.failAttempts ?? 0)) {
      switch (args.error ?? "connection") {
        case "connection":
          throw new ConnectionError(`${label}: connection reset (simulated, attempt ${ctx.attempt})`);
        case "timeout":
          throw new TimeoutError(`${label}: timed out (simulated, attempt ${ctx.attempt})`);
        case "http":
          throw new HttpError(args.status ?? 503, `${label}: HTTP ${args.status ?? 503} (simulated, attempt ${ctx.attempt})`);
        case "bug":
          throw new TypeError(`${label}: a bug, not worth retrying (simulated)`);
      }
    }
    return { task: label, attempt: ctx.attempt, ok: true };
  };
}

const address = process.argv[2] ?? "127.0.0.1:50051";
const worker = new Worker({ address, concurrency: 16 });

// @cf.task(retries=2): at most three attempts, each retry right after the failure.
worker.task("submit_reports", { retries: 2 }, flaky("submit_reports"));

// @cf.task(retries=cf.Retries(limit=2, backoff=(300, 300))): five minutes between attempts.
worker.task("send_notification_fixed", { retries: new Retries({ limit: 2, backoff: [300, 300] }) }, flaky("send_notification_fixed"));

// @cf.task(retries=cf.Retries(limit=5, backoff=(300, 600))): attempts at t+0, 300, 675, 1125, 1650, 2250.
worker.task("send_notification", { retries: new Retries({ limit: 5, backoff: [300, 600] }) }, flaky("send_notification"));

// @cf.task(retries=True): unlimited, each delay random in [1 s, 60 s].
worker.task("critical_task", { retries: true }, flaky("critical_task"));

// @cf.task(retries=cf.Retries(limit=None, backoff=(10, 300))): unlimited, each delay random in [10 s, 300 s].
worker.task("critical_task_custom", { retries: new Retries({ limit: null, backoff: [10, 300] }) }, flaky("critical_task_custom"));

// @cf.task(retries=cf.Retries(limit=3, when=ConnectionError)): other errors fail at once.
worker.task("call_api", { retries: new Retries({ limit: 3, when: ConnectionError }) }, flaky("call_api"));

// @cf.task(retries=cf.Retries(limit=3, when=(ConnectionError, TimeoutError))).
worker.task("call_api_any", { retries: new Retries({ limit: 3, when: [ConnectionError, TimeoutError] }) }, flaky("call_api_any"));

// @cf.task(retries=cf.Retries(limit=5, backoff=(1, 30), when=lambda e: getattr(e, "status_code", 0) >= 500)):
// 5xx responses are retried, 4xx fail at once. Each attempt may run 60 s.
worker.task(
  "call_api_5xx",
  {
    retries: new Retries({ limit: 5, backoff: [1, 30], when: (e) => e instanceof HttpError && e.statusCode >= 500 }),
    timeout: 60,
  },
  flaky("call_api_5xx"),
);

await worker.start();
console.log(`worker ${worker.workerId} running 8 tasks against ${address}; Ctrl-C to stop`);

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.log(`${signal}: finishing in-flight attempts`);
    worker.stop().then(() => process.exit(0));
  });
}

// Submits one execution of call_api_5xx whose first attempt fails with a
// simulated HTTP 503, then follows it: the failure, the retry after its 1 s
// backoff, and the result.
//
//   node dist/examples/ts/caller.js [host:port]
import { Client, ExecutionError, ExecutionState } from "@reprise/client";
import type { Execution } from "@reprise/client";
import type { FlakyArgs } from "./worker.js";

const address = process.argv[2] ?? "127.0.0.1:50051";
const client = new Client({ address });

const ms = (t: { seconds: bigint; nanos: number } | undefined) => (t ? Number(t.seconds) * 1000 + Math.round(t.nanos / 1e6) : 0);

function describe(execution: Execution): string {
  const attempt = execution.attempts.at(-1);
  switch (execution.state) {
    case ExecutionState.PENDING:
      if (!attempt) return "pending: waiting for a worker";
      return `attempt ${attempt.number} failed (${attempt.failure?.type}: ${attempt.failure?.message}); retry in ${((ms(execution.nextAttemptAt) - ms(attempt.finishedAt)) / 1000).toFixed(1)} s`;
    case ExecutionState.RUNNING:
      return `attempt ${attempt?.number} running on ${attempt?.workerId}`;
    default:
      return `ended ${ExecutionState[execution.state]}`;
  }
}

const args: FlakyArgs = { failAttempts: 1, error: "http", status: 503 };
const handle = await client.submit<{ task: string; attempt: number; ok: boolean }>("call_api_5xx", args);
console.log(`submitted call_api_5xx as execution ${handle.id}`);

const started = Date.now();
for await (const snapshot of handle.watch()) {
  console.log(`+${((Date.now() - started) / 1000).toFixed(1)} s  ${describe(snapshot)}`);
}

try {
  const result = await handle.result();
  console.log("result:", result);
} catch (error) {
  if (!(error instanceof ExecutionError)) throw error;
  console.log(`failed for good: ${error.failureType}: ${error.failureMessage}`);
  process.exitCode = 1;
} finally {
  client.close();
}

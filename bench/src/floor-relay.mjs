// The floor under every "any language" figure: a process that speaks
// Reprise's protocol through grpc-js, as the coordinator does, but keeps no
// store and applies no rule. A Submit is handed straight to a waiting
// LeaseAttempts (or queued for the next one), every outcome is accepted, and
// GetExecution says SUCCEEDED once the outcome came. The "reprise-floor"
// system (systems/reprise-floor.mjs) drives it with the plain client and
// worker of "reprise-plain", unchanged, so the two rows differ only in what
// the coordinator does between receiving a call and answering it.
//
// Forked by the harness; it tells its port over IPC and ends with its parent.
import * as grpc from "@grpc/grpc-js";
import { v1 } from "./plain-protos.mjs";

const queued = [];
const waiting = [];
const reported = new Set();
let next = 0;

const ms = (duration) => Number(duration?.seconds ?? 0) * 1000 + Math.floor((duration?.nanos ?? 0) / 1e6);

function answer(poller, attempts) {
  clearTimeout(poller.timer);
  poller.callback(null, { attempts });
}

const server = new grpc.Server();
server.addService(v1.ExecutionService.service, {
  submit(call, callback) {
    const id = `floor-${++next}`;
    const attempt = { executionId: id, task: call.request.task, attempt: 1, leaseToken: Buffer.from(id), arguments: call.request.arguments };
    const poller = waiting.shift();
    // The worker first, as it is what stands between submitting and starting.
    if (poller) answer(poller, [attempt]);
    else queued.push(attempt);
    callback(null, { execution: { id, task: call.request.task, state: "EXECUTION_STATE_PENDING" }, existing: false });
  },
  getExecution(call, callback) {
    const id = call.request.executionId;
    callback(null, { execution: { id, state: reported.has(id) ? "EXECUTION_STATE_SUCCEEDED" : "EXECUTION_STATE_PENDING" } });
  },
});
server.addService(v1.WorkerService.service, {
  declareTasks(_call, callback) {
    callback(null, {});
  },
  leaseAttempts(call, callback) {
    const max = Math.max(1, call.request.maxAttempts);
    if (queued.length > 0) return callback(null, { attempts: queued.splice(0, max) });
    const poller = { callback };
    poller.timer = setTimeout(() => {
      waiting.splice(waiting.indexOf(poller), 1);
      callback(null, { attempts: [] });
    }, ms(call.request.wait));
    waiting.push(poller);
  },
  reportOutcomes(call, callback) {
    for (const outcome of call.request.outcomes) reported.add(Buffer.from(outcome.leaseToken).toString());
    callback(null, { receipts: call.request.outcomes.map(() => ({ accepted: true })) });
  },
});
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  process.send({ port });
});
process.on("disconnect", () => process.exit(0));

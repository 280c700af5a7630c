// Reprise's services as any language's gRPC tooling sees them: the .proto
// files loaded with @grpc/proto-loader, no @reprise/client. The "reprise-plain"
// system and its worker (worker.mjs) speak only this, as a client written from
// docs/clients.md would.
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { repriseRoot } from "./paths.mjs";

const definition = protoLoader.loadSync(["reprise/v1/execution_service.proto", "reprise/v1/worker_service.proto"], {
  includeDirs: [join(repriseRoot, "proto")],
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
/** The generated stubs and service definitions of package reprise.v1. */
export const v1 = grpc.loadPackageDefinition(definition).reprise.v1;

/** Promise-returning unary calls of one service stub; `raw` is the stub. */
function promised(stub) {
  const calls = { raw: stub };
  for (const name of Object.keys(Object.getPrototypeOf(stub))) {
    if (typeof stub[name] !== "function" || name.startsWith("_") || !/^[a-z]/.test(name)) continue;
    calls[name] = (request, deadlineMs = 30_000) =>
      new Promise((resolve, reject) => stub[name](request, { deadline: new Date(Date.now() + deadlineMs) }, (error, reply) => (error ? reject(error) : resolve(reply))));
  }
  return calls;
}

export function plainExecutions(address) {
  return promised(new v1.ExecutionService(address, grpc.credentials.createInsecure()));
}

export function plainWorkers(address) {
  return promised(new v1.WorkerService(address, grpc.credentials.createInsecure()));
}

/** A google.protobuf.Duration of `ms` milliseconds, as proto-loader takes it. */
export function duration(ms) {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

/** A JSON Payload. */
export function jsonPayload(value) {
  return { data: Buffer.from(JSON.stringify(value)), contentType: "application/json" };
}

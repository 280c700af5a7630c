// Sends generated requests to every RPC of a running coordinator and tallies
// the status codes. UNKNOWN (an unhandled exception) and INTERNAL (a bug in
// the coordinator) are violations; every other code is a clear answer.
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { toBinary } from "@bufbuild/protobuf";
import type { DescMethod } from "@bufbuild/protobuf";
import { ExecutionService, WorkerService } from "@reprise/client/wire";
import { garbage, randomMessage, seededRandom } from "./generate.js";

export interface FuzzReport {
  seed: number;
  cases: Record<string, number>;
  codes: Record<string, Record<string, number>>;
  violations: string[];
  peakRssMb: number;
}

const METHODS: DescMethod[] = [...ExecutionService.methods, ...WorkerService.methods];
const identity = (b: Buffer) => b;

function rssMb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) / 1024 : 0;
}

function call(client: grpc.Client, method: DescMethod, body: Buffer): Promise<grpc.status> {
  const path = `/${method.parent.typeName}/${method.name}`;
  const deadline = new Date(Date.now() + 2000);
  if (method.methodKind === "server_streaming") {
    return new Promise((resolve) => {
      const stream = client.makeServerStreamRequest(path, identity, identity, body, new grpc.Metadata(), { deadline });
      stream.on("data", () => stream.cancel());
      stream.on("error", (error: grpc.ServiceError) => resolve(error.code));
      stream.on("status", (status: grpc.StatusObject) => resolve(status.code));
    });
  }
  return new Promise((resolve) =>
    client.makeUnaryRequest(path, identity, identity, body, new grpc.Metadata(), { deadline }, (error) => resolve(error ? error.code : grpc.status.OK)),
  );
}

/** Fuzzes `address`, `casesPerRpc` requests per RPC (a tenth of them raw garbage), `concurrency` in flight. */
export async function fuzzCoordinator(options: {
  address: string;
  pid: number;
  casesPerRpc: number;
  seed: number;
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}): Promise<FuzzReport> {
  const random = seededRandom(options.seed);
  const client = new grpc.Client(options.address, grpc.credentials.createInsecure(), {
    "grpc.max_send_message_length": -1,
    "grpc.max_receive_message_length": -1,
  });
  const report: FuzzReport = { seed: options.seed, cases: {}, codes: {}, violations: [], peakRssMb: 0 };
  const work: { method: DescMethod; body: Buffer }[] = [];
  for (const method of METHODS) {
    for (let i = 0; i < options.casesPerRpc; i++) {
      const body = random() < 0.1 ? garbage(random) : Buffer.from(toBinary(method.input, randomMessage(random, method.input)));
      work.push({ method, body });
    }
  }
  // Interleave the RPCs so that state made by one (executions, leases) meets the others.
  for (let i = work.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [work[i], work[j]] = [work[j]!, work[i]!];
  }
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < work.length) {
      const { method, body } = work[next++]!;
      const code = await call(client, method, body);
      const name = method.name;
      report.cases[name] = (report.cases[name] ?? 0) + 1;
      const codes = (report.codes[name] ??= {});
      codes[grpc.status[code]] = (codes[grpc.status[code]] ?? 0) + 1;
      if (code === grpc.status.UNKNOWN || code === grpc.status.INTERNAL) {
        report.violations.push(`${name} answered ${grpc.status[code]} to ${body.subarray(0, 64).toString("hex")}…`);
      }
      if (++done % 500 === 0) {
        report.peakRssMb = Math.max(report.peakRssMb, rssMb(options.pid));
        options.onProgress?.(done, work.length);
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency ?? 32 }, worker));
  } finally {
    client.close();
  }
  report.peakRssMb = Math.max(report.peakRssMb, rssMb(options.pid));
  return report;
}

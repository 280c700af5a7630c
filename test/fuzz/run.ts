// Sends generated requests to every RPC of a running coordinator and tallies
// the status codes. UNKNOWN (an unhandled exception) and INTERNAL (a bug in
// the coordinator) are violations; every other code is a clear answer.
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { toBinary } from "@bufbuild/protobuf";
import type { DescMethod } from "@bufbuild/protobuf";
import { ExecutionService, WorkerService } from "@reprise/wire";
import { garbage, randomMessage, seededRandom } from "./generate.js";

export interface FuzzReport {
  seed: number;
  cases: Record<string, number>;
  codes: Record<string, Record<string, number>>;
  violations: string[];
  peakRssMb: number;
  /** The first UNAVAILABLE answer, if any: the coordinator should never become unreachable. */
  firstUnavailable?: { after: number; method: string; details: string; bytes: number };
}

const METHODS: DescMethod[] = [...ExecutionService.methods, ...WorkerService.methods].filter((m) => !process.env.REPRISE_FUZZ_ONLY || process.env.REPRISE_FUZZ_ONLY.split(",").includes(m.name));
const identity = (b: Buffer) => b;

function rssMb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) / 1024 : 0;
}

let lastDetails = "";

function call(client: grpc.Client, method: DescMethod, body: Buffer): Promise<grpc.status> {
  const path = `/${method.parent.typeName}/${method.name}`;
  const deadline = new Date(Date.now() + 2000);
  if (method.methodKind === "server_streaming") {
    return new Promise((resolve) => {
      const stream = client.makeServerStreamRequest(path, identity, identity, body, new grpc.Metadata(), { deadline });
      stream.on("data", () => stream.cancel());
      stream.on("error", (error: grpc.ServiceError) => {
        lastDetails = error.details;
        resolve(error.code);
      });
      stream.on("status", (status: grpc.StatusObject) => resolve(status.code));
    });
  }
  return new Promise((resolve) =>
    client.makeUnaryRequest(path, identity, identity, body, new grpc.Metadata(), { deadline }, (error) => {
      if (error) lastDetails = error.details;
      resolve(error ? error.code : grpc.status.OK);
    }),
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
  // Requests are generated as they are sent, so memory holds only those in
  // flight. The RPCs are interleaved so that state made by one (executions,
  // leases) meets the others; each RPC still gets exactly casesPerRpc.
  const remaining = new Map(METHODS.map((method) => [method, options.casesPerRpc]));
  const total = METHODS.length * options.casesPerRpc;
  const nextCase = (): { method: DescMethod; body: Buffer } | null => {
    const open = [...remaining.entries()].filter(([, left]) => left > 0);
    if (open.length === 0) return null;
    const [method, left] = open[Math.floor(random() * open.length)]!;
    remaining.set(method, left - 1);
    const body = random() < 0.1 ? garbage(random) : Buffer.from(toBinary(method.input, randomMessage(random, method.input)));
    return { method, body };
  };
  let done = 0;
  const worker = async () => {
    for (let next = nextCase(); next !== null; next = nextCase()) {
      const { method, body } = next;
      const code = await call(client, method, body);
      const name = method.name;
      report.cases[name] = (report.cases[name] ?? 0) + 1;
      const codes = (report.codes[name] ??= {});
      codes[grpc.status[code]] = (codes[grpc.status[code]] ?? 0) + 1;
      if (code === grpc.status.UNAVAILABLE && report.firstUnavailable === undefined) report.firstUnavailable = { after: done, method: name, details: lastDetails, bytes: body.length };
      if (code === grpc.status.UNKNOWN || code === grpc.status.INTERNAL) {
        report.violations.push(`${name} answered ${grpc.status[code]} to ${body.subarray(0, 64).toString("hex")}…`);
      }
      if (++done % 500 === 0) {
        report.peakRssMb = Math.max(report.peakRssMb, rssMb(options.pid));
        options.onProgress?.(done, total);
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

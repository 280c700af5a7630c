// Helpers for the @reprise/client tests: a coordinator plus workers and
// clients with test-sized timings, a log that can be inspected, a gate to hold
// handlers at a known point, and a record of the RPCs a worker sent. Workers
// and clients left open fail the test, as coordinators do in helpers.ts.
import * as grpc from "@grpc/grpc-js";
import { Client, Worker } from "@reprise/client";
import type { ClientOptions, Execution, LogFields, Logger, WorkerOptions } from "@reprise/client";
import { afterEach } from "vitest";
import { startTestCoordinator, toMs } from "./helpers.js";
import type { TestCoordinator } from "./helpers.js";
import type { ServerOptions } from "../server/api/server.js";

const open = new Set<string>();
let serial = 0;

afterEach(() => {
  const leaked = [...open];
  open.clear();
  if (leaked.length > 0) throw new Error(`test left open: ${leaked.join(", ")}`);
});

export interface LogEntry {
  level: "debug" | "info" | "warn" | "error";
  message: string;
  fields: LogFields;
}

export class MemoryLogger implements Logger {
  readonly entries: LogEntry[] = [];
  debug(message: string, fields: LogFields = {}) {
    this.entries.push({ level: "debug", message, fields });
  }
  info(message: string, fields: LogFields = {}) {
    this.entries.push({ level: "info", message, fields });
  }
  warn(message: string, fields: LogFields = {}) {
    this.entries.push({ level: "warn", message, fields });
  }
  error(message: string, fields: LogFields = {}) {
    this.entries.push({ level: "error", message, fields });
  }
}

/** Timings that keep a test in the hundreds of milliseconds. */
export const FAST = {
  leaseDuration: 1,
  pollWait: 2,
  stopGrace: 2,
  abortGrace: 0.3,
  reconnect: { minDelay: 0.02, maxDelay: 0.2 },
} satisfies WorkerOptions;

/** Every message a channel sent, by method name (e.g. "Heartbeat"). */
export class CallRecorder {
  readonly calls: { method: string; request: unknown }[] = [];
  readonly interceptor: grpc.Interceptor = (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      sendMessage: (message: unknown, next: (message: unknown) => void) => {
        this.calls.push({ method: options.method_definition.path.split("/").pop()!, request: message });
        next(message);
      },
    });
  requests<T>(method: string): T[] {
    return this.calls.filter((c) => c.method === method).map((c) => c.request as T);
  }
}

export interface ClientEnv {
  coordinator: TestCoordinator;
  address: string;
  /** A worker with FAST timings (overridable); registered for cleanup, not started. */
  worker(options?: WorkerOptions): Worker;
  client(options?: ClientOptions): Client;
  /** Shuts the coordinator down (as on SIGTERM); `start()` brings it back on the same port and database. */
  stopCoordinator(): Promise<void>;
  startCoordinator(): Promise<void>;
  /** Stops every worker, closes every client, then the coordinator. */
  close(): Promise<void>;
}

export async function clientEnv(options: Partial<ServerOptions> = {}): Promise<ClientEnv> {
  const coordinator = await startTestCoordinator(options);
  const dbPath = coordinator.dbPath;
  const workers: { worker: Worker; name: string }[] = [];
  const clients: { client: Client; name: string }[] = [];
  const env: ClientEnv = {
    coordinator,
    address: coordinator.address,
    worker(workerOptions = {}) {
      const name = `worker ${++serial}`;
      const worker = new Worker({ address: env.address, logger: new MemoryLogger(), ...FAST, ...workerOptions });
      workers.push({ worker, name });
      open.add(name);
      return worker;
    },
    client(clientOptions = {}) {
      const name = `client ${++serial}`;
      const client = new Client({ address: env.address, logger: new MemoryLogger(), reconnect: FAST.reconnect, ...clientOptions });
      clients.push({ client, name });
      open.add(name);
      return client;
    },
    async stopCoordinator() {
      await env.coordinator.close();
    },
    async startCoordinator() {
      env.coordinator = await startTestCoordinator({ ...options, db: dbPath, listen: env.address });
    },
    async close() {
      await Promise.all(workers.map(async ({ worker, name }) => {
        await worker.stop({ grace: 0 });
        open.delete(name);
      }));
      for (const { client, name } of clients) {
        client.close();
        open.delete(name);
      }
      // Closing twice is harmless: shutdown() is idempotent.
      await env.coordinator.close();
    },
  };
  return env;
}

/** A promise to hold handlers on until the test opens it. */
export class Gate {
  private release!: () => void;
  readonly opened = new Promise<void>((resolve) => (this.release = resolve));
  open(): void {
    this.release();
  }
}

/** The delay, in ms, between attempt `n`'s end and attempt `n + 1`'s earliest start. */
export function retryDelayAfter(execution: Execution, n: number): number {
  const failed = execution.attempts.find((a) => a.number === n);
  const next = execution.attempts.find((a) => a.number === n + 1);
  if (!failed || !next) throw new Error(`execution ${execution.id} has no attempts ${n} and ${n + 1}`);
  return toMs(next.scheduledAt) - toMs(failed.finishedAt);
}

export const bigintSeconds = (ms: number) => ({ seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 });

// A cluster of real `reprise serve` processes on one PostgreSQL database, and
// the probes the cluster tests use: the standard health service, gRPC status
// codes, watch streams, and direct reads of the database.
import { createConnection, createServer } from "node:net";
import type { Socket } from "node:net";
import * as grpc from "@grpc/grpc-js";
import type { Execution } from "@reprise/wire";
import pg from "pg";
import { spawnCoordinator } from "./process-helpers.js";
import type { ChildCoordinator } from "./process-helpers.js";

export interface Cluster {
  nodes: ChildCoordinator[];
  /** The nodes still running (not killed by the test). */
  alive(): ChildCoordinator[];
  /** SIGKILLs every node still running and closes every client. Safe to call twice. */
  close(): Promise<void>;
}

const running = (node: ChildCoordinator) => node.child.exitCode === null && node.child.signalCode === null;

/** Starts `n` nodes on the database `db` at once; resolves when every one serves. */
export async function startCluster(db: string, n: number, extraArgs: string[] = []): Promise<Cluster> {
  const started = await Promise.allSettled(Array.from({ length: n }, () => spawnCoordinator(db, undefined, extraArgs)));
  const nodes = started.filter((s) => s.status === "fulfilled").map((s) => s.value);
  const close = async () => {
    await Promise.all(
      nodes.map(async (node) => {
        if (running(node)) await node.kill();
        else node.closeClients();
      }),
    );
  };
  const failed = started.find((s) => s.status === "rejected");
  if (failed) {
    await close();
    throw failed.reason;
  }
  return { nodes, alive: () => nodes.filter(running), close };
}

/** The values of grpc.health.v1.HealthCheckResponse.ServingStatus. */
export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";
const HEALTH_STATUSES: HealthStatus[] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/**
 * grpc.health.v1.Health/Check on `address` for `service` ("" is the server as a
 * whole), through a raw client: the request and reply are encoded by hand
 * (HealthCheckRequest { string service = 1; }, HealthCheckResponse { ServingStatus status = 1; }).
 */
export async function healthOf(address: string, service = "", timeoutMs = 2000): Promise<HealthStatus> {
  const name = Buffer.from(service, "utf8");
  if (name.length > 127) throw new Error("healthOf: service names over 127 bytes are not supported");
  const request = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, name.length]), name]);
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  try {
    const reply = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(
        "/grpc.health.v1.Health/Check",
        (b: Buffer) => b,
        (b: Buffer) => b,
        request,
        new grpc.Metadata(),
        { deadline: Date.now() + timeoutMs },
        (error, value) => (error ? reject(error) : resolve(value!)),
      ),
    );
    // Absent field: status 0 (UNKNOWN). Otherwise tag 0x08 and a one-byte varint.
    if (reply.length === 0) return "UNKNOWN";
    if (reply[0] !== 0x08 || reply.length !== 2) throw new Error(`healthOf: unexpected reply ${reply.toString("hex")}`);
    return HEALTH_STATUSES[reply[1]!] ?? "UNKNOWN";
  } finally {
    client.close();
  }
}

/** The gRPC status code a call failed with, or "ok" if it succeeded. */
export async function codeOf(call: Promise<unknown>): Promise<number | "ok"> {
  try {
    await call;
    return "ok";
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code !== "number") throw error;
    return code;
  }
}

/** The status code a server stream ended with: "ok" after a clean end. */
export async function streamCodeOf(stream: AsyncIterable<unknown>): Promise<number | "ok"> {
  return codeOf(
    (async () => {
      for await (const _ of stream) {
        // drain
      }
    })(),
  );
}

export interface Watch {
  /** Every snapshot received, in order. */
  seen: Execution[];
  /** Resolves when the stream ends (cleanly); rejects with its error otherwise. */
  ended: Promise<void>;
  /** Resolves once `predicate` holds for the latest snapshot; fails after timeoutMs. */
  until(predicate: (latest: Execution) => boolean, timeoutMs?: number, what?: string): Promise<Execution>;
  cancel(): void;
}

/** Opens a WatchExecution stream on `node` and resolves once the first snapshot arrived. */
export async function watch(node: ChildCoordinator, executionId: string): Promise<Watch> {
  const stream = node.executions.watchExecution({ executionId });
  const seen: Execution[] = [];
  const waiters = new Set<() => void>();
  let first!: () => void;
  const firstArrived = new Promise<void>((resolve) => (first = resolve));
  const ended = (async () => {
    for await (const message of stream) {
      seen.push(message.execution!);
      first();
      for (const wake of [...waiters]) wake();
    }
  })();
  let done = false;
  ended.then(
    () => (done = true),
    () => (done = true),
  );
  ended.finally(() => {
    first();
    for (const wake of [...waiters]) wake();
  }).catch(() => undefined);
  await firstArrived;
  return {
    seen,
    ended,
    cancel: () => stream.cancel(),
    async until(predicate, timeoutMs = 5000, what = "a snapshot") {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const latest = seen.at(-1);
        if (latest && predicate(latest)) return latest;
        if (done) throw new Error(`the watch ended before ${what}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} on the watch`);
        await new Promise<void>((resolve) => {
          const wake = () => {
            clearTimeout(timer);
            waiters.delete(wake);
            resolve();
          };
          const timer = setTimeout(wake, left);
          waiters.add(wake);
        });
      }
    },
  };
}

/** Rows of `sql` ($1 parameters, tables of schema `reprise`) read straight from the database. */
export async function queryRows<Row extends Record<string, unknown> = Record<string, unknown>>(db: string, sql: string, params: unknown[] = []): Promise<Row[]> {
  const client = new pg.Client({ connectionString: db, options: "-c search_path=reprise" });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as Row[];
  } finally {
    await client.end();
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A TCP relay in front of PostgreSQL that can go silent, as a network
 * partition does: `silence()` stops passing bytes either way and holds new
 * connections unanswered, and nobody's connection closes. `heal()` passes
 * bytes again on new connections; the connections of before the silence stay
 * open on the nodes' side and pass nothing ever again, as when the server
 * dropped its end during the partition.
 */
export interface SilentLink {
  /** The URL `db` with its port replaced by the relay's. */
  url(db: string): string;
  silence(): void;
  heal(): void;
  close(): Promise<void>;
}

export async function startSilentLink(targetPort: number): Promise<SilentLink> {
  let silent = false;
  const pairs = new Set<{ node: Socket; server: Socket | null }>();
  /** Connections made while silent, never answered; and the nodes' ends of those cut by heal(). */
  const held: Socket[] = [];
  const mute: Socket[] = [];
  const relay = (node: Socket) => {
    const server = createConnection({ host: "127.0.0.1", port: targetPort });
    const pair = { node, server: server as Socket | null };
    pairs.add(pair);
    node.on("data", (chunk) => !silent && pair.server?.write(chunk));
    server.on("data", (chunk) => !silent && node.write(chunk));
    node.on("close", () => (pair.server?.destroy(), pairs.delete(pair)));
    server.on("close", () => pair.server !== null && node.destroy());
    node.on("error", () => undefined);
    server.on("error", () => undefined);
  };
  const listener = createServer((node) => {
    node.on("error", () => undefined);
    if (silent) held.push(node);
    else relay(node);
  });
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  const port = (listener.address() as { port: number }).port;
  return {
    url: (db) => {
      const url = new URL(db);
      url.port = String(port);
      return url.toString();
    },
    silence: () => {
      silent = true;
    },
    heal: () => {
      // The server's ends of the old connections go; the nodes' ends stay open and mute.
      for (const pair of pairs) {
        const server = pair.server;
        pair.server = null;
        server?.destroy();
        mute.push(pair.node);
      }
      pairs.clear();
      silent = false;
      for (const node of held.splice(0)) node.destroy();
    },
    close: async () => {
      for (const pair of pairs) (pair.node.destroy(), pair.server?.destroy());
      for (const node of [...held.splice(0), ...mute.splice(0)]) node.destroy();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    },
  };
}


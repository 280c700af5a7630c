// Test harness: a real coordinator over loopback gRPC with a fresh SQLite file
// per test, an injectable fake clock, and leak checks that fail the test when a
// coordinator or client was left open.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import Database from "better-sqlite3";
import pg from "pg";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { ExecutionService, WorkerService, createServiceClient } from "@reprise/wire";
import type { ServiceClient } from "@reprise/wire";
import { afterEach } from "vitest";
import type { Clock, TimerHandle } from "../server/coordinator/clock.js";
import { startServer } from "../server/api/server.js";
import { testDatabase } from "./postgres-server.js";
import type { RunningServer, ServerOptions } from "../server/api/server.js";

/** Waits `n` turns of the event loop. */
export async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** A clock that moves only when told to, firing due timers in order. */
export class FakeClock implements Clock {
  private timers: { at: number; seq: number; callback: () => void }[] = [];
  private seq = 0;

  constructor(private current = Date.UTC(2026, 0, 1)) {}

  now(): number {
    return this.current;
  }

  setTimeout(callback: () => void, delayMs: number): TimerHandle {
    const timer = { at: this.current + delayMs, seq: this.seq++, callback };
    this.timers.push(timer);
    return { id: timer };
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers = this.timers.filter((t) => t !== handle.id);
  }

  /** The moment of the earliest pending timer. */
  get nextTimerAt(): number | null {
    return this.timers.length === 0 ? null : Math.min(...this.timers.map((t) => t.at));
  }

  /**
   * What to wait for after a timer fired before the next may be due: the
   * coordinator's timer ticks are asynchronous, and re-arm when they end.
   */
  settle: () => Promise<void> = () => turns(3);

  /** Moves time to `at`, firing every timer due on the way, each at its own moment, and waits for what they set off. */
  async advanceTo(at: number): Promise<void> {
    for (;;) {
      await this.settle();
      const due = this.timers.filter((t) => t.at <= at).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.timers = this.timers.filter((t) => t !== due);
      this.current = Math.max(this.current, due.at);
      due.callback();
    }
    this.current = Math.max(this.current, at);
  }

  advance(ms: number): Promise<void> {
    return this.advanceTo(this.current + ms);
  }

  /** Moves time forward without firing timers, as when a timer runs late. */
  jump(ms: number): void {
    this.current += ms;
  }
}

export interface TestCoordinator {
  server: RunningServer;
  address: string;
  dbPath: string;
  executions: ServiceClient<typeof ExecutionService>;
  workers: ServiceClient<typeof WorkerService>;
  /** Shuts the coordinator down and closes the clients. */
  close(): Promise<void>;
}

const open = new Set<string>();
const tempDirs: string[] = [];

afterEach(() => {
  const leaked = [...open];
  open.clear();
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  if (leaked.length > 0) throw new Error(`test left open: ${leaked.join(", ")}`);
});

/** A fresh temporary directory, removed after the test. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "reprise-test-"));
  tempDirs.push(dir);
  return dir;
}

/** The store the semantic suites run against: SQLite, or PostgreSQL when REPRISE_TEST_STORE=postgres. */
export const testStore: "sqlite" | "postgres" = process.env.REPRISE_TEST_STORE === "postgres" ? "postgres" : "sqlite";

/** A fresh database for one coordinator: a file in a temporary folder, or a new PostgreSQL database. */
export async function freshDatabase(): Promise<string> {
  return testStore === "postgres" ? testDatabase("reprise") : join(tempDir(), "reprise.db");
}

/** Rows of `sql` (unqualified table names, `?` parameters) as a connection of its own sees them: only what is committed. */
export async function committedRows(db: string, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  if (testStore === "postgres") {
    const client = new pg.Client({ connectionString: db, options: "-c search_path=reprise" });
    await client.connect();
    try {
      let n = 0;
      return (await client.query(sql.replace(/\?/g, () => `$${++n}`), params)).rows as Record<string, unknown>[];
    } finally {
      await client.end();
    }
  }
  const reader = new Database(db, { readonly: true });
  try {
    return reader.prepare(sql).all(...params) as Record<string, unknown>[];
  } finally {
    reader.close();
  }
}

/** An execution's state as a connection of its own sees it: only what is committed. */
export async function committedState(db: string, executionId: string): Promise<number | undefined> {
  return (await committedRows(db, "SELECT state FROM executions WHERE id = ?", [executionId]))[0]?.state as number | undefined;
}

export async function startTestCoordinator(options: Partial<ServerOptions> = {}): Promise<TestCoordinator> {
  const dbPath = options.db ?? (await freshDatabase());
  const server = await startServer({
    listen: "127.0.0.1:0",
    db: dbPath,
    durability: "normal",
    ...options,
  });
  if (options.clock instanceof FakeClock) {
    options.clock.settle = async () => {
      await turns(2);
      await server.coordinator.idle();
      await turns(2);
    };
  }
  const address = `127.0.0.1:${server.port}`;
  const executions = createServiceClient(ExecutionService, address);
  const workers = createServiceClient(WorkerService, address);
  const name = `coordinator ${address}`;
  open.add(name);
  return {
    server,
    address,
    dbPath,
    executions,
    workers,
    async close() {
      executions.raw.close();
      workers.raw.close();
      await server.shutdown(1000);
      open.delete(name);
    },
  };
}

export const seconds = (s: number): Duration => create(DurationSchema, { seconds: BigInt(Math.trunc(s)), nanos: Math.round((s % 1) * 1e9) });
export const millis = (ms: number): Duration => create(DurationSchema, { seconds: BigInt(Math.trunc(ms / 1000)), nanos: (ms % 1000) * 1e6 });
export const toMs = (t: Timestamp | undefined): number => {
  if (!t) throw new Error("timestamp is absent");
  return Number(t.seconds) * 1000 + Math.round(t.nanos / 1e6);
};

export const json = (value: unknown) => ({ data: new TextEncoder().encode(JSON.stringify(value)), contentType: "application/json" });

/** Resolves when `predicate` holds, checking after each turn of the event loop; fails after `timeoutMs`. */
export async function until(predicate: () => boolean | Promise<boolean>, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

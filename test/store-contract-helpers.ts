// The stores that test/store-contract.test.ts holds to one contract, each with
// what the suite needs beside the Store itself: a connection of its own that
// sees only committed rows, and the few behaviours store.ts leaves to the store.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { inject } from "vitest";
import { PostgresStore } from "../server/store/postgres/postgres-store.js";
import { SqliteStore } from "../server/store/sqlite/sqlite-store.js";
import { AttemptStateNumber as A, ExecutionStateNumber as E } from "../server/store/store.js";
import type { DueExecution, ExecutionRecord, NewExecution, Store, Tx } from "../server/store/store.js";
import { testDatabase } from "./postgres-server.js";

/** An execution row as a connection of its own sees it. */
export interface CommittedExecution {
  id: string;
  task: string;
  state: number;
}

export interface OpenStore {
  store: Store;
  /**
   * The executions as a connection other than the store's sees them: only
   * what is committed. The rows are those committed when this is called (a
   * synchronous caller, an afterCommit effect, reads them then).
   */
  committedExecutions(): Promise<CommittedExecution[]>;
  /** The rows of the label index, as "key=value seq", sorted. */
  committedLabels(): Promise<string[]>;
  /** Closes the store and whatever the test opened beside it. */
  close(): Promise<void>;
}

interface LabelRow {
  key: string;
  value: string;
  seq: number | string;
}

const labelRows = (rows: LabelRow[]) => rows.map((row) => `${row.key}=${row.value} ${row.seq}`).sort();

export interface StoreKind {
  /** False when the run has no such store (no PostgreSQL server): its tests are skipped. */
  available: boolean;
  /** True when changes run at the same time (PostgreSQL), false when one at a time (SQLite). */
  concurrentChanges: boolean;
  /**
   * What executionInsert does with an idempotency key that is already taken:
   * returns undefined in its place (PostgreSQL, ON CONFLICT DO NOTHING), or
   * throws and its change rolls back (SQLite, whose coordinator looks the key
   * up first in the same change, which no other change can come between).
   */
  duplicateKey: "undefined" | "throws";
  open(): Promise<OpenStore>;
  /** Releases what open() kept for the tests that follow; called once they have all run. */
  dispose?(): Promise<void>;
}

export const sqliteKind: StoreKind = {
  available: true,
  concurrentChanges: false,
  duplicateKey: "throws",
  async open() {
    const dir = mkdtempSync(join(tmpdir(), "reprise-contract-"));
    const path = join(dir, "db");
    const store = new SqliteStore({ path, backgroundCheckpoints: false });
    let reader: Database.Database | undefined;
    return {
      store,
      committedExecutions() {
        // Read at once, so that an effect that calls this reads what is committed then.
        reader ??= new Database(path, { readonly: true });
        return Promise.resolve(reader.prepare("SELECT id, task, state FROM executions ORDER BY seq").all() as CommittedExecution[]);
      },
      committedLabels() {
        reader ??= new Database(path, { readonly: true });
        return Promise.resolve(labelRows(reader.prepare("SELECT key, value, execution_seq AS seq FROM execution_labels").all() as LabelRow[]));
      },
      async close() {
        try {
          await store.close();
        } finally {
          reader?.close();
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
  },
};

/** The PostgreSQL database of this file's tests, created once: a new database per test costs 200-400 ms. */
let postgresDatabase: Promise<{ url: string; admin: pg.Client }> | undefined;

export const postgresKind: StoreKind = {
  available: inject("postgresUrl") !== undefined,
  concurrentChanges: true,
  duplicateKey: "undefined",
  async open() {
    postgresDatabase ??= (async () => {
      const url = await testDatabase("contract");
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      // A deadlock is found after deadlock_timeout (1 s by default): the test that makes one need not wait that long.
      await admin.query(`ALTER DATABASE "${decodeURIComponent(new URL(url).pathname.slice(1))}" SET deadlock_timeout = '50ms'`);
      return { url, admin };
    })();
    const { url, admin } = await postgresDatabase;
    // Opening migrates the database the first time; then every table but the migrations' is emptied,
    // so that each test starts from a fresh store.
    const store = await PostgresStore.open({ url, poolSize: 6 });
    try {
      const { rows } = await admin.query<{ name: string }>(
        "SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables WHERE schemaname = 'reprise' AND tablename <> 'schema_migrations'",
      );
      await admin.query(`TRUNCATE ${rows.map((row) => row.name).join(", ")} RESTART IDENTITY`);
    } catch (error) {
      await store.close();
      throw error;
    }
    return {
      store,
      async committedExecutions() {
        return (await admin.query("SELECT id, task, state FROM reprise.executions ORDER BY seq")).rows as CommittedExecution[];
      },
      async committedLabels() {
        return labelRows((await admin.query("SELECT key, value, execution_seq AS seq FROM reprise.execution_labels")).rows as LabelRow[]);
      },
      close: () => store.close(),
    };
  },
  async dispose() {
    const database = postgresDatabase;
    postgresDatabase = undefined;
    if (database) await (await database).admin.end();
  },
};

// What the suite does to the stores, with nothing but the Tx contract.

export const SECRET = Buffer.from("lease-secret-0001");
export const WRONG_SECRET = Buffer.from("lease-secret-0002");

export interface InsertFields {
  nextAttemptAt?: number;
  createdAt?: number;
  idempotencyKey?: string | null;
  labels?: Record<string, string>;
  retryPolicy?: Buffer | null;
  arguments?: { data: Buffer; contentType: string };
}

/** A new PENDING execution, as executionInsert takes it. */
export function newExecution(id: string, task: string, fields: InsertFields = {}): NewExecution {
  return {
    id,
    task,
    state: E.pending,
    arguments: fields.arguments ?? { data: Buffer.from([1]), contentType: "" },
    retryPolicy: fields.retryPolicy ?? null,
    nextAttemptAt: fields.nextAttemptAt ?? 0,
    createdAt: fields.createdAt ?? 0,
    idempotencyKey: fields.idempotencyKey ?? null,
    labels: fields.labels ?? {},
  };
}

/** Inserts one PENDING execution; throws when the store would not. */
export async function insert(tx: Tx, id: string, task: string, fields: InsertFields = {}): Promise<ExecutionRecord> {
  const [record] = await tx.executionInsert([newExecution(id, task, fields)]);
  if (!record) throw new Error(`execution ${id} was not inserted`);
  return record;
}

export interface LeaseFields {
  at?: number;
  leaseMs?: number;
  timeoutAt?: number | null;
  secret?: Buffer;
  workerId?: string;
}

/** The attempt that starts `due`, as the coordinator builds it. */
export function newAttempt(due: DueExecution, fields: LeaseFields = {}) {
  const at = fields.at ?? 0;
  const leaseMs = fields.leaseMs ?? 30_000;
  return {
    executionSeq: due.seq,
    number: due.attemptCount + 1,
    workerId: fields.workerId ?? "w",
    scheduledAt: due.nextAttemptAt,
    startedAt: at,
    leaseSecret: fields.secret ?? SECRET,
    leaseMs,
    leaseExpiresAt: at + leaseMs,
    timeoutAt: fields.timeoutAt ?? null,
  };
}

/** Leases the oldest due PENDING execution of `task` at `at`, as the coordinator does: claim, then start an attempt. */
export async function lease(tx: Tx, task: string, fields: LeaseFields = {}): Promise<{ due: DueExecution; attemptId: number } | undefined> {
  const [due] = await tx.executionClaimDue({ tasks: [task], now: fields.at ?? 0, limit: 1 });
  if (!due) return undefined;
  const [attemptId] = await tx.attemptInsert([newAttempt(due, fields)]);
  return { due, attemptId: attemptId! };
}

/** Starts an attempt of `record`, which must be the oldest due PENDING execution of its task; returns the attempt's id. */
export async function start(tx: Tx, record: { seq: number; task: string }, fields: LeaseFields = {}): Promise<number> {
  const leased = await lease(tx, record.task, fields);
  if (leased?.due.seq !== record.seq) throw new Error(`leased execution ${leased?.due.seq}, not ${record.seq}`);
  return leased.attemptId;
}

const ATTEMPT_STATE: Record<number, number> = { [E.succeeded]: A.succeeded, [E.failed]: A.failed, [E.cancelled]: A.cancelled, [E.timedOut]: A.timedOut, [E.abandoned]: A.abandoned };

/** Ends attempt `attemptId` and its RUNNING execution in `state`; throws when either guard refuses. */
export async function finish(tx: Tx, record: { seq: number; task: string }, attemptId: number, state: number, at = 0): Promise<void> {
  if (!(await tx.attemptFinish({ id: attemptId, leaseSecret: SECRET, state: ATTEMPT_STATE[state]!, finishedAt: at, failure: null, retryPolicy: null, decision: null }))) {
    throw new Error(`attempt ${attemptId} did not finish`);
  }
  if (!(await tx.executionFinish({ seq: record.seq, task: record.task, from: "running", state, finishedAt: at }))) {
    throw new Error(`execution ${record.seq} did not finish`);
  }
}

/** Every page of a list, following nextBeforeSeq to the end. */
export async function pages(store: Store, filter: { task?: string; state?: number; labels?: Record<string, string> }, limit: number): Promise<ExecutionRecord[][]> {
  const result: ExecutionRecord[][] = [];
  let beforeSeq: number | undefined;
  for (let guard = 0; guard < 10_000; guard++) {
    const page = await store.read(async (tx) => tx.executionList({ ...filter, beforeSeq, limit }));
    result.push(page.records);
    if (page.nextBeforeSeq === null) return result;
    beforeSeq = page.nextBeforeSeq;
  }
  throw new Error("paging did not end");
}

/** The kept counts as `tx` sees them, "task/state" to count. */
export async function keptCounts(tx: Tx): Promise<Record<string, number>> {
  return Object.fromEntries((await tx.executionCountByTaskAndState()).map((r) => [`${r.task}/${r.state}`, r.count]));
}

/** The counts that a count of the rows gives, "task/state" to count. */
export function countRows(rows: { task: string; state: number }[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const row of rows) counts[`${row.task}/${row.state}`] = (counts[`${row.task}/${row.state}`] ?? 0) + 1;
  return counts;
}

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

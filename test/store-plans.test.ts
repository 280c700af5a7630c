// The plan guard: nothing that RPCs or the timer run may cost more as history
// grows. Every statement the SQLite store prepares is explained on a database
// with a realistic history, and must use the access path declared for it here.
// A statement that scans executions or attempts, walks a range of the table
// that its WHERE clause filters further, or sorts rows in a temporary B-tree,
// fails the test.
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { SqliteStore } from "../server/store/sqlite/sqlite-store.js";
import { AttemptStateNumber as A, ExecutionStateNumber as E } from "../server/store/store.js";

/**
 * The index each statement must use on executions and attempts ("rowid" for
 * the primary key), in the order of its plan; [] for a statement that touches
 * neither table. A new statement fails the test until it is listed here.
 */
const ACCESS: Record<string, string[]> = {
  taskGet: [],
  taskUpsert: [],
  taskList: [],
  retryBucketCreate: [],
  retryBucketGet: [],
  retryBucketPut: [],
  executionInsert: [],
  executionGet: ["sqlite_autoindex_executions_1"],
  executionGetBySeq: ["rowid"],
  executionVersion: ["rowid"],
  executionGetByKey: ["sqlite_autoindex_executions_2"],
  executionList: ["rowid"],
  executionListByTask: ["executions_task"],
  executionListByState: ["executions_state"],
  executionListByTaskAndState: ["executions_task_state"],
  executionListByLabel: ["primary key", "rowid", "primary key"],
  executionLabelWindowFloor: ["primary key"],
  labelInsert: [],
  retentionDeleteLabel: ["primary key"],
  executionListSucceeded: ["rowid"],
  executionListSucceededByTask: ["executions_task"],
  executionMinSeq: ["rowid"],
  executionMaxSeq: ["rowid"],
  executionListDue: ["executions_due"],
  executionSetRetry: ["rowid"],
  executionRerun: ["rowid"],
  executionFinishRunning: ["rowid"],
  executionFinishPending: ["rowid"],
  executionStart: ["rowid"],
  attemptInsert: [],
  attemptGet: ["rowid", "rowid"],
  attemptList: ["sqlite_autoindex_attempts_1"],
  attemptGetRunning: ["sqlite_autoindex_attempts_1"],
  attemptExtendLease: ["rowid"],
  attemptFinish: ["rowid"],
  attemptDelete: ["rowid"],
  executionUnstart: ["rowid"],
  attemptListLeaseExpired: ["attempts_lease"],
  attemptListTimedOut: ["attempts_timeout"],
  nextPendingAt: ["executions_next"],
  nextLeaseExpiry: ["attempts_lease"],
  nextTimeout: ["attempts_timeout"],
  countByTaskAndState: [],
  countAdd: [],
  countDue: ["executions_next"],
  countDueOfTask: ["executions_due"],
  retentionWalk: ["rowid"],
  retentionDeleteAttempts: ["sqlite_autoindex_attempts_1"],
  retentionDeleteExecution: ["rowid", "sqlite_autoindex_attempts_1"],
  failureAdd: [],
  failureStats: [],
  failureForget: [],
  workerSeen: [],
  workerListRecent: ["worker_tasks_seen"],
  workerListOfTask: ["worker_tasks_task"],
  workerTasks: ["primary key"],
  workerForget: ["worker_tasks_seen"],
  begin: [],
  commit: [],
  rollback: [],
  savepoint: [],
  release: [],
  rollbackToSavepoint: [],
};

/**
 * Statements allowed to walk an open-ended range of the primary key, each with
 * the reason the walk stays bounded. Every row such a walk reads qualifies, so
 * its LIMIT bounds the rows read.
 */
const BOUNDED_WALKS: Record<string, string> = {
  executionList: "no filter: newest first, every row is part of the page, LIMIT bounds it",
  retentionWalk: "no filter: oldest first, every row walked is one of the batch, LIMIT bounds it",
};

/** Statements allowed to scan executions or attempts, with the reason. None: no such scan is on any path. */
const ALLOWED_SCANS: Record<string, string> = {};

/**
 * Statements allowed to sort in a temporary B-tree, with the reason the rows
 * sorted stay few. Any other sort of rows read from a growing table would
 * read, and sort, all of them before the first is returned.
 */
const BOUNDED_SORTS: Record<string, string> = {
  failureStats: "failure_minutes keeps one day (failureForget): a row per task, minute and failure type, for the tasks page",
};

/** Tables that grow with use: executions, attempts and execution_labels with history, worker_tasks with workers that come and go. */
const HISTORY_TABLES = new Set(["executions", "attempts", "execution_labels", "worker_tasks"]);

interface Access {
  table: string;
  kind: "scan" | "search";
  index: string;
  /** A one-sided range of the primary key, such as (rowid<?). */
  openRowidRange: boolean;
  detail: string;
}

/** Reads one line of EXPLAIN QUERY PLAN, with the statement's aliases resolved to table names. */
function parsePlanLine(detail: string, aliases: Map<string, string>): Access | null {
  const match = /^(SCAN|SEARCH) (\w+)(?: USING (?:COVERING )?(?:INDEX (\w+)|(INTEGER PRIMARY KEY)|(PRIMARY KEY)))?(?: \((.*)\))?/.exec(detail);
  if (!match) return null;
  const table = aliases.get(match[2]!) ?? match[2]!;
  const index = match[3] ?? (match[4] ? "rowid" : match[5] ? "primary key" : match[1] === "SEARCH" ? "rowid" : "table");
  const range = match[6] ?? "";
  return {
    table,
    kind: match[1] === "SCAN" ? "scan" : "search",
    index,
    openRowidRange: index === "rowid" && /^rowid[<>]=?\?$/.test(range),
    detail,
  };
}

function aliasesOf(sql: string): Map<string, string> {
  const aliases = new Map<string, string>();
  for (const m of sql.matchAll(/\b(executions|attempts|execution_labels)\s+(?:AS\s+)?([a-z])\b/gi)) aliases.set(m[2]!, m[1]!);
  return aliases;
}

/** Binds 0 to every parameter: plans do not depend on the values here (no sqlite_stat4). */
function explain(db: Database.Database, sql: string): string[] {
  const named = [...new Set([...sql.matchAll(/@(\w+)/g)].map((m) => m[1]!))];
  const params = named.length > 0 ? [Object.fromEntries(named.map((n) => [n, 0]))] : Array((sql.match(/\?/g) ?? []).length).fill(0);
  return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((row) => row.detail);
}

const TASKS = ["charge", "email", "report", "sync"];

/**
 * A history like a week of service: mostly SUCCEEDED, some FAILED and
 * CANCELLED, a few PENDING (due and delayed) and RUNNING, some with timeouts.
 */
async function buildHistory(path: string, executions: number): Promise<void> {
  const store = new SqliteStore({ path });
  const now = Date.UTC(2026, 0, 1);
  for (let start = 0; start < executions; start += 1000) {
    await store.write(async (tx) => {
      for (let i = start; i < Math.min(executions, start + 1000); i++) {
        const task = TASKS[i % TASKS.length]!;
        // Those that stay PENDING are delayed, or due a moment after the others, so that leasing passes them over.
        const stays = i % 97 === 0 || i % 101 === 0;
        const record = (await tx.executionInsert([{
          id: `e${i}`,
          task,
          state: E.pending,
          arguments: { data: new Uint8Array([1]), contentType: "" },
          retryPolicy: null,
          nextAttemptAt: now + (i % 97 === 0 ? 3_600_000 : stays ? 1 : 0),
          createdAt: now,
          idempotencyKey: i % 5 === 0 ? `key-${i}` : null,
          // Some carry labels, as a service's tenants or sources would.
          labels: i % 7 === 0 ? { tenant: `t${i % 50}`, source: i % 2 === 0 ? "api" : "cron" } : {},
        }]))[0];
        if (!record) throw new Error(`execution e${i} was not inserted`);
        if (stays) continue;
        const [due, ...more] = await tx.executionClaimDue({ tasks: [task], now, limit: 2 });
        if (due?.seq !== record.seq || more.length > 0) throw new Error(`leasing e${i} claimed ${[due, ...more].map((d) => d?.id)}`);
        const [attemptId] = await tx.attemptInsert([
          {
            executionSeq: record.seq,
            number: due.attemptCount + 1,
            workerId: "w",
            scheduledAt: due.nextAttemptAt,
            startedAt: now,
            leaseSecret: new Uint8Array(16),
            leaseMs: 30_000,
            leaseExpiresAt: now + 30_000,
            timeoutAt: i % 3 === 0 ? now + 60_000 : null,
          },
        ]);
        if (i % 103 === 0) continue; // stays RUNNING
        const failed = i % 20 === 0;
        const cancelled = i % 41 === 0;
        const attemptState = failed ? A.failed : cancelled ? A.cancelled : A.succeeded;
        const failure = failed ? { type: "E", message: "m", stackTrace: "", nonRetryable: true, retryAfterMs: 0 } : null;
        await tx.attemptFinish({ id: attemptId!, leaseSecret: new Uint8Array(16), state: attemptState, finishedAt: now, failure, retryPolicy: null, decision: null });
        await tx.executionFinish({
          seq: record.seq,
          task,
          from: "running",
          state: failed ? E.failed : cancelled ? E.cancelled : E.succeeded,
          finishedAt: now,
          failure: failure ?? undefined,
        });
      }
    });
  }
  await store.close();
}

describe("plan guard: no statement on a hot path grows with history", () => {
  // One history for every test of this file: a directory of its own, removed at the end.
  const dir = mkdtempSync(join(tmpdir(), "reprise-plans-"));
  const path = join(dir, "history.db");
  let texts: ReadonlyMap<string, string>;

  beforeAll(async () => {
    await buildHistory(path, 20_000);
    const store = new SqliteStore({ path });
    texts = new Map(store.statementTexts);
    await store.close();
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("every statement the store prepares has a declared access path", () => {
    expect([...texts.keys()].sort()).toEqual(Object.keys(ACCESS).sort());
  });

  for (const analyzed of [false, true]) {
    const when = analyzed ? "with planner statistics (ANALYZE)" : "without planner statistics, as the store runs";
    test(`no statement scans executions or attempts or sorts what it reads, and each uses its declared index, ${when}`, () => {
      // ANALYZE runs on a copy, so that the other tests see the database as the store leaves it.
      const explained = analyzed ? join(dir, "analyzed.db") : path;
      if (analyzed) copyFileSync(path, explained);
      const db = new Database(explained);
      try {
        if (analyzed) db.exec("ANALYZE");
        const problems: string[] = [];
        for (const [name, sql] of texts) {
          const accesses = explain(db, sql)
            .map((detail) => parsePlanLine(detail, aliasesOf(sql)))
            .filter((access): access is Access => access !== null && HISTORY_TABLES.has(access.table));
          for (const access of accesses) {
            if (access.kind === "scan" && !(name in ALLOWED_SCANS)) problems.push(`${name}: scans ${access.table} (${access.detail})`);
            if (access.openRowidRange && !(name in BOUNDED_WALKS)) problems.push(`${name}: walks an open range of ${access.table} (${access.detail})`);
          }
          const plan = explain(db, sql);
          if (plan.some((detail) => /USE TEMP B-TREE/.test(detail)) && !(name in BOUNDED_SORTS)) {
            problems.push(`${name}: sorts in a temporary B-tree (${plan.join(" | ")})`);
          }
          const used = accesses.map((access) => access.index);
          if (JSON.stringify(used) !== JSON.stringify(ACCESS[name])) {
            problems.push(`${name}: uses ${JSON.stringify(used)}, declared ${JSON.stringify(ACCESS[name])} (${accesses.map((a) => a.detail).join(" | ")})`);
          }
        }
        expect(problems).toEqual([]);
      } finally {
        db.close();
      }
    });
  }

  test("the bounded walks filter on nothing but the primary key", () => {
    for (const name of Object.keys(BOUNDED_WALKS)) {
      const where = /\bWHERE\b(.*?)\bORDER BY\b/is.exec(texts.get(name)!)?.[1] ?? "";
      expect(where.trim(), name).toMatch(/^seq [<>]=? \?$/);
    }
  });

  test("the guard reads a scan as a scan, and a sort as a sort: the expiry sweep as one UNION plans as a scan of every attempt", () => {
    const db = new Database(path, { readonly: true });
    try {
      const union = `SELECT id FROM attempts WHERE state = 1 AND lease_expires_at <= @now
        UNION SELECT id FROM attempts WHERE state = 1 AND timeout_at IS NOT NULL AND timeout_at <= @now LIMIT @limit`;
      const accesses = explain(db, union).map((detail) => parsePlanLine(detail, new Map()));
      expect(accesses.some((access) => access?.table === "attempts" && access.kind === "scan")).toBe(true);
      const counted = explain(db, "SELECT task, state, count(*) FROM executions GROUP BY task, state").map((d) => parsePlanLine(d, new Map()));
      expect(counted.some((access) => access?.table === "executions" && access.index !== "rowid" && access.kind === "scan")).toBe(true);
      // And a sort as a sort: the newest FAILED by finish time has no index to walk.
      expect(explain(db, "SELECT id FROM executions WHERE state = 4 ORDER BY finished_at DESC LIMIT 50").some((d) => /USE TEMP B-TREE/.test(d))).toBe(true);
    } finally {
      db.close();
    }
  });
});

// The SQLite store: better-sqlite3 in WAL mode, append-only migrations, and
// group commit (every change of one event-loop turn shares one transaction).
// (group-commit.ts runs the batches). Here: opening the file, migrations, the
// execution counts, the task cache and every read and write of Tx.
// This process is the only one that writes the file (see ownership.ts).
import Database from "better-sqlite3";
import { Checkpointer } from "./checkpointer.js";
import { noHolds } from "../../operator/holds.js";
import { Ownership } from "./ownership.js";
import {
  FailureCounts,
  WorkerList,
  attemptFromRow,
  blob,
  bucketFromRow,
  bucketParams,
  decisionParams,
  executionFromRow,
  executionInsertValues,
  LABELS_VALUE,
  failureParams,
  insertedExecution,
  parseLabels,
  taskFromRow,
} from "../rows.js";
import type { Row } from "../rows.js";
import { TimedStatement, prepareStatements } from "./statements.js";
import { listPage } from "../list-page.js";
import { GroupCommit } from "./group-commit.js";
import type { TransactionControl } from "./group-commit.js";
import type { Statements } from "./statements.js";
import { migrations, sqliteBinding } from "../../runtime/runtime.js";
import type { HoldMeter } from "../../operator/holds.js";
import { ExecutionStateNumber } from "../store.js";
import type { AttemptRecord, AttemptRef, BucketState, DueExecution, ExecutionRecord, NewAttempt, NewExecution, Store, TaskRecord, Tx, WorkerRecord } from "../store.js";

export type Durability = "normal" | "full";

export interface SqliteStoreOptions {
  /** The database file; ":memory:" for a throwaway one. */
  path: string;
  /** synchronous=NORMAL (default) survives a process crash; FULL also survives power loss. */
  durability?: Durability;
  /** Called after each commit with the number of changes it carried and how long COMMIT took. */
  onCommit?: (changes: number, ms: number) => void;
  /**
   * Run WAL checkpoints on a thread of their own (the default for a file)
   * instead of inside an occasional COMMIT on the event loop.
   */
  backgroundCheckpoints?: boolean;
  /** Told when background checkpoints fail or stop; the writer's own checkpoints then take over. */
  onWarning?: (message: string) => void;
  /** Told how long each statement and each commit held the event loop. */
  holds?: HoldMeter;
}

/**
 * The writer's automatic checkpoint threshold, in pages, while a background
 * thread checkpoints: a backstop (about 16 MB of WAL) for when the thread
 * falls behind or is gone. SQLite's default of 1000 applies otherwise.
 */
const BACKSTOP_CHECKPOINT_PAGES = 4000;

const PENDING = ExecutionStateNumber.pending;
const RUNNING = ExecutionStateNumber.running;
const SUCCEEDED = ExecutionStateNumber.succeeded;

export class SqliteStore implements Store, Tx {
  readonly peers = null;
  readonly groupCommit = true;
  private readonly db: Database.Database;
  private readonly statements: Statements;
  private readonly batches: GroupCommit<Tx>;
  /** Every statement this store prepared, by name, for the plan guard and the hold metric. */
  private readonly prepared = new Map<string, string>();
  private readonly holds: HoldMeter;
  /**
   * Count changes of the open batch, flat: task, state, +1 or -1, … They are
   * added up and written to execution_counts just before the batch commits.
   */
  private countChanges: (string | number)[] = [];
  /** Failures counted in the open batch, written just before it commits. */
  private failureChanges: Parameters<Tx["failureCounted"]>[0][] = [];
  /** Task declarations as committed, by name (null: never declared); this process is the only writer. */
  private readonly tasks = new Map<string, TaskRecord | null>();
  /** Tasks declared in the open batch: read from the database until it commits. */
  private readonly tasksInBatch = new Set<string>();
  private readonly onCommit: (changes: number, ms: number) => void;
  private readonly checkpointer: Checkpointer | null = null;
  private readonly ownership: Ownership | null;

  constructor(options: SqliteStoreOptions) {
    this.onCommit = options.onCommit ?? (() => {});
    this.holds = options.holds ?? noHolds;
    const inMemory = options.path === ":memory:" || options.path === "";
    // Claimed before the database is opened: a second coordinator on the file stops here, having changed nothing.
    this.ownership = inMemory ? null : Ownership.claim(options.path);
    let opened: Database.Database | undefined;
    try {
      this.db = opened = new Database(options.path, { nativeBinding: sqliteBinding() });
      this.db.pragma("journal_mode = WAL");
      this.db.pragma(`synchronous = ${options.durability === "full" ? "FULL" : "NORMAL"}`);
      this.db.pragma("foreign_keys = ON");
      this.db.pragma("busy_timeout = 5000");
      // 32 MiB of page cache (the default is 2 MiB): with a million pending rows
      // the hot index pages stay in memory, and RSS stays under 200 MB.
      this.db.pragma("cache_size = -32768");
      this.migrate();
      this.statements = prepareStatements((name, sql, mode) => this.statement(name, sql, mode));
      // Transaction control, prepared once rather than parsed at every change.
      const control: TransactionControl = {
        begin: this.statement("begin", "BEGIN IMMEDIATE"),
        commit: this.statement("commit", "COMMIT"),
        rollback: this.statement("rollback", "ROLLBACK"),
        savepoint: this.statement("savepoint", "SAVEPOINT change"),
        release: this.statement("release", "RELEASE change"),
        rollbackToSavepoint: this.statement("rollbackToSavepoint", "ROLLBACK TO change"),
      };
      this.batches = new GroupCommit<Tx>(this.db, control, this, {
        changeStarted: () => {
          const counted = this.countChanges.length;
          const failures = this.failureChanges.length;
          return () => {
            this.countChanges.length = counted;
            this.failureChanges.length = failures;
            this.tasks.clear();
          };
        },
        beforeCommit: () => {
          const counts = this.pendingCounts();
          this.countChanges = [];
          for (const { task, state, delta } of counts) this.statements.countAdd.run(task, state, delta);
          if (this.failureChanges.length > 0) {
            const sums = new FailureCounts();
            for (const failure of this.failureChanges) sums.add(failure);
            this.failureChanges = [];
            for (const s of sums.take()) this.statements.failureAdd.run(s.task, s.minute, s.type, s.failures, s.retries);
          }
        },
        committed: (changes, ms) => {
          this.tasksInBatch.clear();
          this.onCommit(changes, ms);
          this.checkpointer?.committed(performance.now());
        },
        rolledBack: () => {
          this.countChanges = [];
          this.failureChanges = [];
          this.tasks.clear();
          this.tasksInBatch.clear();
        },
      });
      if ((options.backgroundCheckpoints ?? true) && !inMemory) {
        this.db.pragma(`wal_autocheckpoint = ${BACKSTOP_CHECKPOINT_PAGES}`);
        this.checkpointer = new Checkpointer({
          path: options.path,
          synchronous: options.durability === "full" ? "FULL" : "NORMAL",
          onError: options.onWarning,
        });
      }
    } catch (error) {
      opened?.close();
      this.ownership?.release();
      throw error;
    }
  }

  /** A pragma's current value, for tests and diagnostics. */
  pragma(name: string): unknown {
    return this.db.pragma(name, { simple: true });
  }

  /** Every statement the store has prepared, by name: what the plan guard explains. */
  get statementTexts(): ReadonlyMap<string, string> {
    return this.prepared;
  }

  /** Background WAL checkpoints completed so far (0 when they run inside commits). */
  get checkpoints(): number {
    return this.checkpointer?.checkpoints ?? 0;
  }

  private migrate(): void {
    this.db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT");
    const applied = new Set(
      (this.db.prepare("SELECT version FROM schema_migrations").all() as { version: number }[]).map((r) => r.version),
    );
    for (const { name: file, sql } of migrations("sqlite")) {
      const version = Number(file.slice(0, 4));
      if (applied.has(version)) continue;
      this.db.transaction(() => {
        this.db.exec(sql);
        this.db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(version, file, Date.now());
      })();
    }
  }

  /** Prepares a statement under a name that the hold metric and the plan guard report. */
  private statement(name: string, sql: string, mode?: "raw" | "pluck"): TimedStatement {
    const prepared = this.db.prepare(sql);
    if (mode === "raw") prepared.raw();
    if (mode === "pluck") prepared.pluck();
    this.prepared.set(name, sql);
    return new TimedStatement(prepared, this.holds.observer(name));
  }

  /** Transactions committed since the store was opened. */
  get commits(): number {
    return this.batches.commits;
  }

  write<T>(change: (tx: Tx) => Promise<T>): Promise<T> {
    return this.batches.write(change);
  }

  read<T>(query: (tx: Tx) => Promise<T>): Promise<T> {
    return this.batches.read(query);
  }

  afterCommit(effect: () => void): void {
    this.batches.afterCommit(effect);
  }

  /** Counts an execution in (`delta` 1) or out of (-1) a task and state, when the batch commits. */
  private countChange(task: string, state: number, delta: 1 | -1): void {
    this.countChanges.push(task, state, delta);
  }

  /** The open batch's count changes, added up by task and state; none that sum to 0. */
  private pendingCounts(): { task: string; state: number; delta: number }[] {
    // By task, then by state number (1 to 7): no key to build per change.
    const byTask = new Map<string, Int32Array>();
    const changes = this.countChanges;
    for (let i = 0; i < changes.length; i += 3) {
      const task = changes[i] as string;
      let deltas = byTask.get(task);
      if (!deltas) byTask.set(task, (deltas = new Int32Array(8)));
      deltas[changes[i + 1] as number]! += changes[i + 2] as number;
    }
    const sums: { task: string; state: number; delta: number }[] = [];
    for (const [task, deltas] of byTask) {
      deltas.forEach((delta, state) => {
        if (delta !== 0) sums.push({ task, state, delta });
      });
    }
    return sums;
  }

  /** Commits what is pending and closes the database; resolves once the checkpoint thread has closed its connection too. */
  async close(): Promise<void> {
    // What is queued runs first; then the last batch commits.
    await this.batches.drain();
    this.batches.flush();
    this.db.close();
    // The thread closes after the writer, so that its close is the last one,
    // which checkpoints the WAL and deletes it. Closing both at once left the
    // WAL behind whenever each saw the other still open.
    const closed = this.checkpointer?.close() ?? Promise.resolve();
    // Released last, once nothing of this process has the file open.
    return closed.finally(() => this.ownership?.release());
  }

  taskGet(name: string): TaskRecord | undefined {
    const cached = this.tasks.get(name);
    if (cached !== undefined) return cached ?? undefined;
    const row = this.statements.taskGet.get(name) as Row | undefined;
    const task = row && taskFromRow(row);
    if (!this.tasksInBatch.has(name)) this.tasks.set(name, task ?? null);
    return task;
  }

  taskList(): TaskRecord[] {
    return (this.statements.taskList.all() as Row[]).map(taskFromRow);
  }

  taskUpsert(task: TaskRecord): void {
    this.tasks.delete(task.name);
    this.tasksInBatch.add(task.name);
    this.statements.taskUpsert.run({
      name: task.name,
      retry_policy: blob(task.retryPolicy),
      timeout_ms: task.timeoutMs,
      budget_per_second: task.retryBudget?.perSecond ?? null,
      budget_burst: task.retryBudget?.burst ?? null,
      worker_id: task.workerId,
      declared_at: task.declaredAt,
    });
    if (task.retryBudget !== null) this.statements.retryBucketCreate.run(task.name);
  }

  retryBucketGet(task: string): BucketState | undefined {
    const row = this.statements.retryBucketGet.get(task) as [number | null, number | null, string | null] | undefined;
    return row === undefined ? undefined : bucketFromRow(...row);
  }

  retryBucketPut(task: string, bucket: BucketState): void {
    this.statements.retryBucketPut.run(task, ...bucketParams(bucket));
  }

  executionInsert(executions: NewExecution[]): ExecutionRecord[] {
    return executions.map((params) => this.executionInsertOne(params));
  }

  private executionInsertOne(params: NewExecution): ExecutionRecord {
    // The record is built here rather than read back with RETURNING *, which
    // costs more than the insert itself.
    const values = executionInsertValues(params);
    const { lastInsertRowid } = this.statements.executionInsert.run(...values);
    const seq = Number(lastInsertRowid);
    if (values[LABELS_VALUE] !== "{}") this.statements.labelInsert.run(seq, values[LABELS_VALUE]);
    this.countChange(params.task, params.state, 1);
    return insertedExecution(seq, params);
  }

  executionGet(id: string): ExecutionRecord | undefined {
    const row = this.statements.executionGet.get(id) as Row | undefined;
    return row && executionFromRow(row);
  }

  executionGetBySeq(seq: number): ExecutionRecord | undefined {
    const row = this.statements.executionGetBySeq.get(seq) as Row | undefined;
    return row && executionFromRow(row);
  }

  executionVersions(seqs: readonly number[]): { seq: number; version: number }[] {
    const found: { seq: number; version: number }[] = [];
    for (const seq of seqs) {
      const version = this.statements.executionVersion.get(seq) as number | undefined;
      if (version !== undefined) found.push({ seq, version });
    }
    return found;
  }

  executionGetByIdempotencyKey(key: string): ExecutionRecord | undefined {
    const row = this.statements.executionGetByKey.get(key) as Row | undefined;
    return row && executionFromRow(row);
  }

  executionList(params: Parameters<Tx["executionList"]>[0]): ReturnType<Tx["executionList"]> {
    const { task } = params;
    const statements = this.statements;
    return listPage<Row>(params, SUCCEEDED, {
      newestSeq: () => statements.executionMaxSeq.get() as number | null,
      oldestSeq: () => statements.executionMinSeq.get() as number | null,
      succeeded: (top, floor, limit) =>
        (task === undefined
          ? statements.executionListSucceeded.all(top, floor, limit)
          : statements.executionListSucceededByTask.all(task, top, floor, limit)) as Row[],
      inState: (state, before, limit) =>
        (task === undefined
          ? statements.executionListByState.all(state, before, limit)
          : statements.executionListByTaskAndState.all(task, state, before, limit)) as Row[],
      all: (before, limit) =>
        (task === undefined ? statements.executionList.all(before, limit) : statements.executionListByTask.all(task, before, limit)) as Row[],
      labelled: (key, value, others, before, floor, limit) =>
        statements.executionListByLabel.all({ key, value, others, before, floor, limit, task: task ?? null, state: params.state ?? null }) as Row[],
      labelWindowFloor: (key, value, before) => (statements.executionLabelWindowFloor.get(key, value, before) as number | undefined) ?? null,
    }, executionFromRow);
  }

  executionClaimDue(params: { tasks: readonly string[]; now: number; limit: number }): DueExecution[] {
    const due = this.executionListDue(params);
    let claimed = 0;
    for (const record of due) {
      // Guarded on PENDING and the attempt count: an execution never has two attempts RUNNING.
      if (this.statements.executionStart.run(record.seq, record.attemptCount).changes !== 1) continue;
      this.moved(record.task, PENDING, RUNNING);
      due[claimed++] = record;
    }
    due.length = claimed;
    return due;
  }

  private executionListDue(params: { tasks: readonly string[]; now: number; limit: number }): DueExecution[] {
    // One indexed range scan per task, merged: cheaper than one query with
    // IN (...) and ORDER BY, which cannot use the index for ordering.
    const due: DueExecution[] = [];
    for (const task of params.tasks.length === 1 ? params.tasks : new Set(params.tasks)) {
      const rows = this.statements.executionListDueOne.all(task, params.now, params.limit) as unknown[][];
      for (const row of rows) {
        due.push({
          seq: row[0] as number,
          id: row[1] as string,
          task: row[2] as string,
          arguments: { data: row[3] as Buffer, contentType: row[4] as string },
          labels: parseLabels(row[5] as string),
          nextAttemptAt: row[6] as number,
          attemptCount: row[7] as number,
        });
      }
    }
    // Each task's rows come in due order; more than one task must be merged.
    if (params.tasks.length > 1) due.sort((a, b) => a.nextAttemptAt - b.nextAttemptAt || a.seq - b.seq);
    if (due.length > params.limit) due.length = params.limit;
    return due;
  }

  executionSetRetry(params: { seq: number; task: string; nextAttemptAt: number; runFailures: number }): boolean {
    if (this.statements.executionSetRetry.run(params.nextAttemptAt, params.runFailures, params.seq).changes !== 1) return false;
    this.moved(params.task, RUNNING, PENDING);
    return true;
  }

  executionRerun(params: { seq: number; task: string; from: number; now: number }): boolean {
    if (this.statements.executionRerun.run(params.now, params.now, params.seq, params.from).changes !== 1) return false;
    this.moved(params.task, params.from, PENDING);
    return true;
  }

  /** Counts one execution of `task` out of `from` and into `to`. */
  private moved(task: string, from: number, to: number): void {
    this.countChange(task, from, -1);
    this.countChange(task, to, 1);
  }

  executionFinish(params: Parameters<Tx["executionFinish"]>[0]): boolean {
    // "open" tries RUNNING, then PENDING: each guarded statement knows the
    // state it leaves, which the counts need.
    if (this.finishFrom(this.statements.executionFinishRunning, params)) {
      this.moved(params.task, RUNNING, params.state);
      return true;
    }
    if (params.from === "open" && this.finishFrom(this.statements.executionFinishPending, params)) {
      this.moved(params.task, PENDING, params.state);
      return true;
    }
    return false;
  }

  private finishFrom(statement: TimedStatement, params: Parameters<Tx["executionFinish"]>[0]): boolean {
    const info = statement.run(
      params.state,
      params.finishedAt,
      blob(params.result?.data),
      params.result?.contentType ?? null,
      ...failureParams(params.failure),
      params.seq,
    );
    return info.changes === 1;
  }

  attemptInsert(attempts: NewAttempt[]): number[] {
    return attempts.map((attempt) =>
      Number(
        this.statements.attemptInsert.run(
          attempt.executionSeq,
          attempt.number,
          attempt.workerId,
          attempt.scheduledAt,
          attempt.startedAt,
          blob(attempt.leaseSecret),
          attempt.leaseMs,
          attempt.leaseExpiresAt,
          attempt.timeoutAt,
        ).lastInsertRowid,
      ),
    );
  }

  attemptGet(ids: readonly number[]): (AttemptRef | undefined)[] {
    return ids.map((id) => this.attemptGetOne(id));
  }

  private attemptGetOne(id: number): AttemptRef | undefined {
    const row = this.statements.attemptGet.get(id) as unknown[] | undefined;
    if (!row) return undefined;
    const executionSeq = row[0] as number;
    return {
      id,
      executionSeq,
      number: row[1] as number,
      state: row[2] as number,
      workerId: row[3] as string,
      scheduledAt: row[4] as number,
      startedAt: row[5] as number,
      leaseSecret: row[6] as Buffer,
      leaseMs: row[7] as number,
      leaseExpiresAt: row[8] as number,
      timeoutAt: row[9] as number | null,
      execution: {
        seq: executionSeq,
        id: row[10] as string,
        task: row[11] as string,
        retryPolicy: (row[12] as Buffer | null) ?? null,
        runFailures: row[13] as number,
        runScheduledAt: row[14] as number,
      },
    };
  }

  attemptList(executionSeq: number): AttemptRecord[] {
    return (this.statements.attemptList.all(executionSeq) as Row[]).map(attemptFromRow);
  }

  attemptGetRunning(executionSeq: number): AttemptRecord | undefined {
    const row = this.statements.attemptGetRunning.get(executionSeq) as Row | undefined;
    return row && attemptFromRow(row);
  }

  attemptExtendLease(leases: { id: number; leaseSecret: Uint8Array; leaseExpiresAt: number }[]): number {
    let extended = 0;
    for (const lease of leases) {
      extended += this.statements.attemptExtendLease.run({
        id: lease.id,
        lease_secret: blob(lease.leaseSecret),
        lease_expires_at: lease.leaseExpiresAt,
      }).changes;
    }
    return extended;
  }

  attemptFinish(params: Parameters<Tx["attemptFinish"]>[0]): boolean {
    const info = this.statements.attemptFinish.run(
      params.state,
      params.finishedAt,
      blob(params.retryPolicy),
      ...failureParams(params.failure),
      ...decisionParams(params.decision),
      params.id,
      blob(params.leaseSecret),
    );
    return info.changes === 1;
  }

  attemptReturn(params: { id: number; leaseSecret: Uint8Array }): boolean {
    return this.db.transaction(() => {
      const row = this.statements.attemptDelete.get({ id: params.id, lease_secret: blob(params.leaseSecret) }) as
        | { execution_seq: number; number: number; scheduled_at: number }
        | undefined;
      if (!row) return false;
      const restored = this.statements.executionUnstart.get({ seq: row.execution_seq, number: row.number, scheduled_at: row.scheduled_at }) as
        | { task: string }
        | undefined;
      // Both or neither: a half-undone lease would break the attempt count.
      if (!restored) throw new Error(`attempt ${params.id} is not the running attempt of its execution`);
      this.moved(restored.task, RUNNING, PENDING);
      return true;
    })();
  }

  attemptListExpired(params: { now: number; limit: number }): number[] {
    const expired = this.statements.attemptListLeaseExpired.all(params.now, params.limit) as number[];
    if (expired.length >= params.limit) return expired;
    const timedOut = this.statements.attemptListTimedOut.all(params.now, params.limit - expired.length) as number[];
    if (timedOut.length === 0) return expired;
    // An attempt past both its lease and its timeout is listed once.
    return [...new Set([...expired, ...timedOut])];
  }

  nextDeadline(now: number): number | null {
    const candidates = [
      this.statements.nextPendingAt.get(now) as number | null,
      this.statements.nextLeaseExpiry.get() as number | null,
      this.statements.nextTimeout.get() as number | null,
    ].filter((t): t is number => t !== null);
    return candidates.length === 0 ? null : Math.min(...candidates);
  }

  executionCountByTaskAndState(): { task: string; state: number; count: number }[] {
    // The committed counts, plus what the open batch has changed so far.
    const counts = new Map<string, { task: string; state: number; count: number }>();
    for (const row of this.statements.countByTaskAndState.all() as { task: string; state: number; count: number }[]) {
      counts.set(`${row.state}:${row.task}`, row);
    }
    for (const { task, state, delta } of this.pendingCounts()) {
      const key = `${state}:${task}`;
      const row = counts.get(key);
      if (row) row.count += delta;
      else counts.set(key, { task, state, count: delta });
    }
    return [...counts.values()].filter((row) => row.count !== 0);
  }

  executionCountDueOfTask(params: { task: string; now: number; cap: number }): number {
    return this.statements.countDueOfTask.get(params.task, params.now, params.cap) as number;
  }

  executionCountPending(now: number): { due: number; delayed: number } {
    let pending = 0;
    for (const { state, count } of this.executionCountByTaskAndState()) if (state === PENDING) pending += count;
    const due = this.statements.countDue.get(now) as number;
    return { due, delayed: Math.max(0, pending - due) };
  }

  executionDeleteFinished(params: { finishedBefore: number; fromSeq: number; limit: number }): { deleted: number; nextSeq: number | null } {
    const rows = this.statements.retentionWalk.all(params.fromSeq, params.limit) as [number, string, number, number, number | null, string][];
    let deleted = 0;
    for (const [seq, task, state, createdAt, finishedAt, labels] of rows) {
      // finished_at >= created_at: from here on nothing can have finished early enough.
      if (createdAt >= params.finishedBefore) return { deleted, nextSeq: null };
      if (finishedAt === null || finishedAt >= params.finishedBefore) continue;
      this.statements.retentionDeleteAttempts.run(seq);
      for (const [key, value] of Object.entries(parseLabels(labels))) this.statements.retentionDeleteLabel.run(key, value, seq);
      // Both or neither (the caller's write() rolls back): attempts never outlive their execution.
      if (this.statements.retentionDeleteExecution.run(seq, params.finishedBefore).changes !== 1) {
        throw new Error(`execution ${seq} changed while retention was deleting it`);
      }
      this.countChange(task, state, -1);
      deleted++;
    }
    return { deleted, nextSeq: rows.length < params.limit ? null : rows[rows.length - 1]![0] + 1 };
  }

  failureCounted(params: Parameters<Tx["failureCounted"]>[0]): void {
    this.failureChanges.push(params);
  }

  failureStats(since: number): { task: string; type: string; failures: number; retries: number }[] {
    // With what the open batch has counted so far, as executionCountByTaskAndState does.
    const sums = new Map<string, { task: string; type: string; failures: number; retries: number }>();
    const add = (task: string, type: string, failures: number, retries: number) => {
      const key = `${task} ${type}`;
      const sum = sums.get(key) ?? { task, type, failures: 0, retries: 0 };
      sum.failures += failures;
      sum.retries += retries;
      sums.set(key, sum);
    };
    for (const row of this.statements.failureStats.all(Math.floor(since / 60_000)) as { task: string; type: string; failures: number; retries: number }[]) {
      add(row.task, row.type, row.failures, row.retries);
    }
    for (const f of this.failureChanges) if (f.at >= since) add(f.task, f.type, 1, f.retried ? 1 : 0);
    return [...sums.values()];
  }

  failureStatsForget(before: number): void {
    this.statements.failureForget.run(Math.floor(before / 60_000));
  }

  workerSeen(params: { workerId: string; tasks: readonly string[]; at: number }): void {
    for (const task of params.tasks) this.statements.workerSeen.run(params.workerId, task, params.at);
  }

  workerList(params: { task?: string; seenSince: number; limit: number }): WorkerRecord[] {
    const workers = new WorkerList(params.limit);
    if (params.task === undefined) {
      // Rows come newest first, so the first `limit` workers met are the most recent.
      const rows = this.statements.workerListRecent.all(params.seenSince, params.limit * 16) as [string, string, number][];
      for (const [id, task, seenAt] of rows) workers.add(id, task, seenAt);
    } else {
      for (const id of this.statements.workerListOfTask.all(params.task, params.seenSince, params.limit) as string[]) {
        for (const [task, seenAt] of this.statements.workerTasks.all(id) as [string, number][]) if (seenAt >= params.seenSince) workers.add(id, task, seenAt);
      }
    }
    return workers.list();
  }

  workerForget(before: number): void {
    this.statements.workerForget.run(before);
  }
}

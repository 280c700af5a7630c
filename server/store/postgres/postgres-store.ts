// The PostgreSQL store: node-postgres, pooled, with named prepared statements.
// Each change is a transaction of its own at READ COMMITTED, run again after a
// serialization failure or a deadlock. Rows a change decides on are locked
// (FOR UPDATE) when read, and every state change is guarded on the current
// state and the lease secret, so that any number of coordinator nodes can
// share one database: each attempt is claimed, extended and ended once.
import pg from "pg";
import type {
  AttemptRecord,
  AttemptRef,
  BucketState,
  DueExecution,
  ExecutionRecord,
  FailureRecord,
  NewAttempt,
  NewExecution,
  Store,
  TaskRecord,
  Tx,
  WorkerRecord,
} from "../store.js";
import { AttemptStateNumber, ExecutionStateNumber, RERUNNABLE_STATES, StoreUnavailableError } from "../store.js";
import { migrations } from "../../runtime/runtime.js";
import { LABEL_LIST_WINDOW, listPage } from "../list-page.js";
import {
  FailureCounts,
  WorkerList,
  attemptFromRow,
  blob,
  bucketFromRow,
  bucketParams,
  budgetFromRow,
  decisionParams,
  executionFromRow,
  executionInsertValues,
  failureParams,
  insertedExecution,
  parseLabels,
  taskFromRow,
} from "../rows.js";
import type { Row } from "../rows.js";
import { DatabaseClock } from "./clock.js";
import { isConnectionLoss, isRetryable, unavailableOr } from "./errors.js";
import { CHANNEL, PostgresPeers } from "./peers.js";

const PENDING = ExecutionStateNumber.pending;
const RUNNING = ExecutionStateNumber.running;
const SUCCEEDED = ExecutionStateNumber.succeeded;
const RERUNNABLE = RERUNNABLE_STATES.join(", ");
const ATTEMPT_RUNNING = AttemptStateNumber.running;

/** A transaction that lost a race is run again at most this many times. */
const MAX_RUNS = 10;
/** Count changes are folded into execution_counts at most this often. */
const FOLD_COUNTS_EVERY_MS = 10_000;
/** How long a connection or a statement may wait for the database, unless the options say otherwise. */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** How often an idle node asks the database whether it answers, so that health follows it. */
const PROBE_EVERY_MS = 1000;
/** pg_advisory_lock keys: migrations, folding counts, and retention. */
const MIGRATION_LOCK = 0x72657072; // "repr"
const FOLD_LOCK = 0x72657073;
const RETENTION_LOCK = 0x72657074;

// bigint columns hold milliseconds and ids, all well inside 2^53.
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 20 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
};

export interface PostgresStoreOptions {
  /** postgres:// or postgresql:// URL. */
  url: string;
  /** Pooled connections for changes and reads (default 10); one more is held for LISTEN. */
  poolSize?: number;
  onWarning?: (message: string) => void;
  /** Called after each committed change with how long its COMMIT took. */
  onCommit?: (changes: number, ms: number) => void;
  /**
   * How long to wait for the database to accept a connection or to answer a
   * statement (default DEFAULT_TIMEOUT_MS). A database that stops answering
   * without closing its connections (a network partition, a stopped host)
   * then fails calls with UNAVAILABLE instead of holding them. Migrations are
   * not bound by it.
   */
  timeoutMs?: number;
}


/** A task's declaration, joined as t (NULL columns when the task was never declared). */
const TASK_COLUMNS = `t.name AS task_name, t.retry_policy AS task_retry_policy, t.timeout_ms AS task_timeout_ms,
  t.budget_per_second AS task_budget_per_second, t.budget_burst AS task_budget_burst, t.worker_id AS task_worker_id, t.declared_at AS task_declared_at`;

const EXECUTION_COLUMNS = `seq, id, task, state, version, arguments, arguments_type, retry_policy, result, result_type,
  failure_type, failure_message, failure_stack, failure_non_retryable, failure_retry_after_ms, next_attempt_at, created_at,
  finished_at, idempotency_key, labels, attempt_count, run_failures, run_scheduled_at`;
const EXECUTION_COLUMNS_OF_E = EXECUTION_COLUMNS.replace(/\w+/g, "e.$&");

/** Every statement, by name: node-postgres prepares each once per connection. */
const SQL = {
  taskGet: "SELECT name, retry_policy, timeout_ms, budget_per_second, budget_burst, worker_id, declared_at FROM reprise.tasks WHERE name = $1",
  taskList: "SELECT name, retry_policy, timeout_ms, budget_per_second, budget_burst, worker_id, declared_at FROM reprise.tasks ORDER BY name",
  countDueOfTask: `SELECT count(*)::integer AS count FROM (SELECT 1 FROM reprise.executions
    WHERE state = ${PENDING} AND task = $1 AND next_attempt_at <= $2 LIMIT $3) due`,
  taskUpsert: `INSERT INTO reprise.tasks (name, retry_policy, timeout_ms, budget_per_second, budget_burst, worker_id, declared_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (name) DO UPDATE SET retry_policy = excluded.retry_policy, timeout_ms = excluded.timeout_ms,
      budget_per_second = excluded.budget_per_second, budget_burst = excluded.budget_burst,
      worker_id = excluded.worker_id, declared_at = excluded.declared_at`,
  retryBucketCreate: "INSERT INTO reprise.retry_buckets (task) VALUES ($1) ON CONFLICT (task) DO NOTHING",
  retryBucketGet: "SELECT tokens, at, booked FROM reprise.retry_buckets WHERE task = $1 FOR UPDATE",
  retryBucketRead: "SELECT tokens, at, booked FROM reprise.retry_buckets WHERE task = $1",
  retryBucketPut: `INSERT INTO reprise.retry_buckets (task, tokens, at, booked) VALUES ($1, $2, $3, $4)
    ON CONFLICT (task) DO UPDATE SET tokens = excluded.tokens, at = excluded.at, booked = excluded.booked`,
  // Each statement that starts a decision also brings the declarations of the
  // tasks involved (${TASK_COLUMNS}), read in the same statement: the change
  // then needs no round trip of its own for them.
  executionInsert: `WITH inserted AS (INSERT INTO reprise.executions (id, task, state, arguments, arguments_type, retry_policy, next_attempt_at, created_at,
      idempotency_key, labels, run_scheduled_at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bytea[], $5::text[], $6::bytea[], $7::bigint[], $8::bigint[],
      $9::text[], $10::text[], $11::bigint[])
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING seq, id, task, labels),
  labelled AS (INSERT INTO reprise.execution_labels (key, value, execution_seq)
    SELECT l.key, l.value, i.seq FROM inserted i CROSS JOIN LATERAL json_each_text(i.labels::json) l WHERE i.labels <> '{}')
    SELECT i.seq, i.id, i.task, ${TASK_COLUMNS} FROM inserted i LEFT JOIN reprise.tasks t ON t.name = i.task`,
  executionGet: `SELECT ${EXECUTION_COLUMNS} FROM reprise.executions WHERE id = $1`,
  executionGetForUpdate: `SELECT ${EXECUTION_COLUMNS} FROM reprise.executions WHERE id = $1 FOR UPDATE`,
  executionGetBySeq: `SELECT ${EXECUTION_COLUMNS} FROM reprise.executions WHERE seq = $1`,
  executionVersions: "SELECT seq, version FROM reprise.executions WHERE seq = ANY($1)",
  executionGetByKey: `SELECT ${EXECUTION_COLUMNS} FROM reprise.executions WHERE idempotency_key = $1`,
  executionList: `SELECT ${EXECUTION_COLUMNS} FROM reprise.executions WHERE seq < $1 ORDER BY seq DESC LIMIT $2`,
  executionListByTask: `SELECT ${EXECUTION_COLUMNS} FROM reprise.executions WHERE task = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3`,
  executionListByState: `SELECT ${EXECUTION_COLUMNS} FROM reprise.executions WHERE state = $1 AND state <> ${SUCCEEDED} AND seq < $2
    ORDER BY seq DESC LIMIT $3`,
  executionListByTaskAndState: `SELECT ${EXECUTION_COLUMNS} FROM reprise.executions
    WHERE task = $1 AND state = $2 AND state <> ${SUCCEEDED} AND seq < $3 ORDER BY seq DESC LIMIT $4`,
  executionListSucceeded: `SELECT ${EXECUTION_COLUMNS} FROM reprise.executions
    WHERE seq < $1 AND seq >= $2 AND state = ${SUCCEEDED} ORDER BY seq DESC LIMIT $3`,
  executionListSucceededByTask: `SELECT ${EXECUTION_COLUMNS} FROM reprise.executions
    WHERE task = $1 AND seq < $2 AND seq >= $3 AND state = ${SUCCEEDED} ORDER BY seq DESC LIMIT $4`,
  // By label: the label's index newest first, down to the window's floor, then the rest of the filter.
  executionListByLabel: `SELECT ${EXECUTION_COLUMNS_OF_E} FROM reprise.execution_labels l JOIN reprise.executions e ON e.seq = l.execution_seq
    WHERE l.key = $1 AND l.value = $2 AND l.execution_seq < $3 AND l.execution_seq >= $4
      AND ($5::text IS NULL OR e.task = $5) AND ($6::smallint IS NULL OR e.state = $6)
      AND NOT EXISTS (SELECT 1 FROM json_each_text($7::json) o WHERE NOT EXISTS (
        SELECT 1 FROM reprise.execution_labels x WHERE x.key = o.key AND x.value = o.value AND x.execution_seq = e.seq))
    ORDER BY l.execution_seq DESC LIMIT $8`,
  executionLabelWindowFloor: `SELECT execution_seq AS seq FROM reprise.execution_labels WHERE key = $1 AND value = $2 AND execution_seq < $3
    ORDER BY execution_seq DESC LIMIT 1 OFFSET ${LABEL_LIST_WINDOW - 1}`,
  executionMaxSeq: "SELECT max(seq) AS seq FROM reprise.executions",
  executionMinSeq: "SELECT min(seq) AS seq FROM reprise.executions",
  // Claim in one statement: lock due rows no other node holds, oldest due
  // first, and move them to RUNNING.
  executionClaimDue: `WITH claimed AS (WITH due AS (
      SELECT seq, next_attempt_at FROM reprise.executions
      WHERE state = ${PENDING} AND task = ANY($1) AND next_attempt_at <= $2
      ORDER BY next_attempt_at, seq LIMIT $3
      FOR UPDATE SKIP LOCKED)
    UPDATE reprise.executions e
    SET state = ${RUNNING}, next_attempt_at = NULL, attempt_count = e.attempt_count + 1, version = e.version + 1
    FROM due WHERE e.seq = due.seq
    RETURNING e.seq, e.id, e.task, e.arguments, e.arguments_type, e.labels, due.next_attempt_at, e.attempt_count - 1 AS attempt_count)
    SELECT c.*, ${TASK_COLUMNS} FROM claimed c LEFT JOIN reprise.tasks t ON t.name = c.task`,
  executionSetRetry: `UPDATE reprise.executions SET state = ${PENDING}, next_attempt_at = $1, run_failures = $3, version = version + 1
    WHERE seq = $2 AND state = ${RUNNING}`,
  executionRerun: `UPDATE reprise.executions SET state = ${PENDING}, next_attempt_at = $1, run_scheduled_at = $1, run_failures = 0,
      finished_at = NULL, result = NULL, result_type = NULL, failure_type = NULL, failure_message = NULL, failure_stack = NULL,
      failure_non_retryable = NULL, failure_retry_after_ms = NULL, version = version + 1
    WHERE seq = $2 AND state = $3 AND state IN (${RERUNNABLE})`,
  // The old state comes from the locked row, so that counts know what was left.
  executionFinish: `WITH old AS (SELECT seq, state FROM reprise.executions WHERE seq = $10 AND state = ANY($11) FOR UPDATE)
    UPDATE reprise.executions e SET state = $1, finished_at = $2, next_attempt_at = NULL, result = $3, result_type = $4,
      failure_type = $5, failure_message = $6, failure_stack = $7, failure_non_retryable = $8, failure_retry_after_ms = $9,
      version = e.version + 1
    FROM old WHERE e.seq = old.seq
    RETURNING old.state AS old_state`,
  attemptInsert: `INSERT INTO reprise.attempts (execution_seq, number, state, worker_id, scheduled_at, started_at, lease_secret, lease_ms,
      lease_expires_at, timeout_at)
    SELECT s, n, ${ATTEMPT_RUNNING}, w, sa, st, ls, lm, le, t
    FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[], $5::bigint[], $6::bytea[], $7::bigint[], $8::bigint[], $9::bigint[])
      AS v(s, n, w, sa, st, ls, lm, le, t)
    RETURNING id, execution_seq`,
  attemptGet: `SELECT a.*, e.id AS execution_id, e.task, e.state AS execution_state, e.retry_policy AS execution_retry_policy,
      e.run_failures, coalesce(e.run_scheduled_at, e.created_at) AS run_scheduled_at, ${TASK_COLUMNS}
    FROM reprise.attempts a JOIN reprise.executions e ON e.seq = a.execution_seq LEFT JOIN reprise.tasks t ON t.name = e.task
    WHERE a.id = ANY($1)`,
  attemptList: "SELECT * FROM reprise.attempts WHERE execution_seq = $1 ORDER BY number",
  attemptGetRunning: `SELECT * FROM reprise.attempts WHERE execution_seq = $1 AND state = ${ATTEMPT_RUNNING}`,
  attemptExtendLease: `UPDATE reprise.attempts a SET lease_expires_at = v.expires
    FROM unnest($1::bigint[], $2::bytea[], $3::bigint[]) AS v(id, secret, expires)
    WHERE a.id = v.id AND a.state = ${ATTEMPT_RUNNING} AND a.lease_secret = v.secret`,
  // The deferred forms (see PostgresTx.flush): many rows in one statement.
  attemptFinishMany: `UPDATE reprise.attempts a SET state = v.state, finished_at = v.finished_at, retry_policy = v.retry_policy,
      failure_type = v.ft, failure_message = v.fm, failure_stack = v.fs, failure_non_retryable = v.fn, failure_retry_after_ms = v.fr,
      retry_rule = v.rule, retry_at = v.rat, retry_computed_at = v.rca
    FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::bytea[], $5::text[], $6::text[], $7::text[], $8::boolean[], $9::bigint[],
      $10::smallint[], $11::bigint[], $12::bigint[])
      AS v(id, state, finished_at, retry_policy, ft, fm, fs, fn, fr, rule, rat, rca)
    WHERE a.id = v.id AND a.state = ${ATTEMPT_RUNNING}`,
  executionFinishMany: `UPDATE reprise.executions e SET state = v.state, finished_at = v.finished_at, next_attempt_at = NULL,
      result = v.result, result_type = v.result_type, failure_type = v.ft, failure_message = v.fm, failure_stack = v.fs,
      failure_non_retryable = v.fn, failure_retry_after_ms = v.fr, version = e.version + 1
    FROM unnest($1::bigint[], $2::smallint[], $3::bigint[], $4::bytea[], $5::text[], $6::text[], $7::text[], $8::text[], $9::boolean[],
      $10::bigint[]) AS v(seq, state, finished_at, result, result_type, ft, fm, fs, fn, fr)
    WHERE e.seq = v.seq AND e.state IN (${PENDING}, ${RUNNING})`,
  executionSetRetryMany: `UPDATE reprise.executions e SET state = ${PENDING}, next_attempt_at = v.due, run_failures = v.failures,
      version = e.version + 1
    FROM unnest($1::bigint[], $2::bigint[], $3::int[]) AS v(seq, due, failures) WHERE e.seq = v.seq AND e.state = ${RUNNING}`,
  attemptFinish: `UPDATE reprise.attempts SET state = $1, finished_at = $2, retry_policy = $3,
      failure_type = $4, failure_message = $5, failure_stack = $6, failure_non_retryable = $7, failure_retry_after_ms = $8,
      retry_rule = $11, retry_at = $12, retry_computed_at = $13
    WHERE id = $9 AND state = ${ATTEMPT_RUNNING} AND lease_secret = $10`,
  // Both or neither: the caller rolls back when the attempt went but its execution did not return.
  attemptReturn: `WITH gone AS (
      DELETE FROM reprise.attempts WHERE id = $1 AND state = ${ATTEMPT_RUNNING} AND lease_secret = $2
      RETURNING execution_seq, number, scheduled_at),
    restored AS (
      UPDATE reprise.executions e SET state = ${PENDING}, next_attempt_at = gone.scheduled_at, attempt_count = gone.number - 1,
        version = e.version + 1
      FROM gone WHERE e.seq = gone.execution_seq AND e.state = ${RUNNING} AND e.attempt_count = gone.number
      RETURNING e.task)
    SELECT (SELECT count(*) FROM gone) AS gone, (SELECT task FROM restored) AS task`,
  attemptListLeaseExpired: `SELECT id FROM reprise.attempts WHERE state = ${ATTEMPT_RUNNING} AND lease_expires_at <= $1
    ORDER BY lease_expires_at LIMIT $2`,
  attemptListTimedOut: `SELECT id FROM reprise.attempts WHERE state = ${ATTEMPT_RUNNING} AND timeout_at IS NOT NULL AND timeout_at <= $1
    ORDER BY timeout_at LIMIT $2`,
  nextDeadline: `SELECT
      (SELECT min(next_attempt_at) FROM reprise.executions WHERE state = ${PENDING} AND next_attempt_at > $1) AS pending,
      (SELECT min(lease_expires_at) FROM reprise.attempts WHERE state = ${ATTEMPT_RUNNING}) AS lease,
      (SELECT min(timeout_at) FROM reprise.attempts WHERE state = ${ATTEMPT_RUNNING} AND timeout_at IS NOT NULL) AS timeout`,
  countByTaskAndState: `SELECT task, state, sum(count)::bigint AS count FROM (
      SELECT task, state, count FROM reprise.execution_counts
      UNION ALL SELECT task, state, delta FROM reprise.execution_count_changes) c
    GROUP BY task, state HAVING sum(count) <> 0`,
  countDue: `SELECT count(*)::bigint AS count FROM reprise.executions WHERE state = ${PENDING} AND next_attempt_at <= $1`,
  failureStats: `SELECT task, type, sum(failures)::integer AS failures, sum(retries)::integer AS retries
    FROM reprise.failure_minutes WHERE minute >= $1 GROUP BY task, type`,
  failureForget: "DELETE FROM reprise.failure_minutes WHERE minute < $1",
  countFold: `WITH moved AS (DELETE FROM reprise.execution_count_changes RETURNING task, state, delta)
    INSERT INTO reprise.execution_counts (task, state, count)
    SELECT task, state, sum(delta) FROM moved GROUP BY task, state
    ON CONFLICT (task, state) DO UPDATE SET count = reprise.execution_counts.count + excluded.count`,
  retentionWalk: "SELECT seq, task, state, created_at, finished_at, labels FROM reprise.executions WHERE seq >= $1 ORDER BY seq LIMIT $2",
  retentionDeleteLabels: `DELETE FROM reprise.execution_labels
    WHERE (key, value, execution_seq) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]))`,
  retentionDeleteAttempts: "DELETE FROM reprise.attempts WHERE execution_seq = ANY($1)",
  retentionDeleteExecutions: "DELETE FROM reprise.executions WHERE seq = ANY($1) AND finished_at < $2",
  workerSeen: `INSERT INTO reprise.worker_tasks (worker_id, task, last_seen_at) SELECT $1, unnest($2::text[]), $3
    ON CONFLICT (worker_id, task) DO UPDATE SET last_seen_at = greatest(reprise.worker_tasks.last_seen_at, excluded.last_seen_at)`,
  workerListRecent: `SELECT worker_id, task, last_seen_at FROM reprise.worker_tasks WHERE last_seen_at >= $1
    ORDER BY last_seen_at DESC LIMIT $2`,
  workerListOfTask: `SELECT worker_id FROM reprise.worker_tasks WHERE task = $1 AND last_seen_at >= $2
    ORDER BY last_seen_at DESC LIMIT $3`,
  workerTasks: "SELECT task, last_seen_at FROM reprise.worker_tasks WHERE worker_id = $1",
  workerForget: "DELETE FROM reprise.worker_tasks WHERE last_seen_at < $1",
  clock: "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now",
  notify: "SELECT pg_notify($1, $2)",
} as const;

export type StatementName = keyof typeof SQL;

/** Every statement this store runs, by name: what the plan guard explains. */
export const statementTexts: ReadonlyMap<string, string> = new Map(Object.entries(SQL));

export class PostgresStore implements Store {
  readonly groupCommit = false;
  readonly peers: PostgresPeers;
  readonly clock: DatabaseClock;
  private readonly pool: pg.Pool;
  private readonly warn: (message: string) => void;
  private readonly availability: ((available: boolean) => void)[] = [];
  private readonly timeoutMs: number;
  /** The node is available while the database answers and the LISTEN connection is up. */
  private available = true;
  private answering = true;
  private listening = true;
  private foldTimer: NodeJS.Timeout | null = null;
  private probeTimer: NodeJS.Timeout | null = null;
  private probing = false;
  private closed = false;

  private constructor(private readonly options: PostgresStoreOptions) {
    this.warn = options.onWarning ?? (() => {});
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize ?? 10,
      types,
      connectionTimeoutMillis: this.timeoutMs,
      query_timeout: this.timeoutMs,
      application_name: "reprise",
    });
    // An idle pooled connection that breaks (the server restarted) is dropped; the next change opens a new one.
    this.pool.on("error", (error) => this.warn(`a pooled PostgreSQL connection failed: ${error.message}`));
    // Every connection listens for its own "error" from its first moment. The
    // pool stops listening when it hands a connection over, and a server that
    // is shutting down can send its goodbye (57P01) in the same read as the
    // connection's first answer, before the holder listens: unheard, that error
    // ended the process. The statement it breaks fails on its own, and a
    // connection that is no longer queryable is dropped when it is released.
    this.pool.on("connect", (client) => client.on("error", () => {}));
    this.clock = new DatabaseClock(async () => (await this.query("clock", [])).rows[0]!.now as number);
    this.peers = new PostgresPeers({
      connect: () => new pg.Client({ connectionString: options.url, types, application_name: "reprise-listen", connectionTimeoutMillis: this.timeoutMs }),
      notify: (payload) => this.query("notify", [CHANNEL, payload]),
      onWarning: this.warn,
      onConnected: (connected) => {
        this.listening = connected;
        this.updateAvailability();
      },
    });
  }

  /** Connects, applies the migrations under an advisory lock, starts listening and measures the clock. */
  static async open(options: PostgresStoreOptions): Promise<PostgresStore> {
    const store = new PostgresStore(options);
    try {
      await store.migrate();
      await store.peers.start();
      await store.clock.start(store.warn);
    } catch (error) {
      await store.close();
      throw unavailableOr(error);
    }
    store.foldTimer = setInterval(() => void store.foldCounts().catch(() => undefined), FOLD_COUNTS_EVERY_MS);
    store.foldTimer.unref();
    store.probeTimer = setInterval(() => void store.probe(), PROBE_EVERY_MS);
    store.probeTimer.unref();
    return store;
  }

  /** Told when the database becomes unreachable (false) and reachable again (true). */
  onAvailability(listener: (available: boolean) => void): void {
    this.availability.push(listener);
  }

  private updateAvailability(): void {
    const available = this.answering && this.listening;
    if (available === this.available) return;
    this.available = available;
    for (const listener of this.availability) listener(available);
  }

  /** Notes whether the database answered; returns the error, as UNAVAILABLE when it did not. */
  private answered(error?: unknown): unknown {
    const answering = error === undefined || !isConnectionLoss(error);
    if (answering !== this.answering) {
      this.answering = answering;
      // A LISTEN connection that saw no error through the outage may be dead
      // all the same (the server dropped it while the network was down): open
      // it afresh, and look for whatever was told meanwhile.
      if (answering) this.peers.reconnect();
      this.updateAvailability();
    }
    return error === undefined ? undefined : unavailableOr(error);
  }

  /** Asks the database for its clock, so that an idle node notices when it stops or starts answering. */
  private async probe(): Promise<void> {
    if (this.probing || this.closed) return;
    this.probing = true;
    try {
      await this.query("clock", []);
    } catch {
      // query() noted it.
    } finally {
      this.probing = false;
    }
  }

  /** A pooled connection; a refused or failed connect is UNAVAILABLE. */
  private async connect(): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (error) {
      throw this.answered(error);
    }
  }

  private async migrate(): Promise<void> {
    // A connection of its own, with no statement timeout: a migration may take
    // long on a large table, and another node's may hold the lock meanwhile.
    const client = new pg.Client({ connectionString: this.options.url, types, application_name: "reprise-migrate", connectionTimeoutMillis: this.timeoutMs });
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      throw unavailableOr(error);
    }
    try {
      // Nodes that start together wait here for one another: each migration is applied once.
      await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
      await client.query("CREATE SCHEMA IF NOT EXISTS reprise");
      await client.query(`CREATE TABLE IF NOT EXISTS reprise.schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const applied = new Set((await client.query("SELECT version FROM reprise.schema_migrations")).rows.map((row: Row) => row.version as number));
      const known = migrations("postgres");
      const newest = Math.max(0, ...known.map((m) => Number(m.name.slice(0, 4))));
      const ahead = [...applied].filter((version) => version > newest);
      if (ahead.length > 0) {
        throw new Error(`the database was migrated by a newer Reprise (migration ${Math.max(...ahead)}; this one knows up to ${newest}): upgrade this node`);
      }
      for (const { name, sql } of known) {
        const version = Number(name.slice(0, 4));
        if (applied.has(version)) continue;
        await client.query("BEGIN");
        try {
          await client.query(sql);
          await client.query("INSERT INTO reprise.schema_migrations (version, name) VALUES ($1, $2)", [version, name]);
          await client.query("COMMIT");
        } catch (error) {
          await client.query("ROLLBACK").catch(() => undefined);
          throw error;
        }
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** One statement on any pooled connection, outside a transaction. */
  private async query(name: StatementName, values: unknown[]): Promise<pg.QueryResult> {
    try {
      const result = await this.pool.query({ name, text: SQL[name], values });
      this.answered();
      return result;
    } catch (error) {
      throw this.answered(error);
    }
  }

  write<T>(change: (tx: Tx) => Promise<T>): Promise<T> {
    return this.transaction(change, true);
  }

  read<T>(query: (tx: Tx) => Promise<T>): Promise<T> {
    return this.transaction(query, false);
  }

  private async transaction<T>(body: (tx: Tx) => Promise<T>, write: boolean): Promise<T> {
    if (this.closed) throw new StoreUnavailableError("the store is closed");
    for (let run = 1; ; run++) {
      const client = await this.connect();
      const tx = new PostgresTx(client, write);
      let broken: Error | undefined;
      // A checked-out connection that the server ends between two statements
      // (a restart) emits "error": note it, so that the connection is dropped
      // when it is released. The statement under way, if any, fails on its own.
      const lost = (error: Error) => (broken = error);
      client.on("error", lost);
      try {
        // Reads see one snapshot, so that an execution and its attempts agree.
        await client.query(write ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
        const value = await body(tx);
        const committing = performance.now();
        if (write) await tx.flush();
        // The count changes go with the COMMIT, in one round trip.
        await client.query(write ? `${tx.countsInsert()}${tx.failuresInsert()}COMMIT` : "COMMIT");
        if (write) this.options.onCommit?.(1, performance.now() - committing);
        for (const effect of tx.effects) effect();
        this.answered();
        return value;
      } catch (error) {
        if (isConnectionLoss(error)) broken = error as Error;
        else await client.query("ROLLBACK").catch((rollbackError: Error) => (broken = rollbackError));
        if (isRetryable(error) && run < MAX_RUNS) {
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * run));
          continue;
        }
        throw this.answered(error);
      } finally {
        client.removeListener("error", lost);
        // A connection that failed is closed rather than handed to the next change.
        client.release(broken);
      }
    }
  }

  /** Folds the appended count changes into execution_counts, by one node at a time. */
  private async foldCounts(): Promise<void> {
    await this.write(async (tx) => {
      if (await (tx as PostgresTx).tryLock(FOLD_LOCK)) await (tx as PostgresTx).run("countFold", []);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.foldTimer) clearInterval(this.foldTimer);
    if (this.probeTimer) clearInterval(this.probeTimer);
    this.clock.stop();
    await this.peers.close();
    await this.pool.end().catch(() => undefined);
  }
}

/**
 * One change's transaction. Guarded updates of rows that this change has
 * locked (attemptGet locks its attempts and their executions) are deferred:
 * while the lock is held nothing else can change those rows, so the guard is
 * decided here, on the state the rows were read in plus this change's own
 * updates, and the updates go out together, one statement per kind, before
 * the next statement or the COMMIT. A report of 64 outcomes is then a handful
 * of round trips, not 128.
 */
class PostgresTx implements Tx {
  readonly effects: (() => void)[] = [];
  /** Attempts this change holds locked: their state and lease secret as this change last left them. */
  private readonly lockedAttempts = new Map<number, { state: number; secret: Buffer }>();
  /** Executions this change holds locked: their state as this change last left it. */
  private readonly lockedExecutions = new Map<number, number>();
  private deferredAttempts: Parameters<Tx["attemptFinish"]>[0][] = [];
  private deferredFinishes: Parameters<Tx["executionFinish"]>[0][] = [];
  private deferredRetries: { seq: number; nextAttemptAt: number; runFailures: number }[] = [];
  /** Count changes of this transaction: task, state, delta, … appended before COMMIT. */
  private readonly counts: (string | number)[] = [];
  /** Failures counted in this transaction, appended with its COMMIT. */
  private readonly failures = new FailureCounts();
  /** Task declarations read in this transaction. */
  private readonly tasks = new Map<string, TaskRecord | undefined>();

  constructor(
    private readonly client: pg.PoolClient,
    private readonly writing: boolean,
  ) {}

  async run(name: StatementName, values: unknown[]): Promise<pg.QueryResult> {
    await this.flush();
    return this.client.query({ name, text: SQL[name], values });
  }

  /** Sends the deferred updates, each kind in one statement; every one must apply, as its guard was decided on locked rows. */
  async flush(): Promise<void> {
    const attempts = this.deferredAttempts;
    const finishes = this.deferredFinishes;
    const retries = this.deferredRetries;
    if (attempts.length + finishes.length + retries.length === 0) return;
    this.deferredAttempts = [];
    this.deferredFinishes = [];
    this.deferredRetries = [];
    const failures = (list: { failure?: FailureRecord | null }[]) => {
      const columns = list.map((item) => failureParams(item.failure));
      return Array.from({ length: 5 }, (_, c) => columns.map((values) => values[c]));
    };
    const applied = async (name: StatementName, values: unknown[], expected: number) => {
      const { rowCount } = await this.client.query({ name, text: SQL[name], values });
      if (rowCount !== expected) throw new Error(`${name}: ${rowCount} of ${expected} locked rows changed; the change is rolled back`);
    };
    if (attempts.length > 0) {
      await applied(
        "attemptFinishMany",
        [
          attempts.map((a) => a.id),
          attempts.map((a) => a.state),
          attempts.map((a) => a.finishedAt),
          attempts.map((a) => blob(a.retryPolicy)),
          ...failures(attempts),
          attempts.map((a) => a.decision?.rule ?? null),
          attempts.map((a) => a.decision?.retryAt ?? null),
          attempts.map((a) => a.decision?.computedAt ?? null),
        ],
        attempts.length,
      );
    }
    if (finishes.length > 0) {
      await applied(
        "executionFinishMany",
        [
          finishes.map((f) => f.seq),
          finishes.map((f) => f.state),
          finishes.map((f) => f.finishedAt),
          finishes.map((f) => blob(f.result?.data)),
          finishes.map((f) => f.result?.contentType ?? null),
          ...failures(finishes),
        ],
        finishes.length,
      );
    }
    if (retries.length > 0) {
      await applied("executionSetRetryMany", [retries.map((r) => r.seq), retries.map((r) => r.nextAttemptAt), retries.map((r) => r.runFailures)], retries.length);
    }
  }

  async tryLock(key: number): Promise<boolean> {
    return (await this.client.query("SELECT pg_try_advisory_xact_lock($1) AS locked", [key])).rows[0]!.locked as boolean;
  }

  afterCommit(effect: () => void): void {
    this.effects.push(effect);
  }

  private moved(task: string, from: number, to: number): void {
    this.counts.push(task, from, -1, task, to, 1);
  }

  /** The INSERT of this change's count changes, summed by task and state, with the values inlined ("" when none). */
  countsInsert(): string {
    if (this.counts.length === 0) return "";
    const sums = new Map<string, number>();
    for (let i = 0; i < this.counts.length; i += 3) {
      const key = `${this.counts[i + 1]} ${this.counts[i]}`;
      sums.set(key, (sums.get(key) ?? 0) + (this.counts[i + 2] as number));
    }
    const values: string[] = [];
    for (const [key, delta] of sums) {
      if (delta === 0) continue;
      const space = key.indexOf(" ");
      values.push(`(${this.client.escapeLiteral(key.slice(space + 1))}, ${Number(key.slice(0, space))}, ${delta})`);
    }
    return values.length === 0 ? "" : `INSERT INTO reprise.execution_count_changes (task, state, delta) VALUES ${values.join(", ")}; `;
  }

  /** The INSERT of this change's failure counts, with the values inlined ("" when none). */
  failuresInsert(): string {
    if (this.failures.size === 0) return "";
    const literal = (text: string) => this.client.escapeLiteral(text);
    const values = this.failures.take().map((s) => `(${literal(s.task)}, ${s.minute}, ${literal(s.type)}, ${s.failures}, ${s.retries})`);
    return `INSERT INTO reprise.failure_minutes (task, minute, type, failures, retries) VALUES ${values.join(", ")}; `;
  }

  failureCounted(params: Parameters<Tx["failureCounted"]>[0]): void {
    this.failures.add(params);
  }

  async failureStats(since: number): Promise<{ task: string; type: string; failures: number; retries: number }[]> {
    return (await this.run("failureStats", [Math.floor(since / 60_000)])).rows as { task: string; type: string; failures: number; retries: number }[];
  }

  async failureStatsForget(before: number): Promise<void> {
    await this.run("failureForget", [Math.floor(before / 60_000)]);
  }

  async taskGet(name: string): Promise<TaskRecord | undefined> {
    if (!this.tasks.has(name)) {
      const row = (await this.run("taskGet", [name])).rows[0] as Row | undefined;
      this.tasks.set(name, row && taskFromRow(row));
    }
    return this.tasks.get(name);
  }

  /** Remembers, for the rest of this change, the declaration of `task` that a statement joined (TASK_COLUMNS). */
  private joinedTask(task: string, row: Row): void {
    if (this.tasks.has(task)) return;
    this.tasks.set(
      task,
      row.task_name === null
        ? undefined
        : {
            name: task,
            retryPolicy: (row.task_retry_policy as Buffer | null) ?? null,
            timeoutMs: row.task_timeout_ms as number | null,
            retryBudget: budgetFromRow(row.task_budget_per_second, row.task_budget_burst),
            workerId: row.task_worker_id as string,
            declaredAt: row.task_declared_at as number,
          },
    );
  }

  async taskUpsert(task: TaskRecord): Promise<void> {
    const budget = task.retryBudget;
    await this.run("taskUpsert", [task.name, blob(task.retryPolicy), task.timeoutMs, budget?.perSecond ?? null, budget?.burst ?? null, task.workerId, task.declaredAt]);
    if (budget !== null) await this.run("retryBucketCreate", [task.name]);
    this.tasks.set(task.name, task);
  }

  async taskList(): Promise<TaskRecord[]> {
    return ((await this.run("taskList", [])).rows as Row[]).map(taskFromRow);
  }

  async executionCountDueOfTask(params: { task: string; now: number; cap: number }): Promise<number> {
    return (await this.run("countDueOfTask", [params.task, params.now, params.cap])).rows[0]!.count as number;
  }

  async retryBucketGet(task: string): Promise<BucketState | undefined> {
    // In a change, locked until it ends: changes that take tokens take turns.
    const row = (await this.run(this.writing ? "retryBucketGet" : "retryBucketRead", [task])).rows[0] as Row | undefined;
    return row === undefined ? undefined : bucketFromRow(row.tokens, row.at, row.booked);
  }

  async retryBucketPut(task: string, bucket: BucketState): Promise<void> {
    await this.run("retryBucketPut", [task, ...bucketParams(bucket)]);
  }

  async executionInsert(executions: NewExecution[]): Promise<(ExecutionRecord | undefined)[]> {
    // One statement for the whole batch, column by column.
    const columns = executions.map(executionInsertValues);
    const { rows } = await this.run("executionInsert", Array.from({ length: 11 }, (_, c) => columns.map((values) => values[c])));
    const seqById = new Map<string, number>();
    for (const row of rows as Row[]) {
      seqById.set(row.id as string, row.seq as number);
      this.joinedTask(row.task as string, row);
    }
    return executions.map((params) => {
      const seq = seqById.get(params.id);
      if (seq === undefined) return undefined;
      this.counts.push(params.task, params.state, 1);
      return insertedExecution(seq, params);
    });
  }

  private async one(name: StatementName, values: unknown[]): Promise<ExecutionRecord | undefined> {
    const row = (await this.run(name, values)).rows[0] as Row | undefined;
    return row && executionFromRow(row);
  }

  executionGet(id: string): Promise<ExecutionRecord | undefined> {
    // A change locks the execution it reads by id (a cancel), so that it decides on its current state.
    return this.one(this.writing ? "executionGetForUpdate" : "executionGet", [id]);
  }

  executionGetBySeq(seq: number): Promise<ExecutionRecord | undefined> {
    return this.one("executionGetBySeq", [seq]);
  }

  executionGetByIdempotencyKey(key: string): Promise<ExecutionRecord | undefined> {
    return this.one("executionGetByKey", [key]);
  }

  async executionVersions(seqs: readonly number[]): Promise<{ seq: number; version: number }[]> {
    return (await this.run("executionVersions", [seqs])).rows as { seq: number; version: number }[];
  }

  executionList(params: Parameters<Tx["executionList"]>[0]): ReturnType<Tx["executionList"]> {
    const { task } = params;
    const rows = async (name: StatementName, values: unknown[]) => (await this.run(name, values)).rows as Row[];
    const seq = async (name: StatementName) => (await this.run(name, [])).rows[0]!.seq as number | null;
    return listPage<Row>(params, SUCCEEDED, {
      newestSeq: () => seq("executionMaxSeq"),
      oldestSeq: () => seq("executionMinSeq"),
      succeeded: (top, floor, limit) =>
        task === undefined ? rows("executionListSucceeded", [top, floor, limit]) : rows("executionListSucceededByTask", [task, top, floor, limit]),
      inState: (state, before, limit) =>
        task === undefined ? rows("executionListByState", [state, before, limit]) : rows("executionListByTaskAndState", [task, state, before, limit]),
      all: (before, limit) => (task === undefined ? rows("executionList", [before, limit]) : rows("executionListByTask", [task, before, limit])),
      labelled: (key, value, others, before, floor, limit) =>
        rows("executionListByLabel", [key, value, before, floor, task ?? null, params.state ?? null, others, limit]),
      labelWindowFloor: async (key, value, before) => ((await this.run("executionLabelWindowFloor", [key, value, before])).rows[0]?.seq as number | undefined) ?? null,
    }, executionFromRow);
  }

  async executionClaimDue(params: { tasks: readonly string[]; now: number; limit: number }): Promise<DueExecution[]> {
    const { rows } = await this.run("executionClaimDue", [params.tasks, params.now, params.limit]);
    for (const row of rows as Row[]) this.joinedTask(row.task as string, row);
    const due = (rows as Row[]).map((row) => ({
      seq: row.seq as number,
      id: row.id as string,
      task: row.task as string,
      arguments: { data: row.arguments as Buffer, contentType: row.arguments_type as string },
      labels: parseLabels(row.labels as string),
      nextAttemptAt: row.next_attempt_at as number,
      attemptCount: row.attempt_count as number,
    }));
    // UPDATE … RETURNING keeps no order: put the oldest due first again.
    due.sort((a, b) => a.nextAttemptAt - b.nextAttemptAt || a.seq - b.seq);
    for (const record of due) this.moved(record.task, PENDING, RUNNING);
    return due;
  }

  async executionSetRetry(params: { seq: number; task: string; nextAttemptAt: number; runFailures: number }): Promise<boolean> {
    const locked = this.lockedExecutions.get(params.seq);
    if (locked !== undefined) {
      if (locked !== RUNNING) return false;
      this.lockedExecutions.set(params.seq, PENDING);
      this.deferredRetries.push(params);
      this.moved(params.task, RUNNING, PENDING);
      return true;
    }
    if ((await this.run("executionSetRetry", [params.nextAttemptAt, params.seq, params.runFailures])).rowCount !== 1) return false;
    this.moved(params.task, RUNNING, PENDING);
    return true;
  }

  async executionRerun(params: { seq: number; task: string; from: number; now: number }): Promise<boolean> {
    if ((await this.run("executionRerun", [params.now, params.seq, params.from])).rowCount !== 1) return false;
    this.moved(params.task, params.from, PENDING);
    return true;
  }

  async executionFinish(params: Parameters<Tx["executionFinish"]>[0]): Promise<boolean> {
    const locked = this.lockedExecutions.get(params.seq);
    if (locked !== undefined) {
      if (!(locked === RUNNING || (locked === PENDING && params.from === "open"))) return false;
      this.lockedExecutions.set(params.seq, params.state);
      this.deferredFinishes.push(params);
      this.moved(params.task, locked, params.state);
      return true;
    }
    const { rows } = await this.run("executionFinish", [
      params.state,
      params.finishedAt,
      blob(params.result?.data),
      params.result?.contentType ?? null,
      ...failureParams(params.failure),
      params.seq,
      params.from === "open" ? [PENDING, RUNNING] : [RUNNING],
    ]);
    if (rows.length !== 1) return false;
    this.moved(params.task, rows[0]!.old_state as number, params.state);
    return true;
  }

  async attemptInsert(attempts: NewAttempt[]): Promise<number[]> {
    const { rows } = await this.run("attemptInsert", [
      attempts.map((a) => a.executionSeq),
      attempts.map((a) => a.number),
      attempts.map((a) => a.workerId),
      attempts.map((a) => a.scheduledAt),
      attempts.map((a) => a.startedAt),
      attempts.map((a) => blob(a.leaseSecret)),
      attempts.map((a) => a.leaseMs),
      attempts.map((a) => a.leaseExpiresAt),
      attempts.map((a) => a.timeoutAt),
    ]);
    const idBySeq = new Map((rows as Row[]).map((row) => [row.execution_seq as number, row.id as number]));
    return attempts.map((a) => idBySeq.get(a.executionSeq)!);
  }

  async attemptGet(ids: readonly number[], options?: { skipLocked?: boolean }): Promise<(AttemptRef | undefined)[]> {
    // In a change, the attempts and their executions are locked until it ends:
    // whatever this change decides about them, no other node decides meanwhile.
    const lock = !this.writing ? "" : options?.skipLocked ? " ORDER BY a.id FOR UPDATE OF a, e SKIP LOCKED" : " ORDER BY a.id FOR UPDATE OF a, e";
    // The task rows are read, not locked: a declaration committed meanwhile is seen by the next change.
    await this.flush();
    const { rows } = await this.client.query({ name: `attemptGet${lock === "" ? "" : options?.skipLocked ? "SkipLocked" : "ForUpdate"}`, text: SQL.attemptGet + lock, values: [ids] });
    const byId = new Map<number, AttemptRef>();
    for (const row of rows as Row[]) {
      const execution = {
        seq: row.execution_seq as number,
        id: row.execution_id as string,
        task: row.task as string,
        retryPolicy: (row.execution_retry_policy as Buffer | null) ?? null,
        runFailures: row.run_failures as number,
        runScheduledAt: Number(row.run_scheduled_at),
      };
      this.joinedTask(execution.task, row);
      const attempt = attemptFromRow(row);
      if (lock !== "") {
        this.lockedAttempts.set(attempt.id, { state: attempt.state, secret: row.lease_secret as Buffer });
        this.lockedExecutions.set(execution.seq, row.execution_state as number);
      }
      byId.set(attempt.id, Object.assign(attempt, { execution }));
    }
    return ids.map((id) => byId.get(id));
  }

  async attemptList(executionSeq: number): Promise<AttemptRecord[]> {
    return ((await this.run("attemptList", [executionSeq])).rows as Row[]).map(attemptFromRow);
  }

  async attemptGetRunning(executionSeq: number): Promise<AttemptRecord | undefined> {
    const row = (await this.run("attemptGetRunning", [executionSeq])).rows[0] as Row | undefined;
    return row && attemptFromRow(row);
  }

  async attemptExtendLease(leases: { id: number; leaseSecret: Uint8Array; leaseExpiresAt: number }[]): Promise<number> {
    const result = await this.run("attemptExtendLease", [leases.map((l) => l.id), leases.map((l) => blob(l.leaseSecret)), leases.map((l) => l.leaseExpiresAt)]);
    return result.rowCount ?? 0;
  }

  async attemptFinish(params: Parameters<Tx["attemptFinish"]>[0]): Promise<boolean> {
    const locked = this.lockedAttempts.get(params.id);
    if (locked !== undefined) {
      if (locked.state !== ATTEMPT_RUNNING || !locked.secret.equals(blob(params.leaseSecret))) return false;
      locked.state = params.state;
      this.deferredAttempts.push(params);
      return true;
    }
    const result = await this.run("attemptFinish", [
      params.state,
      params.finishedAt,
      blob(params.retryPolicy),
      ...failureParams(params.failure),
      params.id,
      blob(params.leaseSecret),
      ...decisionParams(params.decision),
    ]);
    return result.rowCount === 1;
  }

  async attemptReturn(params: { id: number; leaseSecret: Uint8Array }): Promise<boolean> {
    const row = (await this.run("attemptReturn", [params.id, blob(params.leaseSecret)])).rows[0] as Row;
    if (Number(row.gone) === 0) return false;
    // Both or neither: a half-undone lease would break the attempt count. Throwing rolls the change back.
    if (row.task === null) throw new Error(`attempt ${params.id} is not the running attempt of its execution`);
    this.moved(row.task as string, RUNNING, PENDING);
    return true;
  }

  async attemptListExpired(params: { now: number; limit: number }): Promise<number[]> {
    const expired = ((await this.run("attemptListLeaseExpired", [params.now, params.limit])).rows as Row[]).map((row) => row.id as number);
    if (expired.length >= params.limit) return expired;
    const timedOut = ((await this.run("attemptListTimedOut", [params.now, params.limit - expired.length])).rows as Row[]).map((row) => row.id as number);
    return timedOut.length === 0 ? expired : [...new Set([...expired, ...timedOut])];
  }

  async nextDeadline(now: number): Promise<number | null> {
    const row = (await this.run("nextDeadline", [now])).rows[0] as Row;
    const candidates = [row.pending, row.lease, row.timeout].filter((t): t is number => t !== null);
    return candidates.length === 0 ? null : Math.min(...candidates);
  }

  async executionCountByTaskAndState(): Promise<{ task: string; state: number; count: number }[]> {
    return ((await this.run("countByTaskAndState", [])).rows as Row[]).map((row) => ({
      task: row.task as string,
      state: row.state as number,
      count: row.count as number,
    }));
  }

  async executionCountPending(now: number): Promise<{ due: number; delayed: number }> {
    let pending = 0;
    for (const { state, count } of await this.executionCountByTaskAndState()) if (state === PENDING) pending += count;
    const due = (await this.run("countDue", [now])).rows[0]!.count as number;
    return { due, delayed: Math.max(0, pending - due) };
  }

  async executionDeleteFinished(params: { finishedBefore: number; fromSeq: number; limit: number }): Promise<{ deleted: number; nextSeq: number | null }> {
    // One node at a time: the others find the lock taken and leave this pass to it.
    if (!(await this.tryLock(RETENTION_LOCK))) return { deleted: 0, nextSeq: null };
    const rows = (await this.run("retentionWalk", [params.fromSeq, params.limit])).rows as Row[];
    const doomed: Row[] = [];
    let reachedEnd = rows.length < params.limit;
    for (const row of rows) {
      // finished_at >= created_at: from here on nothing can have finished early enough.
      if ((row.created_at as number) >= params.finishedBefore) {
        reachedEnd = true;
        break;
      }
      if (row.finished_at !== null && (row.finished_at as number) < params.finishedBefore) doomed.push(row);
    }
    if (doomed.length > 0) {
      const seqs = doomed.map((row) => row.seq as number);
      await this.run("retentionDeleteAttempts", [seqs]);
      const labels: [string[], string[], number[]] = [[], [], []];
      for (const row of doomed) {
        for (const [key, value] of Object.entries(parseLabels(row.labels as string))) {
          labels[0].push(key);
          labels[1].push(value);
          labels[2].push(row.seq as number);
        }
      }
      if (labels[0].length > 0) await this.run("retentionDeleteLabels", labels);
      const deleted = await this.run("retentionDeleteExecutions", [seqs, params.finishedBefore]);
      // All or none (the change rolls back): attempts never outlive their execution.
      if (deleted.rowCount !== seqs.length) throw new Error("executions changed while retention was deleting them");
      for (const row of doomed) this.counts.push(row.task as string, row.state as number, -1);
    }
    return { deleted: doomed.length, nextSeq: reachedEnd ? null : (rows[rows.length - 1]!.seq as number) + 1 };
  }

  async workerSeen(params: { workerId: string; tasks: readonly string[]; at: number }): Promise<void> {
    await this.run("workerSeen", [params.workerId, params.tasks, params.at]);
  }

  async workerList(params: { task?: string; seenSince: number; limit: number }): Promise<WorkerRecord[]> {
    const workers = new WorkerList(params.limit);
    if (params.task === undefined) {
      // Rows come newest first, so the first `limit` workers met are the most recent.
      for (const row of (await this.run("workerListRecent", [params.seenSince, params.limit * 16])).rows as Row[]) {
        workers.add(row.worker_id as string, row.task as string, row.last_seen_at as number);
      }
    } else {
      for (const { worker_id: id } of (await this.run("workerListOfTask", [params.task, params.seenSince, params.limit])).rows as { worker_id: string }[]) {
        for (const row of (await this.run("workerTasks", [id])).rows as Row[]) {
          if ((row.last_seen_at as number) >= params.seenSince) workers.add(id, row.task as string, row.last_seen_at as number);
        }
      }
    }
    return workers.list();
  }

  async workerForget(before: number): Promise<void> {
    await this.run("workerForget", [before]);
  }
}

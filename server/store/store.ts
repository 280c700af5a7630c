// The storage interface. All SQL lives behind it, in sqlite/ and postgres/, and
// one coordinator decides for both. Methods are named noun-first and take a
// params object; every state change is guarded on the current state (and, for
// attempts, the lease secret) and reports whether it applied.
//
// A store runs each change as a transaction of its own kind: SQLite puts every
// change of one event-loop turn into one transaction (group commit), one change
// at a time; PostgreSQL gives each change its own transaction on a pooled
// connection, and runs it again after a serialization failure or a deadlock.
// Either way a change's reads and the guarded writes that follow them see no
// other change in between, and its promise settles once it is durable.

/** Numbers of the proto enum reprise.v1.ExecutionState. */
export const ExecutionStateNumber = {
  pending: 1,
  running: 2,
  succeeded: 3,
  failed: 4,
  abandoned: 5,
  timedOut: 6,
  cancelled: 7,
} as const;

/** The states RerunExecution re-opens: FAILED, ABANDONED, TIMED_OUT and CANCELLED. */
export const RERUNNABLE_STATES: readonly number[] = [
  ExecutionStateNumber.failed,
  ExecutionStateNumber.abandoned,
  ExecutionStateNumber.timedOut,
  ExecutionStateNumber.cancelled,
];

/** Numbers of the proto enum reprise.v1.AttemptState. */
export const AttemptStateNumber = {
  running: 1,
  succeeded: 2,
  failed: 3,
  abandoned: 4,
  timedOut: 5,
  cancelled: 6,
  snoozed: 7,
} as const;

export interface FailureRecord {
  type: string;
  message: string;
  stackTrace: string;
  nonRetryable: boolean;
  /** 0 when absent. */
  retryAfterMs: number;
}

export interface PayloadRecord {
  data: Uint8Array;
  contentType: string;
}

/** A task's declared retry budget: tokens accrue at `perSecond`, up to `burst`. */
export interface RetryBudgetRecord {
  perSecond: number;
  /** At least 1. */
  burst: number;
}

/**
 * A retry budget's bucket as stored: `tokens` as of `at` (ms since the epoch),
 * and the retries booked after `at` that have taken their tokens, as runs of
 * `count` starts `step` ms apart (`step` is 1000 / the rate they were booked at).
 */
export interface BucketState {
  tokens: number;
  at: number;
  step: number;
  runs: [start: number, count: number][];
}

export interface TaskRecord {
  name: string;
  /** A serialized reprise.v1.RetryPolicy, or null for none. */
  retryPolicy: Uint8Array | null;
  timeoutMs: number | null;
  /** Null: no retry budget. */
  retryBudget: RetryBudgetRecord | null;
  workerId: string;
  declaredAt: number;
}

export interface ExecutionRecord {
  /** Internal key; newer executions have larger ones. */
  seq: number;
  id: string;
  task: string;
  state: number;
  /** Bumped by every change. */
  version: number;
  arguments: PayloadRecord;
  /** The Submit's own serialized policy; null when the task's declaration applies. */
  retryPolicy: Uint8Array | null;
  result: PayloadRecord | null;
  failure: FailureRecord | null;
  nextAttemptAt: number | null;
  createdAt: number;
  finishedAt: number | null;
  idempotencyKey: string | null;
  labels: Record<string, string>;
  attemptCount: number;
  /** Failures, abandonments and timeouts since the execution was submitted or last re-run: the k of the delay rules, less one. */
  runFailures: number;
  /** The earliest start of the run's first attempt (the submit's due time, or the re-run), from which max_elapsed counts. */
  runScheduledAt: number;
}

/** Which rule decided what followed an attempt, and when that was due; see reprise.v1.Attempt.retry_rule. */
export interface RetryDecision {
  /** A number of the proto enum reprise.v1.RetryRule. */
  rule: number;
  /** When the retry or snooze was due; null when none followed. */
  retryAt: number | null;
  /** For a retry that the budget deferred: when the delay rules had it due. */
  computedAt: number | null;
}

export interface AttemptRecord {
  id: number;
  executionSeq: number;
  number: number;
  state: number;
  workerId: string;
  scheduledAt: number;
  startedAt: number;
  finishedAt: number | null;
  leaseSecret: Uint8Array;
  leaseMs: number;
  leaseExpiresAt: number;
  timeoutAt: number | null;
  failure: FailureRecord | null;
  /** The serialized policy that decided what followed; null when none applied. */
  retryPolicy: Uint8Array | null;
  /** Null while RUNNING, after SUCCEEDED or CANCELLED, and for attempts recorded before decisions were kept. */
  decision: RetryDecision | null;
}

export interface WorkerRecord {
  id: string;
  /** Sorted. */
  tasks: string[];
  lastSeenAt: number;
}

/** What leasing an execution needs of it; `attemptCount` counts the attempts before the one now starting. */
export type DueExecution = Pick<ExecutionRecord, "seq" | "id" | "task" | "arguments" | "labels" | "attemptCount"> & { nextAttemptAt: number };

/** An attempt as deciding its fate needs it: no outcome fields, with its execution. */
export type AttemptRef = Omit<AttemptRecord, "finishedAt" | "failure" | "retryPolicy" | "decision"> & { execution: ExecutionRef };

/** What deciding an attempt's fate needs of its execution. */
export interface ExecutionRef {
  seq: number;
  id: string;
  task: string;
  /** The Submit's own serialized policy; null when the task's declaration applies. */
  retryPolicy: Uint8Array | null;
  runFailures: number;
  runScheduledAt: number;
}

/** A value, or a promise of one: SQLite answers at once, PostgreSQL over the network. */
export type Awaitable<T> = T | Promise<T>;

/** A new execution, as executionInsert takes it. */
export type NewExecution = Omit<ExecutionRecord, "seq" | "version" | "result" | "failure" | "finishedAt" | "attemptCount" | "runFailures" | "runScheduledAt">;

/** A new RUNNING attempt of an execution that executionClaimDue moved to RUNNING. */
export type NewAttempt = Omit<AttemptRecord, "id" | "state" | "finishedAt" | "failure" | "retryPolicy" | "decision">;

/** The reads and writes of one change; valid only until that change settles. */
export interface Tx {
  /** Runs `effect` once this change is committed, and never if it rolls back or runs again. */
  afterCommit(effect: () => void): void;

  taskGet(name: string): Awaitable<TaskRecord | undefined>;
  /** Every declared task, by name. */
  taskList(): Awaitable<TaskRecord[]>;
  taskUpsert(task: TaskRecord): Awaitable<void>;

  /**
   * Inserts PENDING executions and returns their records, in order; undefined
   * for one whose idempotency key is taken (by a change committed meanwhile, on
   * PostgreSQL). The keys of one call must differ from each other.
   */
  executionInsert(executions: NewExecution[]): Awaitable<(ExecutionRecord | undefined)[]>;
  executionGet(id: string): Awaitable<ExecutionRecord | undefined>;
  executionGetBySeq(seq: number): Awaitable<ExecutionRecord | undefined>;
  executionGetByIdempotencyKey(key: string): Awaitable<ExecutionRecord | undefined>;
  /** The version of each of these executions that exists, in no particular order: a cheap look at which have changed. */
  executionVersions(seqs: readonly number[]): Awaitable<{ seq: number; version: number }[]>;
  /**
   * Newest first, at most `limit`; `beforeSeq` pages. A page may come back
   * short, even empty, while `nextBeforeSeq` says that more may follow: a walk
   * that no index narrows reads a bounded window of rows per page.
   */
  executionList(params: { task?: string; state?: number; labels?: Record<string, string>; beforeSeq?: number; limit: number }): Awaitable<{
    records: ExecutionRecord[];
    /** Where the next page starts, or null after the last. */
    nextBeforeSeq: number | null;
  }>;
  /**
   * Moves up to `limit` PENDING executions of `tasks` that are due at `now`,
   * oldest due first, to RUNNING, and returns them; the caller starts an
   * attempt of each (attemptInsert) in the same change. Executions that another
   * node is claiming at the same moment are skipped, never waited for.
   */
  executionClaimDue(params: { tasks: readonly string[]; now: number; limit: number }): Awaitable<DueExecution[]>;
  /**
   * RUNNING -> PENDING, due again at `nextAttemptAt` (a retry or a snooze),
   * with `runFailures` as the run's failures now. Guarded on RUNNING.
   */
  executionSetRetry(params: { seq: number; task: string; nextAttemptAt: number; runFailures: number }): Awaitable<boolean>;
  /**
   * `from` (FAILED, ABANDONED, TIMED_OUT or CANCELLED) -> PENDING, due at
   * `now`, with its failure, result and finished_at cleared and its run
   * counted afresh from `now`. Guarded on `from`, which must be one of those.
   */
  executionRerun(params: { seq: number; task: string; from: number; now: number }): Awaitable<boolean>;
  /** Guarded on the current state: RUNNING, or either PENDING or RUNNING ("open"). */
  executionFinish(params: {
    seq: number;
    task: string;
    from: "running" | "open";
    state: number;
    finishedAt: number;
    result?: PayloadRecord;
    failure?: FailureRecord;
  }): Awaitable<boolean>;

  /** Inserts RUNNING attempts of executions that this change claimed; returns their ids, in order. */
  attemptInsert(attempts: NewAttempt[]): Awaitable<number[]>;
  /**
   * Attempts with the executions they belong to, in the order of `ids`
   * (undefined for an unknown id). Inside a change, PostgreSQL locks them
   * until the change ends; with `skipLocked`, those that another change holds
   * are left out (undefined), not waited for.
   */
  attemptGet(ids: readonly number[], options?: { skipLocked?: boolean }): Awaitable<(AttemptRef | undefined)[]>;
  attemptList(executionSeq: number): Awaitable<AttemptRecord[]>;
  /** The RUNNING attempt of an execution, if any. */
  attemptGetRunning(executionSeq: number): Awaitable<AttemptRecord | undefined>;
  /** Each guarded on RUNNING and the lease secret; returns how many applied. */
  attemptExtendLease(leases: { id: number; leaseSecret: Uint8Array; leaseExpiresAt: number }[]): Awaitable<number>;
  /** RUNNING -> `state`. Guarded on RUNNING and the lease secret. */
  attemptFinish(params: {
    id: number;
    leaseSecret: Uint8Array;
    state: number;
    finishedAt: number;
    failure: FailureRecord | null;
    retryPolicy: Uint8Array | null;
    decision: RetryDecision | null;
  }): Awaitable<boolean>;
  /**
   * Deletes a RUNNING attempt that was never delivered and puts its execution
   * back to PENDING, due at the attempt's `scheduled_at`. Guarded on RUNNING
   * and the lease secret, and on the attempt being the execution's last.
   */
  attemptReturn(params: { id: number; leaseSecret: Uint8Array }): Awaitable<boolean>;
  /**
   * The ids of RUNNING attempts whose lease or timeout has passed at `now`, at
   * most `limit`, each once: those past their lease first, earliest first, then
   * those past their timeout.
   */
  attemptListExpired(params: { now: number; limit: number }): Awaitable<number[]>;

  /**
   * The earliest moment something is due: a future PENDING start, or a lease
   * expiry or timeout of a RUNNING attempt (which may have passed already).
   */
  nextDeadline(now: number): Awaitable<number | null>;

  /**
   * Execution counts by task and state number, for metrics; kept as states
   * change, never counted from the rows. Read them with read(): inside a change,
   * whether that change's own changes are included differs between stores.
   */
  executionCountByTaskAndState(): Awaitable<{ task: string; state: number; count: number }[]>;
  /** PENDING executions of `task` due at `now`, counted up to `cap` (a backlog may be large). */
  executionCountDueOfTask(params: { task: string; now: number; cap: number }): Awaitable<number>;
  /** PENDING executions due at `now` and due later. */
  executionCountPending(now: number): Awaitable<{ due: number; delayed: number }>;

  /**
   * One step of retention: walks at most `limit` executions from `fromSeq` on,
   * oldest first, and deletes, with their attempts, those that finished before
   * `finishedBefore`. Stops early at the first execution created at or after
   * `finishedBefore` (none from there on can qualify). `nextSeq` is where the
   * next step starts, or null when the walk reached its end. On PostgreSQL one
   * node at a time deletes: while another holds the retention lock, a step
   * deletes nothing and returns null.
   */
  executionDeleteFinished(params: { finishedBefore: number; fromSeq: number; limit: number }): Awaitable<{ deleted: number; nextSeq: number | null }>;

  /** The retry budget bucket of `task`, if it has one yet. Inside a change, PostgreSQL locks it until the change ends. */
  retryBucketGet(task: string): Awaitable<BucketState | undefined>;
  retryBucketPut(task: string, bucket: BucketState): Awaitable<void>;

  /**
   * Counts an attempt that failed, was abandoned or timed out, by task, minute
   * and failure type, and whether a retry followed; written with the commit.
   */
  failureCounted(params: { task: string; type: string; at: number; retried: boolean }): void;
  /** Failures and retries by task and failure type since `since`, from the counts failureCounted kept. */
  failureStats(since: number): Awaitable<{ task: string; type: string; failures: number; retries: number }[]>;
  /** Deletes the failure counts of minutes before `before`. */
  failureStatsForget(before: number): Awaitable<void>;

  /** Records that `workerId` was seen at `at`, declaring `tasks` or asking for work of them. */
  workerSeen(params: { workerId: string; tasks: readonly string[]; at: number }): Awaitable<void>;
  /** Workers seen at or after `seenSince`, most recently seen first, at most `limit`; with `task`, only those of that task. */
  workerList(params: { task?: string; seenSince: number; limit: number }): Awaitable<WorkerRecord[]>;
  /** Forgets every worker and task last seen before `before`. */
  workerForget(before: number): Awaitable<void>;
}

export interface Store {
  /**
   * Runs `change` atomically, all or nothing, and settles once it is durable:
   * with its value after the commit, or with its error after the rollback. A
   * change may run more than once (PostgreSQL runs it again after a
   * serialization failure or a deadlock), so everything it does beyond the
   * store goes through `tx.afterCommit`.
   */
  write<T>(change: (tx: Tx) => Promise<T>): Promise<T>;
  /** Runs `query` over committed data only; it must not write. */
  read<T>(query: (tx: Tx) => Promise<T>): Promise<T>;
  /**
   * True when every change of one event-loop turn commits together (SQLite):
   * work offered to a waiting worker in the same turn as the change that made
   * it due goes out in the same commit.
   */
  readonly groupCommit: boolean;
  /** How the nodes sharing this store tell each other of changes; null when one process is the only one. */
  readonly peers: Peers | null;
  /** Told when the store becomes unreachable (false) and reachable again (true); absent for a local file. */
  onAvailability?(listener: (available: boolean) => void): void;
  /** Finishes what is under way and closes; resolves once every connection and file handle is closed. */
  close(): Promise<void>;
}

/**
 * What one node tells the others after a commit: executions that changed (so
 * that watches elsewhere follow them) and tasks whose work comes due (so that
 * long-polls elsewhere wake). Receivers re-read the store; news is a hint.
 */
export interface PeerNews {
  executions: number[];
  /** Task name to the earliest moment work of it comes due, in ms since the epoch. */
  due: Map<string, number>;
}

export interface Peers {
  /** Tells the other nodes; news of one turn is coalesced into one message. */
  tell(news: PeerNews): void;
  /** Called with every news from another node, and with `null` after a reconnect, when anything may have been missed. */
  listen(listener: (news: PeerNews | null) => void): void;
  /** How often, at least, a node re-reads the store for work that came due elsewhere, should news be lost. */
  readonly recheckMs: number;
}

/** The store cannot be reached (a database restart, a network loss): the call may be tried again. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}

// The storage interface. All SQL lives behind it (sqlite-store.ts), so that a
// PostgreSQL store can follow. Methods are named noun-first and take a params
// object; every state change is guarded on the current state (and, for
// attempts, the lease secret) and reports whether it applied.

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

/** Numbers of the proto enum reprise.v1.AttemptState. */
export const AttemptStateNumber = {
  running: 1,
  succeeded: 2,
  failed: 3,
  abandoned: 4,
  timedOut: 5,
  cancelled: 6,
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

export interface TaskRecord {
  name: string;
  /** A serialized reprise.v1.RetryPolicy, or null for none. */
  retryPolicy: Uint8Array | null;
  timeoutMs: number | null;
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
}

export interface WorkerRecord {
  id: string;
  /** Sorted. */
  tasks: string[];
  lastSeenAt: number;
}

/** What leasing an execution needs of it. */
export type DueExecution = Pick<ExecutionRecord, "seq" | "id" | "task" | "arguments" | "labels" | "attemptCount"> & { nextAttemptAt: number };

/** An attempt as deciding its fate needs it: no outcome fields, with its execution. */
export type AttemptRef = Omit<AttemptRecord, "finishedAt" | "failure" | "retryPolicy"> & { execution: ExecutionRef };

/** What deciding an attempt's fate needs of its execution. */
export interface ExecutionRef {
  seq: number;
  id: string;
  task: string;
  /** The Submit's own serialized policy; null when the task's declaration applies. */
  retryPolicy: Uint8Array | null;
}

export interface Store {
  /**
   * Runs `change` atomically (all or nothing) inside the current group-commit
   * batch. Every change made in one event-loop turn shares one transaction,
   * committed on the next turn; it is durable only once `committed()` settles.
   */
  write<T>(change: () => T): T;
  /** Resolves once every change made so far is committed; rejects if that commit failed. */
  committed(): Promise<void>;
  /** Runs `effect` after the current batch commits, and never if it rolls back. */
  afterCommit(effect: () => void): void;
  /** Commits what is pending and closes; resolves once every file handle is closed. */
  close(): Promise<void>;

  taskGet(name: string): TaskRecord | undefined;
  taskUpsert(task: TaskRecord): void;

  executionInsert(params: Omit<ExecutionRecord, "seq" | "version" | "result" | "failure" | "finishedAt" | "attemptCount">): ExecutionRecord;
  executionGet(id: string): ExecutionRecord | undefined;
  executionGetBySeq(seq: number): ExecutionRecord | undefined;
  executionGetByIdempotencyKey(key: string): ExecutionRecord | undefined;
  /**
   * Newest first, at most `limit`; `beforeSeq` pages. A page may come back
   * short, even empty, while `nextBeforeSeq` says that more may follow: a walk
   * that no index narrows reads a bounded window of rows per page.
   */
  executionList(params: { task?: string; state?: number; beforeSeq?: number; limit: number }): {
    records: ExecutionRecord[];
    /** Where the next page starts, or null after the last. */
    nextBeforeSeq: number | null;
  };
  /** PENDING executions of `tasks` due at `now`, oldest due first. */
  executionListDue(params: { tasks: readonly string[]; now: number; limit: number }): DueExecution[];
  /** RUNNING -> PENDING, due again at `nextAttemptAt` (a retry). Guarded on RUNNING. */
  executionSetRetry(params: { seq: number; task: string; nextAttemptAt: number }): boolean;
  /** Guarded on the current state: RUNNING, or either PENDING or RUNNING ("open"). */
  executionFinish(params: {
    seq: number;
    task: string;
    from: "running" | "open";
    state: number;
    finishedAt: number;
    result?: PayloadRecord;
    failure?: FailureRecord;
  }): boolean;

  /**
   * PENDING -> RUNNING with a new attempt. Guarded on PENDING, so an
   * execution never has two attempts RUNNING. Returns the new attempt's id,
   * or undefined when the execution was no longer PENDING.
   */
  attemptStart(params: Omit<AttemptRecord, "id" | "state" | "finishedAt" | "failure" | "retryPolicy"> & { task: string }): number | undefined;
  /** An attempt with the execution it belongs to. */
  attemptGet(id: number): AttemptRef | undefined;
  attemptList(executionSeq: number): AttemptRecord[];
  /** The RUNNING attempt of an execution, if any. */
  attemptGetRunning(executionSeq: number): AttemptRecord | undefined;
  /** Guarded on RUNNING and the lease secret. */
  attemptExtendLease(params: { id: number; leaseSecret: Uint8Array; leaseExpiresAt: number }): boolean;
  /** RUNNING -> `state`. Guarded on RUNNING and the lease secret. */
  attemptFinish(params: {
    id: number;
    leaseSecret: Uint8Array;
    state: number;
    finishedAt: number;
    failure: FailureRecord | null;
    retryPolicy: Uint8Array | null;
  }): boolean;
  /**
   * Deletes a RUNNING attempt that was never delivered and puts its execution
   * back to PENDING, due at the attempt's `scheduled_at`. Guarded on RUNNING
   * and the lease secret, and on the attempt being the execution's last.
   */
  attemptReturn(params: { id: number; leaseSecret: Uint8Array }): boolean;
  /** The ids of RUNNING attempts whose lease or timeout has passed at `now`. */
  attemptListExpired(params: { now: number; limit: number }): number[];

  /** The earliest future moment something is due: a PENDING start, a lease expiry or a timeout. */
  nextDeadline(now: number): number | null;

  /** Execution counts by task and state number, for metrics; kept as states change, never counted from the rows. */
  executionCountByTaskAndState(): { task: string; state: number; count: number }[];
  /** PENDING executions due at `now` and due later. */
  executionCountPending(now: number): { due: number; delayed: number };

  /**
   * One step of retention: walks at most `limit` executions from `fromSeq` on,
   * oldest first, and deletes, with their attempts, those that finished before
   * `finishedBefore`. Stops early at the first execution created at or after
   * `finishedBefore` (none from there on can qualify). `nextSeq` is where the
   * next step starts, or null when the walk reached its end.
   */
  executionDeleteFinished(params: { finishedBefore: number; fromSeq: number; limit: number }): { deleted: number; nextSeq: number | null };

  /** Records that `workerId` was seen at `at`, declaring `tasks` or asking for work of them. */
  workerSeen(params: { workerId: string; tasks: readonly string[]; at: number }): void;
  /** Workers seen at or after `seenSince`, most recently seen first, at most `limit`; with `task`, only those of that task. */
  workerList(params: { task?: string; seenSince: number; limit: number }): WorkerRecord[];
  /** Forgets every worker and task last seen before `before`. */
  workerForget(before: number): void;
}

// The coordinator: every decision about executions and attempts. It keeps the
// schedule and history in the store, decides every retry, wakes long-polling
// workers when work comes due, and pushes each change to the watchers.
//
// Every change runs inside store.write(), synchronously, so that a read and the
// guarded update that follows it cannot interleave with another request. Replies
// wait for store.committed(): nothing is acknowledged before it is durable.
import { toBinary } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { RetryPolicySchema, StatusError } from "@reprise/client/wire";
import type { Execution, LeasedAttempt, Outcome, OutcomeReceipt, RetryPolicy } from "@reprise/client/wire";
import { systemClock } from "./clock.js";
import type { Clock } from "./clock.js";
import { decodeLeaseToken, encodeLeaseToken, newLeaseSecret, secretsEqual } from "./lease-token.js";
import type { Logger } from "../operator/log.js";
import { silentLogger } from "../operator/log.js";
import { LongPolls } from "./long-polls.js";
import type { LeaseRequest, Poller } from "./long-polls.js";
import { noMetrics } from "../operator/metrics.js";
import type { CoordinatorMetrics } from "../operator/metrics.js";
import { retryDelayMs } from "./policy.js";
import { noHolds, timed } from "../operator/holds.js";
import type { HoldMeter, HoldObserver } from "../operator/holds.js";
import { newExecutionId } from "./ids.js";
import { WorkerRegistry } from "./workers.js";
import { Scheduler } from "./scheduler.js";
import { storedPolicy, toExecution, toPayload } from "./snapshot.js";
import { AttemptStateNumber as A, ExecutionStateNumber as E } from "../store/store.js";
import type { AttemptRef, ExecutionRecord, ExecutionRef, FailureRecord, PayloadRecord, Store, TaskRecord, WorkerRecord } from "../store/store.js";
import { durationToMs, msToTimestamp } from "./time.js";
import { quote } from "../api/validate.js";
import { WatchHub } from "./watch-hub.js";

export interface CoordinatorOptions {
  store: Store;
  metrics?: CoordinatorMetrics;
  clock?: Clock;
  /** Uniform in [0, 1); drives the delays of unlimited retries. */
  random?: () => number;
  log?: Logger;
  /** Told how long each timer tick held the event loop. */
  holds?: HoldMeter;
}

export interface SubmitParams {
  task: string;
  arguments: PayloadRecord;
  /** The Submit's own policy, serialized; null when it carried none. */
  retryPolicy: Uint8Array | null;
  idempotencyKey: string | null;
  delayMs: number;
  labels: Record<string, string>;
}

export interface DeclaredTask {
  name: string;
  retryPolicy: Uint8Array | null;
  timeoutMs: number | null;
}

const TERMINAL_FROM_ATTEMPT: Record<number, number> = {
  [A.failed]: E.failed,
  [A.abandoned]: E.abandoned,
  [A.timedOut]: E.timedOut,
};

export const isTerminal = (state: number) => state !== E.pending && state !== E.running;

// Expired attempts are handled in slices, one per timer tick, so that one tick
// never holds the event loop for long, even after a restart with many leases
// gone stale.
const EXPIRY_SLICE = 500;

/** The calls whose synchronous part is measured as an event-loop hold, each under its own name. */
const MEASURED_CALLS = ["submit", "get", "list", "cancel", "declare", "lease", "returnLeases", "heartbeat", "report"] as const;

const OUTCOME_OF_STATE: Record<number, Parameters<CoordinatorMetrics["attemptFinished"]>[1]> = {
  [A.succeeded]: "succeeded",
  [A.failed]: "failed",
  [A.abandoned]: "abandoned",
  [A.timedOut]: "timed_out",
  [A.cancelled]: "cancelled",
};

export class Coordinator {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;
  private readonly metrics: CoordinatorMetrics;
  private readonly scheduler: Scheduler;
  private readonly watchers = new WatchHub();
  private readonly polls = new LongPolls();
  /** Task declarations by name (null: never declared). This process is the only writer, so the cache stays true. */
  private readonly tasks = new Map<string, TaskRecord | null>();
  private offerScheduled = false;
  private closed = false;
  private readonly timerHold: HoldObserver;
  private readonly hold: Record<(typeof MEASURED_CALLS)[number], HoldObserver>;
  private readonly workers: WorkerRegistry;

  constructor(options: CoordinatorOptions) {
    this.store = options.store;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.log = options.log ?? silentLogger;
    this.metrics = options.metrics ?? noMetrics;
    this.scheduler = new Scheduler(this.clock, () => this.onTimer());
    this.workers = new WorkerRegistry(this.store);
    const holds = options.holds ?? noHolds;
    this.timerHold = holds.observer("timer");
    this.hold = Object.fromEntries(MEASURED_CALLS.map((name) => [name, holds.observer(name)])) as Coordinator["hold"];
  }

  /** Handles whatever fell due while the coordinator was down, then arms the timer. */
  start(): void {
    this.onTimer();
  }

  /** Long-polls return empty, watches end with UNAVAILABLE, and the timer stops. */
  shutdown(): void {
    this.closed = true;
    this.scheduler.stop();
    this.polls.releaseAll();
    this.watchers.failAll(new StatusError(status.UNAVAILABLE, "the coordinator is shutting down; watch again"));
  }

  get stats() {
    return { longPolls: this.polls.size, watches: this.watchers.size, nextWakeAt: this.scheduler.nextWakeAt };
  }

  // ---- executions -------------------------------------------------------

  async submit(params: SubmitParams): Promise<{ execution: Execution; existing: boolean }> {
    const [result] = await this.submitMany([params]);
    return result!;
  }

  /** Submits every execution or none (one savepoint), answering in order. */
  async submitMany(batch: SubmitParams[]): Promise<{ execution: Execution; existing: boolean }[]> {
    // Snapshots are taken in the same turn as the change: what Submit answers
    // is the execution as it was created, even if a worker leases it at once.
    const results = timed(this.hold.submit, () =>
      this.store.write(() =>
        batch.map((params) => {
          const { record, existing } = this.insertExecution(params);
          return { execution: existing ? this.snapshot(record) : toExecution(record, [], this.policyInEffect(record)), existing };
        }),
      ),
    );
    await this.store.committed();
    for (const { execution, existing } of results) {
      if (!existing) this.log.debug("execution submitted", { execution_id: execution.id, task: execution.task });
    }
    return results;
  }

  private insertExecution(params: SubmitParams): { record: ExecutionRecord; existing: boolean } {
    if (params.idempotencyKey !== null) {
      const found = this.store.executionGetByIdempotencyKey(params.idempotencyKey);
      if (found) return { record: found, existing: true };
    }
    const now = this.clock.now();
    const record = this.store.executionInsert({
      id: newExecutionId(now),
      task: params.task,
      state: E.pending,
      arguments: params.arguments,
      retryPolicy: params.retryPolicy,
      nextAttemptAt: now + params.delayMs,
      createdAt: now,
      idempotencyKey: params.idempotencyKey,
      labels: params.labels,
    });
    this.workDueAt(record.nextAttemptAt!, now);
    return { record, existing: false };
  }

  async get(id: string): Promise<Execution> {
    const snapshot = timed(this.hold.get, () => this.snapshot(this.requireExecution(id)));
    await this.store.committed();
    return snapshot;
  }

  async list(params: { task?: string; state?: number; beforeSeq?: number; limit: number }) {
    const page = timed(this.hold.list, () => {
      const { records, nextBeforeSeq } = this.store.executionList(params);
      return { executions: records.map((record) => this.snapshot(record)), nextBeforeSeq };
    });
    await this.store.committed();
    return page;
  }

  async cancel(id: string): Promise<Execution> {
    const snapshot = timed(this.hold.cancel, () => this.store.write(() => {
      const record = this.requireExecution(id);
      const now = this.clock.now();
      if (record.state === E.running) {
        const attempt = this.store.attemptGetRunning(record.seq);
        if (attempt) {
          this.store.attemptFinish({ id: attempt.id, leaseSecret: attempt.leaseSecret, state: A.cancelled, finishedAt: now, failure: null, retryPolicy: null });
          this.count((m) => m.attemptFinished(record.task, "cancelled"));
        }
      }
      if (!isTerminal(record.state)) {
        this.store.executionFinish({ seq: record.seq, task: record.task, from: "open", state: E.cancelled, finishedAt: now });
        this.changed(record.seq);
        this.log.info("execution cancelled", { execution_id: id, task: record.task });
      }
      return this.snapshot(this.store.executionGetBySeq(record.seq)!);
    }));
    await this.store.committed();
    return snapshot;
  }

  /**
   * Sends the current state, then every change, and resolves after the terminal
   * state has been sent. Rejects with UNAVAILABLE on shutdown; resolves early
   * when `signal` aborts (the caller went away).
   */
  async watch(id: string, send: (snapshot: Execution) => void, signal: AbortSignal): Promise<void> {
    await this.store.committed();
    const record = this.requireExecution(id);
    send(this.snapshot(record));
    if (isTerminal(record.state)) return;
    if (this.closed) throw new StatusError(status.UNAVAILABLE, "the coordinator is shutting down; watch again");
    await new Promise<void>((resolve, reject) => {
      const unsubscribe = this.watchers.add(record.seq, { lastVersion: record.version, send, finish: resolve, fail: reject });
      signal.addEventListener("abort", () => { unsubscribe(); resolve(); }, { once: true });
    });
  }

  // ---- workers ------------------------------------------------------------

  async declare(workerId: string, tasks: DeclaredTask[]): Promise<void> {
    const records = timed(this.hold.declare, () => this.store.write(() => {
      const now = this.clock.now();
      this.workers.seen(workerId, tasks.map((task) => task.name), now, true);
      return tasks.map((task) => {
        const record = { ...task, workerId, declaredAt: now };
        this.store.taskUpsert(record);
        return record;
      });
    }));
    // Until the commit lands, decisions would see the new declaration either
    // way: they read this same connection.
    for (const record of records) this.tasks.set(record.name, record);
    await this.store.committed();
  }

  /** The workers seen lately, most recent first; with `task`, those of that task. */
  async listWorkers(task: string | undefined): Promise<WorkerRecord[]> {
    const workers = this.workers.list(task, this.clock.now());
    await this.store.committed();
    return workers;
  }

  /** Leases due attempts at once, or waits up to `waitMs` for some to come due. */
  async lease(request: LeaseRequest & { waitMs: number }, signal: AbortSignal): Promise<LeasedAttempt[]> {
    // Checked before writing: most calls of a busy worker have nothing to write down.
    const now = this.clock.now();
    if (this.workers.due(request.workerId, request.tasks, now).length > 0) {
      this.store.write(() => this.workers.seen(request.workerId, request.tasks, now));
    }
    const leased = this.leaseDue(request);
    if (leased.length > 0 || request.waitMs === 0 || this.closed) {
      await this.store.committed();
      return leased;
    }
    return new Promise((resolve, reject) => {
      const poller: Poller = { ...request, deadline: this.clock.now() + request.waitMs, resolve, reject };
      this.polls.add(poller);
      this.scheduler.consider(poller.deadline);
      signal.addEventListener("abort", () => this.polls.remove(poller) && resolve([]), { once: true });
    });
  }

  /**
   * Undoes leases that were committed but could not be delivered (the
   * LeaseAttempts call was cancelled meanwhile): each execution is PENDING
   * again, due when it was, as if it had never been leased. Leases that have
   * moved on since are left alone.
   */
  async returnLeases(tokens: Uint8Array[]): Promise<void> {
    timed(this.hold.returnLeases, () => {
      for (const token of tokens) {
        this.store.write(() => {
          const attempt = this.findAttempt(token);
          if (typeof attempt === "string" || attempt.state !== A.running) return;
          if (this.store.attemptReturn({ id: attempt.id, leaseSecret: attempt.leaseSecret })) {
            this.changed(attempt.executionSeq);
            this.workDueAt(attempt.scheduledAt, this.clock.now());
            this.log.info("undelivered lease returned", { attempt: attempt.number, worker_id: attempt.workerId });
          }
        });
      }
    });
    await this.store.committed();
  }

  async heartbeat(tokens: Uint8Array[]): Promise<{ cancelRequested: Uint8Array[]; lost: Uint8Array[] }> {
    const cancelRequested: Uint8Array[] = [];
    const lost: Uint8Array[] = [];
    const started = performance.now();
    for (const token of tokens) {
      const verdict = this.store.write(() => {
        const found = this.findAttempt(token);
        if (typeof found === "string") return "lost";
        if (found.state === A.cancelled) return "cancel";
        if (found.state !== A.running) return "lost";
        const now = this.clock.now();
        if (this.expireIfDue(found, now)) return "lost";
        const extended = now + found.leaseMs;
        const leaseExpiresAt = found.timeoutAt === null ? extended : Math.min(extended, found.timeoutAt);
        this.store.attemptExtendLease({ id: found.id, leaseSecret: found.leaseSecret, leaseExpiresAt });
        return "ok";
      });
      if (verdict === "cancel") cancelRequested.push(token);
      else if (verdict === "lost") lost.push(token);
    }
    this.hold.heartbeat(performance.now() - started);
    await this.store.committed();
    return { cancelRequested, lost };
  }

  async report(outcomes: Outcome[]): Promise<OutcomeReceipt[]> {
    const started = performance.now();
    let receipts: OutcomeReceipt[];
    try {
      // One savepoint for the whole batch. Should an outcome fail to apply, the
      // batch rolls back and each outcome is applied again in a savepoint of
      // its own, so that the failure costs only that one.
      receipts = this.store.write(() => outcomes.map((outcome) => this.applyOutcome(outcome)));
    } catch {
      receipts = outcomes.map((outcome) => this.store.write(() => this.applyOutcome(outcome)));
    }
    this.hold.report(performance.now() - started);
    await this.store.committed();
    return receipts;
  }

  // ---- internals ----------------------------------------------------------

  private requireExecution(id: string): ExecutionRecord {
    const record = this.store.executionGet(id);
    if (!record) throw new StatusError(status.NOT_FOUND, `execution_id: no execution ${quote(id)}`);
    return record;
  }

  private task(name: string): TaskRecord | null {
    let task = this.tasks.get(name);
    if (task === undefined) this.tasks.set(name, (task = this.store.taskGet(name) ?? null));
    return task;
  }

  private policyInEffect(execution: { task: string; retryPolicy: Uint8Array | null }): Uint8Array | null {
    return execution.retryPolicy ?? this.task(execution.task)?.retryPolicy ?? null;
  }

  /** Counts a metric once the current batch commits; costs nothing when metrics are off. */
  private count(effect: (metrics: CoordinatorMetrics) => void): void {
    if (this.metrics !== noMetrics) this.store.afterCommit(() => effect(this.metrics));
  }

  private snapshot(record: ExecutionRecord): Execution {
    return toExecution(record, this.store.attemptList(record.seq), this.policyInEffect(record));
  }

  /** Queues the new state of a changed execution for its watchers, delivered after commit. */
  private changed(seq: number): void {
    if (!this.watchers.watching(seq)) return;
    const record = this.store.executionGetBySeq(seq)!;
    const snapshot = this.snapshot(record);
    this.store.afterCommit(() => this.watchers.publish(seq, record.version, snapshot, isTerminal(record.state)));
  }

  /** Wakes waiting workers now, or arms the timer for when the work comes due. */
  private workDueAt(dueAt: number, now: number): void {
    if (dueAt <= now) this.offerWorkSoon();
    else this.scheduler.consider(dueAt);
  }

  private offerWorkSoon(): void {
    if (this.offerScheduled || this.polls.size === 0) return;
    this.offerScheduled = true;
    // At the end of this turn, before its batch commits: the lease then shares
    // the submit's (or the failure's) transaction and goes out with its reply.
    queueMicrotask(() => {
      this.offerScheduled = false;
      try {
        this.offerWork();
      } catch (error) {
        // The batch rolled back what it leased; the pollers wait for the next offer or their deadline.
        this.log.error("offering work to waiting workers failed", { error: String(error) });
      }
    });
  }

  /** Offers due work to waiting pollers, oldest first. */
  private offerWork(): void {
    for (const poller of this.polls.list()) {
      const leased = this.leaseDue(poller);
      if (leased.length === 0 || !this.polls.remove(poller)) continue;
      this.store.committed().then(() => poller.resolve(leased), poller.reject);
    }
  }

  private leaseDue(request: LeaseRequest): LeasedAttempt[] {
    return timed(this.hold.lease, () => this.store.write(() => {
      const now = this.clock.now();
      const due = this.store.executionListDue({ tasks: request.tasks, now, limit: request.maxAttempts });
      const leased: LeasedAttempt[] = [];
      for (const record of due) {
        const timeoutMs = this.task(record.task)?.timeoutMs ?? null;
        const timeoutAt = timeoutMs === null ? null : now + timeoutMs;
        const leaseExpiresAt = timeoutAt === null ? now + request.leaseMs : Math.min(now + request.leaseMs, timeoutAt);
        const leaseSecret = newLeaseSecret();
        const number = record.attemptCount + 1;
        const attemptId = this.store.attemptStart({
          executionSeq: record.seq,
          task: record.task,
          number,
          workerId: request.workerId,
          scheduledAt: record.nextAttemptAt,
          startedAt: now,
          leaseSecret,
          leaseMs: request.leaseMs,
          leaseExpiresAt,
          timeoutAt,
        });
        if (attemptId === undefined) continue;
        this.changed(record.seq);
        const dueToStartMs = now - record.nextAttemptAt;
        this.count((m) => m.attemptStarted(record.task, dueToStartMs, number > 1));
        this.scheduler.consider(leaseExpiresAt);
        leased.push({
          $typeName: "reprise.v1.LeasedAttempt",
          executionId: record.id,
          task: record.task,
          attempt: number,
          leaseToken: encodeLeaseToken(attemptId, leaseSecret),
          leaseExpiresAt: msToTimestamp(leaseExpiresAt),
          arguments: toPayload(record.arguments),
          timeoutAt: timeoutAt === null ? undefined : msToTimestamp(timeoutAt),
          labels: record.labels,
        });
        this.log.debug("attempt leased", { execution_id: record.id, task: record.task, attempt: number, worker_id: request.workerId });
      }
      return leased;
    }));
  }

  /** The attempt a token names, or why it names none. Constant-time on the secret. */
  private findAttempt(token: Uint8Array): AttemptRef | string {
    const decoded = decodeLeaseToken(token);
    if (!decoded) return "malformed lease token";
    const attempt = this.store.attemptGet(decoded.attemptId);
    if (!attempt || !secretsEqual(attempt.leaseSecret, decoded.secret)) return "unknown lease token";
    return attempt;
  }

  private refused(kind: string, reason: string): OutcomeReceipt {
    this.count((m) => m.reportRefused(kind));
    return receipt({ accepted: false, reason });
  }

  private applyOutcome(outcome: Outcome): OutcomeReceipt {
    if (outcome.outcome.case === undefined) return this.refused("empty", "the outcome has neither a result nor a failure");
    const attempt = this.findAttempt(outcome.leaseToken);
    if (typeof attempt === "string") return this.refused(attempt.startsWith("malformed") ? "malformed" : "unknown", attempt);
    if (attempt.state === A.cancelled) return this.refused("cancelled", "the execution was cancelled");
    if (attempt.state !== A.running) return this.refused("ended", `attempt ${attempt.number} already ended; this lease is no longer current`);
    const now = this.clock.now();
    if (this.expireIfDue(attempt, now)) {
      return this.store.attemptGet(attempt.id)!.state === A.timedOut
        ? this.refused("timed_out", "the attempt timed out")
        : this.refused("expired", "the lease expired");
    }
    const execution = attempt.execution;
    if (outcome.outcome.case === "result") {
      const result = outcome.outcome.value;
      this.store.attemptFinish({ id: attempt.id, leaseSecret: attempt.leaseSecret, state: A.succeeded, finishedAt: now, failure: null, retryPolicy: null });
      this.store.executionFinish({
        seq: execution.seq,
        task: execution.task,
        from: "running",
        state: E.succeeded,
        finishedAt: now,
        result: { data: result.data, contentType: result.contentType },
      });
      this.changed(execution.seq);
      this.count((m) => m.attemptFinished(execution.task, "succeeded"));
      this.log.debug("attempt succeeded", { execution_id: execution.id, task: execution.task, attempt: attempt.number });
      return receipt({ accepted: true });
    }
    const failure = outcome.outcome.value;
    const decision = this.endAttempt(attempt, execution, A.failed, now, {
      type: failure.type,
      message: failure.message,
      stackTrace: failure.stackTrace,
      nonRetryable: failure.nonRetryable,
      retryAfterMs: failure.retryAfter ? durationToMs(failure.retryAfter) : 0,
    });
    return receipt({ accepted: true, willRetry: decision !== null, nextAttemptAt: decision === null ? undefined : msToTimestamp(decision) });
  }

  /**
   * Ends a RUNNING attempt as FAILED, ABANDONED or TIMED_OUT and decides what
   * follows under the policy in effect now. Returns when the retry is due, or
   * null when the execution ended.
   */
  private endAttempt(attempt: AttemptRef, execution: ExecutionRef, state: number, now: number, failure: FailureRecord): number | null {
    const policyBytes = this.policyInEffect(execution);
    const policy = policyBytes === null ? null : storedPolicy(policyBytes).resolved;
    const retryable = !(state === A.failed && failure.nonRetryable);
    let delayMs = retryable && policy ? retryDelayMs(policy, attempt.number, this.random) : null;
    if (delayMs !== null && failure.retryAfterMs > 0) delayMs = failure.retryAfterMs;
    this.store.attemptFinish({
      id: attempt.id,
      leaseSecret: attempt.leaseSecret,
      state,
      finishedAt: now,
      failure,
      retryPolicy: policy ? policyBytes : null,
    });
    const fields = { execution_id: execution.id, task: execution.task, attempt: attempt.number, error_type: failure.type };
    this.count((m) => {
      m.attemptFinished(execution.task, OUTCOME_OF_STATE[state]!);
      if (delayMs !== null) m.retryScheduled(execution.task);
    });
    if (state !== A.failed) this.log.info(state === A.timedOut ? "attempt timed out" : "attempt abandoned", { ...fields, message: failure.message });
    if (delayMs !== null) {
      const nextAttemptAt = now + delayMs;
      this.store.executionSetRetry({ seq: execution.seq, task: execution.task, nextAttemptAt });
      this.changed(execution.seq);
      this.workDueAt(nextAttemptAt, now);
      this.log.info("retry scheduled", { ...fields, attempt_state: OUTCOME_OF_STATE[state], delay_ms: delayMs });
      return nextAttemptAt;
    }
    this.store.executionFinish({ seq: execution.seq, task: execution.task, from: "running", state: TERMINAL_FROM_ATTEMPT[state]!, finishedAt: now, failure });
    this.changed(execution.seq);
    this.log.info("execution ended", { ...fields, state: OUTCOME_OF_STATE[state] });
    return null;
  }

  /**
   * Ends a RUNNING attempt whose lease or timeout has passed. When both have,
   * whichever came first decides; heartbeats never extend a lease past the
   * timeout, so a timeout at or before the lease expiry is a timeout.
   */
  private expireIfDue(attempt: AttemptRef, now: number): boolean {
    const timedOut = attempt.timeoutAt !== null && attempt.timeoutAt <= attempt.leaseExpiresAt;
    const deadline = timedOut ? attempt.timeoutAt! : attempt.leaseExpiresAt;
    if (deadline > now) return false;
    const execution = attempt.execution;
    const failure: FailureRecord = timedOut
      ? {
          type: "TimedOut",
          message: `attempt ${attempt.number} ran past its timeout of ${attempt.timeoutAt! - attempt.startedAt} ms (at ${new Date(attempt.timeoutAt!).toISOString()})`,
          stackTrace: "",
          nonRetryable: false,
          retryAfterMs: 0,
        }
      : {
          type: "Abandoned",
          message: `the lease of attempt ${attempt.number} expired at ${new Date(attempt.leaseExpiresAt).toISOString()} with no heartbeat or outcome from worker ${JSON.stringify(attempt.workerId)}`,
          stackTrace: "",
          nonRetryable: false,
          retryAfterMs: 0,
        };
    this.endAttempt(attempt, execution, timedOut ? A.timedOut : A.abandoned, now, failure);
    return true;
  }

  private onTimer(): void {
    const started = performance.now();
    try {
      this.tick();
    } finally {
      this.timerHold(performance.now() - started);
    }
  }

  private tick(): void {
    const now = this.clock.now();
    const expired = this.store.attemptListExpired({ now, limit: EXPIRY_SLICE });
    let ended = 0;
    for (const id of expired) {
      try {
        if (this.store.write(() => {
          const attempt = this.store.attemptGet(id);
          return attempt !== undefined && attempt.state === A.running && this.expireIfDue(attempt, now);
        })) ended++;
      } catch (error) {
        this.log.error("expiring an attempt failed", { attempt_id: id, error: String(error) });
      }
    }
    this.offerWork();
    this.polls.expire(now);
    if (this.closed) return;
    // A full slice that ended something may have more behind it: the next
    // slice runs in a tick of its own, after whatever arrived meanwhile.
    if (expired.length === EXPIRY_SLICE && ended > 0) this.scheduler.armAt(now);
    else this.rearm(now);
  }

  private rearm(now: number): void {
    const deadlines = [this.store.nextDeadline(now), this.polls.earliestDeadline()].filter((t): t is number => t !== null);
    this.scheduler.armAt(deadlines.length === 0 ? null : Math.min(...deadlines));
  }
}

/** An OutcomeReceipt as a literal: create() would first fill in every default. */
function receipt({ accepted, reason = "", willRetry = false, nextAttemptAt }: Partial<Omit<OutcomeReceipt, "$typeName">> & { accepted: boolean }): OutcomeReceipt {
  return { $typeName: "reprise.v1.OutcomeReceipt", accepted, reason, willRetry, nextAttemptAt };
}

/** Serializes a validated policy for storage. */
export function encodePolicy(policy: RetryPolicy | undefined): Uint8Array | null {
  return policy === undefined ? null : toBinary(RetryPolicySchema, policy);
}

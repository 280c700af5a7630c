// The coordinator: every decision about executions and attempts, for every
// store. It keeps the schedule and history in the store, decides every retry,
// wakes long-polling workers when work comes due, and pushes each change to
// the watchers: those of this node directly, those of other nodes sharing the
// store through its peers.
//
// Every change runs inside store.write(), so that a read and the guarded
// update that follows it see no other change in between. Replies wait for the
// write to settle: nothing is acknowledged before it is durable.
import { toBinary } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import { RetryPolicySchema, StatusError } from "@reprise/wire";
import type { Execution, LeasedAttempt, Outcome, OutcomeReceipt, RetryPolicy } from "@reprise/wire";
import { systemClock } from "./clock.js";
import type { Clock } from "./clock.js";
import { decodeLeaseToken, encodeLeaseToken, newLeaseSecret, secretsEqual } from "./lease-token.js";
import type { Logger } from "../operator/log.js";
import { silentLogger } from "../operator/log.js";
import { LongPolls } from "./long-polls.js";
import type { LeaseRequest, Poller } from "./long-polls.js";
import { noMetrics } from "../operator/metrics.js";
import type { CoordinatorMetrics } from "../operator/metrics.js";
import { newExecutionId } from "./ids.js";
import { WorkerRegistry } from "./workers.js";
import { Scheduler } from "./scheduler.js";
import { stateName, toExecution, toPayload } from "./snapshot.js";
import { AttemptStateNumber as A, ExecutionStateNumber as E, RERUNNABLE_STATES } from "../store/store.js";
import type {
  AttemptRef,
  ExecutionRecord,
  NewAttempt,
  NewExecution,
  PayloadRecord,
  PeerNews,
  RetryBudgetRecord,
  Store,
  TaskRecord,
  Tx,
  WorkerRecord,
} from "../store/store.js";
import { msToTimestamp } from "./time.js";
import { quote } from "../api/validate.js";
import { WatchHub } from "./watch-hub.js";
import { Outcomes } from "./outcomes.js";

export interface CoordinatorOptions {
  store: Store;
  metrics?: CoordinatorMetrics;
  clock?: Clock;
  /** Uniform in [0, 1); drives the delays of unlimited retries. */
  random?: () => number;
  log?: Logger;
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
  retryBudget: RetryBudgetRecord | null;
}

export const isTerminal = (state: number) => state !== E.pending && state !== E.running;

/** What ListTasks says of one task. */
export interface TaskOverview {
  name: string;
  declaration: TaskRecord | null;
  executions: { state: number; count: number }[];
  due: number;
  workers: number;
  lastSeenAt: number | null;
  noWorker: boolean;
  failuresLastHour: number;
  retriesLastHour: number;
  /** Most frequent first, at most 5. */
  frequentFailures: { type: string; count: number }[];
}

/** Due executions are counted up to here: a backlog of millions is "more than 10000". */
const DUE_COUNT_CAP = 10_001;
/** Due work with no worker seen for its task for this long is flagged. */
const NO_WORKER_AFTER_MS = 60_000;

// Expired attempts are handled in slices, one per timer tick, so that one tick
// never holds the event loop for long, even after a restart with many leases
// gone stale.
const EXPIRY_SLICE = 500;

export class Coordinator {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;
  private readonly metrics: CoordinatorMetrics;
  private readonly scheduler: Scheduler;
  private readonly watchers = new WatchHub();
  private readonly polls = new LongPolls();
  private readonly workers: WorkerRegistry;
  private readonly outcomes: Outcomes;
  /** News for the other nodes, gathered over one turn and told once. */
  private news: PeerNews | null = null;
  private offerScheduled = false;
  /**
   * Bumped whenever due work is offered to the waiting pollers: a LeaseAttempts
   * whose claim found nothing compares it across the claim, so that work
   * offered before its poller was registered is not missed.
   */
  private offers = 0;
  private ticking: Promise<void> | null = null;
  private tickAgain = false;
  private closed = false;
  /** With other nodes on the store: the real-time re-check, whatever clock decides. */
  private recheck: NodeJS.Timeout | null = null;

  constructor(options: CoordinatorOptions) {
    this.store = options.store;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.log = options.log ?? silentLogger;
    this.metrics = options.metrics ?? noMetrics;
    this.scheduler = new Scheduler(this.clock, () => this.onTimer());
    this.workers = new WorkerRegistry();
    this.outcomes = new Outcomes({
      clock: this.clock,
      random: this.random,
      log: this.log,
      count: (tx, effect) => this.count(tx, effect),
      changed: (tx, seq) => this.changed(tx, seq),
      workDueAt: (tx, task, dueAt, now) => this.workDueAt(tx, task, dueAt, now),
      policyInEffect: (tx, execution) => this.policyInEffect(tx, execution),
    });
    this.store.peers?.listen((news) => this.heard(news));
  }

  /** Handles whatever fell due while the coordinator was down, then arms the timer. */
  start(): void {
    this.onTimer();
    // Work may come due, and watched executions change, on another node without
    // news of it reaching this one (a node killed between its commit and its
    // NOTIFY, a failed read): look again every recheckMs.
    const peers = this.store.peers;
    if (peers) {
      this.recheck = setInterval(() => {
        this.onTimer();
        void this.recheckWatches();
      }, peers.recheckMs);
      this.recheck.unref();
    }
  }

  /** Long-polls return empty, watches end with UNAVAILABLE, and the timer stops. Resolves once a tick under way has ended. */
  async shutdown(): Promise<void> {
    this.closed = true;
    this.scheduler.stop();
    if (this.recheck) clearInterval(this.recheck);
    this.polls.releaseAll();
    this.watchers.failAll(new StatusError(status.UNAVAILABLE, "the coordinator is shutting down; watch again"));
    await this.ticking;
  }

  get stats() {
    return { longPolls: this.polls.size, watches: this.watchers.size, nextWakeAt: this.scheduler.nextWakeAt };
  }

  // ---- executions -------------------------------------------------------

  async submit(params: SubmitParams): Promise<{ execution: Execution; existing: boolean }> {
    const [result] = await this.submitMany([params]);
    return result!;
  }

  /** Submits every execution or none, answering in order. */
  async submitMany(batch: SubmitParams[]): Promise<{ execution: Execution; existing: boolean }[]> {
    // Snapshots are taken in the same change as the insert: what Submit answers
    // is the execution as it was created, even if a worker leases it at once.
    const results = await this.store.write(async (tx) => {
      const records = await this.insertExecutions(tx, batch);
      const answers: { execution: Execution; existing: boolean }[] = [];
      for (const { record, existing } of records) {
        answers.push({ execution: existing ? await this.snapshot(tx, record) : toExecution(record, [], await this.policyInEffect(tx, record)), existing });
      }
      return answers;
    });
    for (const { execution, existing } of results) {
      if (!existing) this.log.debug("execution submitted", { execution_id: execution.id, task: execution.task });
    }
    return results;
  }

  /**
   * Inserts the executions of a batch in one statement, in order; one whose
   * idempotency key names an execution already (stored, or earlier in the
   * batch) is answered with that one instead.
   */
  private async insertExecutions(tx: Tx, batch: SubmitParams[]): Promise<{ record: ExecutionRecord; existing: boolean }[]> {
    const now = this.clock.now();
    const answers = new Array<{ record: ExecutionRecord; existing: boolean }>(batch.length);
    const firstWithKey = new Map<string, number>();
    /** [index, index of the earlier submit in the batch with the same key]. */
    const repeats: [number, number][] = [];
    const fresh: { index: number; execution: NewExecution }[] = [];
    for (const [index, params] of batch.entries()) {
      const key = params.idempotencyKey;
      if (key !== null) {
        const first = firstWithKey.get(key);
        if (first !== undefined) {
          repeats.push([index, first]);
          continue;
        }
        const found = await tx.executionGetByIdempotencyKey(key);
        if (found) {
          answers[index] = { record: found, existing: true };
          continue;
        }
        firstWithKey.set(key, index);
      }
      fresh.push({
        index,
        execution: {
          id: newExecutionId(now),
          task: params.task,
          state: E.pending,
          arguments: params.arguments,
          retryPolicy: params.retryPolicy,
          nextAttemptAt: now + params.delayMs,
          createdAt: now,
          idempotencyKey: key,
          labels: params.labels,
        },
      });
    }
    const inserted = fresh.length === 0 ? [] : await tx.executionInsert(fresh.map((f) => f.execution));
    for (const [k, { index, execution }] of fresh.entries()) {
      const record = inserted[k];
      if (record === undefined) {
        // A concurrent Submit on another node took the key first: answer with its execution.
        answers[index] = { record: (await tx.executionGetByIdempotencyKey(execution.idempotencyKey!))!, existing: true };
        continue;
      }
      answers[index] = { record, existing: false };
      this.workDueAt(tx, record.task, record.nextAttemptAt!, now);
    }
    for (const [index, first] of repeats) answers[index] = { record: answers[first]!.record, existing: true };
    return answers;
  }

  async get(id: string): Promise<Execution> {
    return this.store.read(async (tx) => this.snapshot(tx, await this.requireExecution(tx, id)));
  }

  /** A page of executions, newest first; with `idempotencyKey`, the one execution that has it (if it matches the rest). */
  async list(params: { task?: string; state?: number; labels?: Record<string, string>; beforeSeq?: number; limit: number; idempotencyKey?: string }) {
    return this.store.read(async (tx) => {
      if (params.idempotencyKey !== undefined) {
        const record = await tx.executionGetByIdempotencyKey(params.idempotencyKey);
        const matches =
          record !== undefined &&
          (params.task === undefined || record.task === params.task) &&
          (params.state === undefined || record.state === params.state) &&
          Object.entries(params.labels ?? {}).every(([key, value]) => record.labels[key] === value) &&
          (params.beforeSeq === undefined || record.seq < params.beforeSeq);
        return { executions: matches ? [await this.snapshot(tx, record)] : [], nextBeforeSeq: null };
      }
      const { records, nextBeforeSeq } = await tx.executionList(params);
      const executions: Execution[] = [];
      for (const record of records) executions.push(await this.snapshot(tx, record));
      return { executions, nextBeforeSeq };
    });
  }

  async cancel(id: string): Promise<Execution> {
    return this.store.write(async (tx) => {
      const record = await this.requireExecution(tx, id);
      const now = this.clock.now();
      if (record.state === E.running) {
        const attempt = await tx.attemptGetRunning(record.seq);
        if (attempt) {
          await tx.attemptFinish({ id: attempt.id, leaseSecret: attempt.leaseSecret, state: A.cancelled, finishedAt: now, failure: null, retryPolicy: null, decision: null });
          this.count(tx, (m) => m.attemptFinished(record.task, "cancelled"));
        }
      }
      if (!isTerminal(record.state) && (await tx.executionFinish({ seq: record.seq, task: record.task, from: "open", state: E.cancelled, finishedAt: now }))) {
        await this.changed(tx, record.seq);
        tx.afterCommit(() => this.log.info("execution cancelled", { execution_id: id, task: record.task }));
      }
      return this.snapshot(tx, (await tx.executionGetBySeq(record.seq))!);
    });
  }

  /**
   * Runs an execution that ended FAILED, ABANDONED, TIMED_OUT or CANCELLED
   * again: PENDING, due now, with its retry limit, k and max_elapsed counted
   * afresh. Any other state is FAILED_PRECONDITION.
   */
  async rerun(id: string): Promise<Execution> {
    return this.store.write(async (tx) => {
      const record = await this.requireExecution(tx, id);
      const now = this.clock.now();
      if (!RERUNNABLE_STATES.includes(record.state) || !(await tx.executionRerun({ seq: record.seq, task: record.task, from: record.state, now }))) {
        throw new StatusError(
          status.FAILED_PRECONDITION,
          `execution_id: execution ${quote(id)} is ${stateName(record.state)}; only a FAILED, ABANDONED, TIMED_OUT or CANCELLED execution can be re-run`,
        );
      }
      await this.changed(tx, record.seq);
      this.workDueAt(tx, record.task, now, now);
      this.count(tx, (m) => m.executionRerun(record.task));
      tx.afterCommit(() => this.log.info("execution re-run", { execution_id: id, task: record.task, previous_state: stateName(record.state) }));
      return this.snapshot(tx, (await tx.executionGetBySeq(record.seq))!);
    });
  }

  /**
   * Sends the current state, then every change, and resolves after the terminal
   * state has been sent. Rejects with UNAVAILABLE on shutdown; resolves early
   * when `signal` aborts (the caller went away).
   */
  async watch(id: string, send: (snapshot: Execution) => void, signal: AbortSignal): Promise<void> {
    const { record, snapshot } = await this.store.read(async (tx) => {
      const record = await this.requireExecution(tx, id);
      return { record, snapshot: await this.snapshot(tx, record) };
    });
    send(snapshot);
    if (isTerminal(record.state)) return;
    if (this.closed) throw new StatusError(status.UNAVAILABLE, "the coordinator is shutting down; watch again");
    await new Promise<void>((resolve, reject) => {
      const unsubscribe = this.watchers.add(record.seq, { lastVersion: record.version, send, finish: resolve, fail: reject });
      signal.addEventListener("abort", () => { unsubscribe(); resolve(); }, { once: true });
      // A change committed between the read above and now, on any node, would
      // otherwise go unseen until the next one.
      void this.republish([record.seq]);
    });
  }

  // ---- workers ------------------------------------------------------------

  async declare(workerId: string, tasks: DeclaredTask[]): Promise<void> {
    await this.store.write(async (tx) => {
      const now = this.clock.now();
      await this.workers.seen(tx, workerId, tasks.map((task) => task.name), now, true);
      for (const task of tasks) await tx.taskUpsert({ ...task, workerId, declaredAt: now });
    });
  }

  /**
   * Every task known (declared, or with executions), by name, with its
   * declaration, its executions by state, how many are due now, and the
   * workers seen for it lately.
   */
  async listTasks(): Promise<TaskOverview[]> {
    return this.store.read(async (tx) => {
      const now = this.clock.now();
      const declared = new Map((await tx.taskList()).map((task) => [task.name, task]));
      const counts = (await tx.executionCountByTaskAndState()).filter((row) => row.count > 0);
      const failures = await tx.failureStats(now - 3_600_000);
      const names = [...new Set([...declared.keys(), ...counts.map((row) => row.task)])].sort();
      const overviews: TaskOverview[] = [];
      for (const name of names) {
        const executions = counts.filter((row) => row.task === name).sort((a, b) => a.state - b.state);
        const pending = executions.some((row) => row.state === E.pending);
        const due = pending ? await tx.executionCountDueOfTask({ task: name, now, cap: DUE_COUNT_CAP }) : 0;
        const workers = await this.workers.list(tx, name, now);
        const lastSeenAt = workers.length === 0 ? null : Math.max(...workers.map((worker) => worker.lastSeenAt));
        const types = failures.filter((row) => row.task === name).sort((a, b) => b.failures - a.failures || (a.type < b.type ? -1 : 1));
        overviews.push({
          name,
          declaration: declared.get(name) ?? null,
          executions: executions.map(({ state, count }) => ({ state, count })),
          due,
          workers: workers.length,
          lastSeenAt,
          noWorker: due > 0 && (lastSeenAt === null || now - lastSeenAt > NO_WORKER_AFTER_MS),
          failuresLastHour: types.reduce((sum, row) => sum + row.failures, 0),
          retriesLastHour: types.reduce((sum, row) => sum + row.retries, 0),
          frequentFailures: types.slice(0, 5).map((row) => ({ type: row.type, count: row.failures })),
        });
      }
      return overviews;
    });
  }

  /** The workers seen lately, most recent first; with `task`, those of that task. */
  async listWorkers(task: string | undefined): Promise<WorkerRecord[]> {
    return this.store.read((tx) => this.workers.list(tx, task, this.clock.now()));
  }

  /** Leases due attempts at once, or waits up to `waitMs` for some to come due. */
  async lease(request: LeaseRequest & { waitMs: number }, signal: AbortSignal): Promise<LeasedAttempt[]> {
    const now = this.clock.now();
    // Checked before writing: most calls of a busy worker have nothing to write down.
    const seen = this.workers.due(request.workerId, request.tasks, now).length > 0;
    const offers = this.offers;
    const leased = await this.store.write(async (tx) => {
      if (seen) await this.workers.seen(tx, request.workerId, request.tasks, now);
      return this.leaseDue(tx, request);
    });
    if (leased.length > 0 || request.waitMs === 0 || this.closed) return leased;
    return new Promise((resolve, reject) => {
      const poller: Poller = { ...request, deadline: this.clock.now() + request.waitMs, resolve, reject };
      this.polls.add(poller);
      this.scheduler.consider(poller.deadline);
      signal.addEventListener("abort", () => this.polls.remove(poller) && resolve([]), { once: true });
      // Work that came due while the claim above ran was offered to the
      // pollers waiting then, which did not include this one yet.
      if (this.offers !== offers) void this.offerTo(poller);
    });
  }

  /**
   * Undoes leases that were committed but could not be delivered (the
   * LeaseAttempts call was cancelled meanwhile): each execution is PENDING
   * again, due when it was, as if it had never been leased. Leases that have
   * moved on since are left alone.
   */
  async returnLeases(tokens: Uint8Array[]): Promise<void> {
    await Promise.all(tokens.map((token) => this.store.write(async (tx) => {
      const [attempt] = await this.findAttempts(tx, [token]);
      if (typeof attempt === "string" || attempt!.state !== A.running) return;
      if (await tx.attemptReturn({ id: attempt!.id, leaseSecret: attempt!.leaseSecret })) {
        await this.changed(tx, attempt!.executionSeq);
        this.workDueAt(tx, attempt!.execution.task, attempt!.scheduledAt, this.clock.now());
        tx.afterCommit(() => this.log.info("undelivered lease returned", { attempt: attempt!.number, worker_id: attempt!.workerId }));
      }
    })));
  }

  async heartbeat(tokens: Uint8Array[]): Promise<{ cancelRequested: Uint8Array[]; lost: Uint8Array[] }> {
    const verdicts = await this.store.write(async (tx) => {
      const found = await this.findAttempts(tx, tokens);
      const now = this.clock.now();
      const verdicts: ("ok" | "cancel" | "lost")[] = [];
      const leases: { id: number; leaseSecret: Uint8Array; leaseExpiresAt: number }[] = [];
      for (const attempt of found) {
        if (typeof attempt === "string") verdicts.push("lost");
        else if (attempt.state === A.cancelled) verdicts.push("cancel");
        else if (attempt.state !== A.running || (await this.outcomes.expireIfDue(tx, attempt, now)) !== null) verdicts.push("lost");
        else {
          const extended = now + attempt.leaseMs;
          leases.push({ id: attempt.id, leaseSecret: attempt.leaseSecret, leaseExpiresAt: attempt.timeoutAt === null ? extended : Math.min(extended, attempt.timeoutAt) });
          verdicts.push("ok");
        }
      }
      if (leases.length > 0) await tx.attemptExtendLease(leases);
      return verdicts;
    });
    const cancelRequested: Uint8Array[] = [];
    const lost: Uint8Array[] = [];
    verdicts.forEach((verdict, i) => {
      if (verdict === "cancel") cancelRequested.push(tokens[i]!);
      else if (verdict === "lost") lost.push(tokens[i]!);
    });
    return { cancelRequested, lost };
  }

  async report(outcomes: Outcome[]): Promise<OutcomeReceipt[]> {
    try {
      // One change for the whole batch. Should an outcome fail to apply, the
      // batch rolls back and each outcome is applied again in a change of its
      // own, so that the failure costs only that one.
      return await this.store.write(async (tx) => {
        const attempts = await this.findAttempts(tx, outcomes.map((outcome) => outcome.leaseToken));
        const receipts: OutcomeReceipt[] = [];
        for (let i = 0; i < outcomes.length; i++) receipts.push(await this.outcomes.apply(tx, outcomes[i]!, attempts[i]!));
        return receipts;
      });
    } catch (error) {
      if (outcomes.length === 1) throw error;
      return Promise.all(outcomes.map((outcome) => this.store.write(async (tx) => {
        const [attempt] = await this.findAttempts(tx, [outcome.leaseToken]);
        return this.outcomes.apply(tx, outcome, attempt!);
      })));
    }
  }

  // ---- internals ----------------------------------------------------------

  private async requireExecution(tx: Tx, id: string): Promise<ExecutionRecord> {
    const record = await tx.executionGet(id);
    if (!record) throw new StatusError(status.NOT_FOUND, `execution_id: no execution ${quote(id)}`);
    return record;
  }

  /** The serialized policy that applies now: the Submit's own, else the task's declaration, read in this change. */
  private async policyInEffect(tx: Tx, execution: { task: string; retryPolicy: Uint8Array | null }): Promise<Uint8Array | null> {
    return execution.retryPolicy ?? (await tx.taskGet(execution.task))?.retryPolicy ?? null;
  }

  /** Counts a metric once the change commits; costs nothing when metrics are off. */
  private count(tx: Tx, effect: (metrics: CoordinatorMetrics) => void): void {
    if (this.metrics !== noMetrics) tx.afterCommit(() => effect(this.metrics));
  }

  private async snapshot(tx: Tx, record: ExecutionRecord): Promise<Execution> {
    return toExecution(record, await tx.attemptList(record.seq), await this.policyInEffect(tx, record));
  }

  /**
   * Queues the new state of a changed execution for the watchers of this node,
   * delivered after commit, and tells the other nodes.
   */
  private async changed(tx: Tx, seq: number): Promise<void> {
    if (this.store.peers) tx.afterCommit(() => this.tell((news) => news.executions.push(seq)));
    if (!this.watchers.watching(seq)) return;
    const record = (await tx.executionGetBySeq(seq))!;
    const snapshot = await this.snapshot(tx, record);
    tx.afterCommit(() => this.watchers.publish(seq, record.version, snapshot, isTerminal(record.state)));
  }

  /** Re-reads executions that another node changed and sends what is new to their watchers here. */
  private async republish(seqs: number[]): Promise<void> {
    const watched = seqs.filter((seq) => this.watchers.watching(seq));
    if (watched.length === 0) return;
    try {
      const snapshots = await this.store.read(async (tx) => {
        const found: { seq: number; record: ExecutionRecord; snapshot: Execution }[] = [];
        for (const seq of watched) {
          const record = await tx.executionGetBySeq(seq);
          if (record) found.push({ seq, record, snapshot: await this.snapshot(tx, record) });
        }
        return found;
      });
      for (const { seq, record, snapshot } of snapshots) this.watchers.publish(seq, record.version, snapshot, isTerminal(record.state));
    } catch (error) {
      this.log.warn("reading changed executions for watchers failed; the next re-check brings them up to date", { error: String(error) });
    }
  }

  /** Sends watchers here what changed without news of it: one cheap read of the watched executions' versions. */
  private async recheckWatches(): Promise<void> {
    const watched = this.watchers.watched();
    if (watched.length === 0) return;
    try {
      const versions = await this.store.read(async (tx) => tx.executionVersions(watched));
      await this.republish(this.watchers.behind(versions));
    } catch (error) {
      this.log.warn("re-checking watched executions failed; it tries again at the next re-check", { error: String(error) });
    }
  }

  /** Wakes waiting workers once the change commits, or arms the timer for when the work comes due; tells the other nodes. */
  private workDueAt(tx: Tx, task: string, dueAt: number, now: number): void {
    // With group commit, a lease offered now shares this change's commit and
    // goes out with its reply; elsewhere the work is visible only after it.
    if (dueAt <= now && this.store.groupCommit) this.offerWorkSoon();
    tx.afterCommit(() => {
      if (dueAt <= now) this.offerWorkSoon();
      else this.scheduler.consider(dueAt);
      if (this.store.peers) this.tell((news) => news.due.set(task, Math.min(dueAt, news.due.get(task) ?? Infinity)));
    });
  }

  /** Adds to the news of this turn, told to the other nodes at its end. */
  private tell(add: (news: PeerNews) => void): void {
    if (this.news === null) {
      this.news = { executions: [], due: new Map() };
      queueMicrotask(() => {
        const news = this.news!;
        this.news = null;
        this.store.peers!.tell(news);
      });
    }
    add(this.news);
  }

  /** News from another node (or null: anything may have been missed). */
  private heard(news: PeerNews | null): void {
    if (this.closed) return;
    if (news === null) {
      // Watches get the current state; the timer offers due work, sweeps and re-arms.
      void this.republish(this.watchers.watched());
      this.onTimer();
      return;
    }
    if (news.executions.length > 0) void this.republish(news.executions);
    const now = this.clock.now();
    for (const dueAt of news.due.values()) {
      if (dueAt <= now) this.offerWorkSoon();
      else this.scheduler.consider(dueAt);
    }
  }

  private offerWorkSoon(): void {
    this.offers++;
    if (this.offerScheduled || this.polls.size === 0) return;
    this.offerScheduled = true;
    queueMicrotask(() => {
      this.offerScheduled = false;
      this.offerWork();
    });
  }

  /** Offers due work to every waiting poller, oldest first. */
  private offerWork(): void {
    this.offers++;
    for (const poller of this.polls.list()) void this.offerTo(poller);
  }

  private async offerTo(poller: Poller): Promise<void> {
    if (poller.offering) {
      poller.offerAgain = true;
      return;
    }
    poller.offering = true;
    try {
      do {
        poller.offerAgain = false;
        const leased = await this.store.write((tx) => this.leaseDue(tx, poller));
        if (leased.length === 0) continue;
        if (this.polls.remove(poller)) poller.resolve(leased);
        // The poller was answered meanwhile (its wait ran out, or it went away): nobody will receive these.
        else await this.returnLeases(leased.map((attempt) => attempt.leaseToken));
        return;
      } while (poller.offerAgain && this.polls.has(poller));
    } catch (error) {
      // The change rolled back what it leased; the poller waits for the next offer or its deadline.
      this.log.error("offering work to a waiting worker failed", { worker_id: poller.workerId, error: String(error) });
    } finally {
      poller.offering = false;
    }
  }

  private async leaseDue(tx: Tx, request: LeaseRequest): Promise<LeasedAttempt[]> {
    const now = this.clock.now();
    const due = await tx.executionClaimDue({ tasks: request.tasks, now, limit: request.maxAttempts });
    if (due.length === 0) return [];
    const timeouts = new Map<string, number | null>();
    for (const record of due) {
      if (!timeouts.has(record.task)) timeouts.set(record.task, (await tx.taskGet(record.task))?.timeoutMs ?? null);
    }
    const attempts: NewAttempt[] = due.map((record) => {
      const timeoutMs = timeouts.get(record.task)!;
      const timeoutAt = timeoutMs === null ? null : now + timeoutMs;
      return {
        executionSeq: record.seq,
        number: record.attemptCount + 1,
        workerId: request.workerId,
        scheduledAt: record.nextAttemptAt,
        startedAt: now,
        leaseSecret: newLeaseSecret(),
        leaseMs: request.leaseMs,
        leaseExpiresAt: timeoutAt === null ? now + request.leaseMs : Math.min(now + request.leaseMs, timeoutAt),
        timeoutAt,
      };
    });
    const ids = await tx.attemptInsert(attempts);
    const leased: LeasedAttempt[] = [];
    for (let i = 0; i < due.length; i++) {
      const record = due[i]!;
      const attempt = attempts[i]!;
      await this.changed(tx, record.seq);
      const dueToStartMs = now - record.nextAttemptAt;
      this.count(tx, (m) => m.attemptStarted(record.task, dueToStartMs, attempt.number > 1));
      leased.push({
        $typeName: "reprise.v1.LeasedAttempt",
        executionId: record.id,
        task: record.task,
        attempt: attempt.number,
        leaseToken: encodeLeaseToken(ids[i]!, attempt.leaseSecret),
        leaseExpiresAt: msToTimestamp(attempt.leaseExpiresAt),
        arguments: toPayload(record.arguments),
        timeoutAt: attempt.timeoutAt === null ? undefined : msToTimestamp(attempt.timeoutAt),
        labels: record.labels,
      });
    }
    const earliestExpiry = Math.min(...attempts.map((attempt) => attempt.leaseExpiresAt));
    tx.afterCommit(() => {
      this.scheduler.consider(earliestExpiry);
      for (const attempt of leased) this.log.debug("attempt leased", { execution_id: attempt.executionId, task: attempt.task, attempt: attempt.attempt, worker_id: request.workerId });
    });
    return leased;
  }

  /**
   * The attempts that tokens name, or why each names none. Constant-time on
   * the secret. Tokens of one attempt share one ref, so that what an outcome
   * does to it is seen by a repeat later in the batch.
   */
  private async findAttempts(tx: Tx, tokens: readonly Uint8Array[]): Promise<(AttemptRef | string)[]> {
    const decoded = tokens.map(decodeLeaseToken);
    const ids = [...new Set(decoded.filter((d) => d !== null).map((d) => d.attemptId))];
    const attempts = ids.length === 0 ? [] : await tx.attemptGet(ids);
    const byId = new Map<number, AttemptRef>();
    for (const attempt of attempts) if (attempt) byId.set(attempt.id, attempt);
    return decoded.map((d) => {
      if (!d) return "malformed lease token";
      const attempt = byId.get(d.attemptId);
      if (!attempt || !secretsEqual(attempt.leaseSecret, d.secret)) return "unknown lease token";
      return attempt;
    });
  }

  /** Resolves once no timer tick is under way (tests on a fake clock wait for it). */
  async idle(): Promise<void> {
    while (this.ticking) await this.ticking;
  }

  /**
   * Offers work that came due at once, then runs one tick at a time: a timer
   * that fires during a tick runs another once it ends. The offer does not
   * wait for a tick under way (on PostgreSQL one takes a few round trips).
   */
  private onTimer(): void {
    this.offerWork();
    if (this.ticking) {
      this.tickAgain = true;
      return;
    }
    this.ticking = this.tick()
      .catch((error: unknown) => {
        // The store could not be read (for PostgreSQL: unreachable). Try again shortly.
        this.log.error("the timer could not read the store; it tries again in a second", { error: String(error) });
        if (!this.closed) this.scheduler.consider(this.clock.now() + 1000);
      })
      .finally(() => {
        this.ticking = null;
        if (this.tickAgain && !this.closed) {
          this.tickAgain = false;
          this.onTimer();
        }
      });
  }

  private async tick(): Promise<void> {
    const now = this.clock.now();
    // Retries that the sweep decides offer themselves when their change commits.
    const expired = await this.store.read(async (tx) => tx.attemptListExpired({ now, limit: EXPIRY_SLICE }));
    const ended = await Promise.all(expired.map((id) =>
      this.store.write(async (tx) => {
        // An attempt that another node is ending right now is left to it.
        const [attempt] = await tx.attemptGet([id], { skipLocked: true });
        return attempt !== undefined && attempt.state === A.running && (await this.outcomes.expireIfDue(tx, attempt, now)) !== null;
      }).catch((error: unknown) => {
        this.log.error("expiring an attempt failed", { attempt_id: id, error: String(error) });
        return false;
      }),
    ));
    this.polls.expire(now);
    if (this.closed) return;
    // A full slice that ended something may have more behind it: the next
    // slice runs in a tick of its own, after whatever arrived meanwhile.
    if (expired.length === EXPIRY_SLICE && ended.some(Boolean)) this.scheduler.armAt(now);
    else await this.rearm(now);
  }

  private async rearm(now: number): Promise<void> {
    const deadlines = [await this.store.read(async (tx) => tx.nextDeadline(now)), this.polls.earliestDeadline()].filter((t): t is number => t !== null);
    if (this.closed) return;
    this.scheduler.armAt(deadlines.length === 0 ? null : Math.min(...deadlines));
  }
}

/** Serializes a validated policy for storage. */
export function encodePolicy(policy: RetryPolicy | undefined): Uint8Array | null {
  return policy === undefined ? null : toBinary(RetryPolicySchema, policy);
}

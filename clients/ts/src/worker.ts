// The worker: declares its tasks, long-polls for as many attempts as it has
// free slots, runs each with its own AbortSignal, keeps their leases alive
// with batched heartbeats, and reports outcomes in micro-batches. Connection
// trouble is retried with backoff and never reaches user code.
import type { LeasedAttempt } from "@reprise/wire";
import { WorkerService } from "@reprise/wire";
import { createServiceClient } from "@reprise/wire";
import type { ServiceClient } from "@reprise/wire";
import { Backoff } from "./backoff.js";
import { channelOptions, describeError, isQuotaFull, isTransient } from "./connection.js";
import { abortAttempt, runAttempt } from "./attempt.js";
import type { LiveAttempt, RegisteredTask } from "./attempt.js";
import type { AbortCause } from "./errors.js";
import { Heartbeater } from "./heartbeater.js";
import { resolveWorkerOptions } from "./options.js";
import type { ResolvedWorkerOptions, WorkerOptions } from "./options.js";
import { OutcomeReporter } from "./reporter.js";
import { retryPolicy, wireBudget } from "./retries.js";
import type { TaskHandler, TaskOptions } from "./task.js";
import { MAX_DURATION_SECONDS, durationFromSeconds, sleep } from "./time.js";

type WorkerState = "new" | "starting" | "running" | "stopping" | "stopped";

const tokenKey = (token: Uint8Array) => Buffer.from(token).toString("base64");

export class Worker {
  private readonly options: ResolvedWorkerOptions;
  private readonly tasks = new Map<string, RegisteredTask>();
  private readonly workers: ServiceClient<typeof WorkerService>;
  private readonly reporter: OutcomeReporter;
  private readonly heartbeater: Heartbeater;
  /** Every lease held: running handlers and finished ones whose report is not yet taken. */
  private readonly live = new Map<string, LiveAttempt>();
  private readonly handlers = new Set<Promise<void>>();
  /** Aborts the long-poll and the reconnect waits when stop() begins. */
  private readonly stopping = new AbortController();
  private state: WorkerState = "new";
  private leaseLoop: Promise<void> | null = null;
  private stopped: Promise<void> | null = null;
  private wakeLeaseLoop: (() => void) | null = null;

  constructor(options: WorkerOptions = {}) {
    this.options = resolveWorkerOptions(options);
    const { address, credentials, reconnect, grpcOptions, token, logger, workerId, heartbeatInterval } = this.options;
    this.workers = createServiceClient(WorkerService, address, credentials, channelOptions(reconnect, grpcOptions, token));
    this.reporter = new OutcomeReporter(this.workers, logger, reconnect);
    this.heartbeater = new Heartbeater(
      this.workers,
      { workerId, intervalMs: heartbeatInterval * 1000, logger },
      () => [...this.live.values()].map((a) => a.leased.leaseToken),
      ({ cancelRequested, lost }) => {
        for (const token of cancelRequested) this.abort(token, "cancelled", "the execution was cancelled");
        for (const token of lost) this.abort(token, "lost", "the lease was lost: it expired, timed out or already has an outcome");
      },
    );
  }

  get workerId(): string {
    return this.options.workerId;
  }

  /** How many attempts are running now. */
  get running(): number {
    return this.handlers.size;
  }

  /**
   * Registers a task. `options.retries` takes Coflux's forms (see Retries);
   * `options.timeout` is in seconds. Call before start().
   */
  task<Args = unknown, Result = unknown>(name: string, handler: TaskHandler<Args, Result>): this;
  task<Args = unknown, Result = unknown>(name: string, options: TaskOptions, handler: TaskHandler<Args, Result>): this;
  task<Args, Result>(name: string, optionsOrHandler: TaskOptions | TaskHandler<Args, Result>, maybeHandler?: TaskHandler<Args, Result>): this {
    const [options, handler] = typeof optionsOrHandler === "function" ? [{}, optionsOrHandler] : [optionsOrHandler, maybeHandler];
    if (typeof handler !== "function") throw new TypeError(`task ${JSON.stringify(name)}: the handler must be a function`);
    if (this.state !== "new") throw new Error(`task ${JSON.stringify(name)}: register tasks before start()`);
    if (this.tasks.has(name)) throw new Error(`task ${JSON.stringify(name)} is already registered`);
    // Validate now, where the stack points at the user's line.
    retryPolicy(options.retries, `task ${JSON.stringify(name)}: retries`);
    if (options.timeout !== undefined) durationFromSeconds(options.timeout, `task ${JSON.stringify(name)}: timeout`, MAX_DURATION_SECONDS);
    const retryBudget = options.retryBudget === undefined ? undefined : wireBudget(options.retryBudget, `task ${JSON.stringify(name)}: retryBudget`);
    const when = typeof options.retries === "object" ? options.retries.when : undefined;
    this.tasks.set(name, { name, retries: options.retries, when, timeout: options.timeout, retryBudget, handler: handler as TaskHandler<never, unknown> });
    return this;
  }

  /** Declares the tasks (retrying until the coordinator answers), then leases and runs attempts in the background. */
  async start(): Promise<void> {
    if (this.state !== "new") throw new Error("Worker.start: already started");
    if (this.tasks.size === 0) throw new Error("Worker.start: register at least one task first");
    this.state = "starting";
    await this.declare();
    if (this.state !== "starting") return;
    this.state = "running";
    this.heartbeater.start();
    this.leaseLoop = this.leaseForever();
  }

  /** Declares the tasks, retrying transient errors until the coordinator answers. */
  private async declare(): Promise<void> {
    const backoff = new Backoff(this.options.reconnect);
    for (let failures = 0; ; failures++) {
      try {
        await this.declareTasks();
        return;
      } catch (error) {
        if (this.stopping.signal.aborted) return;
        if (!isTransient(error)) throw error;
        const log = failures === 0 ? this.options.logger.warn : this.options.logger.debug;
        log.call(this.options.logger, "cannot declare tasks yet; retrying", { error: describeError(error) });
        await sleep(backoff.next(), this.stopping.signal);
      }
    }
  }

  /** One DeclareTasks call with every task's policy and timeout. */
  private async declareTasks(): Promise<void> {
    const tasks = [...this.tasks.values()].map((task) => ({
      name: task.name,
      retryPolicy: retryPolicy(task.retries),
      timeout: task.timeout === undefined ? undefined : durationFromSeconds(task.timeout, "timeout"),
      retryBudget: task.retryBudget,
    }));
    await this.workers.declareTasks({ workerId: this.options.workerId, tasks }, { signal: this.stopping.signal });
  }

  private async leaseForever(): Promise<void> {
    const { workerId, concurrency, pollWait, leaseDuration, logger } = this.options;
    const backoff = new Backoff(this.options.reconnect);
    const tasks = [...this.tasks.keys()];
    let unreachable = false;
    // start() declared them. After a failed call the coordinator may have been
    // replaced, by one whose database has no policy for them, so they are
    // declared again before the next lease (docs/clients.md, "Declare the tasks").
    let declared = true;
    while (this.state === "running") {
      const free = concurrency - this.handlers.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.wakeLeaseLoop = resolve));
        continue;
      }
      try {
        if (!declared) await this.declareTasks();
        declared = true;
        const { attempts } = await this.workers.leaseAttempts(
          { workerId, tasks, maxAttempts: free, wait: durationFromSeconds(pollWait, "pollWait"), leaseDuration: durationFromSeconds(leaseDuration, "leaseDuration") },
          // The deadline only guards against a connection that died silently.
          { signal: this.stopping.signal, deadline: new Date(Date.now() + (pollWait + 30) * 1000) },
        );
        if (unreachable) logger.info("coordinator reachable again; leasing", { worker_id: workerId });
        unreachable = false;
        backoff.reset();
        // Even when stop() began meanwhile: these leases are committed, and
        // dropping them would abandon at-most-once executions that never ran.
        for (const leased of attempts) this.run(leased);
        // Report before asking for more: handlers that settled at once have
        // their outcomes sent in this turn (the reporter flushes on nextTick),
        // and the next lease goes out in the next. The coordinator then records
        // a failure, and times its retry, before it serves the long-poll.
        if (attempts.length > 0) await new Promise((resolve) => setImmediate(resolve));
      } catch (error) {
        if (this.state !== "running") break;
        // A transient error is logged once per outage; anything else (a bad
        // request) every time, since it will not pass by itself.
        if (!isTransient(error) && !isQuotaFull(error)) logger.error(`${declared ? "LeaseAttempts" : "DeclareTasks"} failed; retrying`, { error: describeError(error) });
        else if (!unreachable) logger.warn("cannot lease attempts; retrying", { error: describeError(error) });
        unreachable = true;
        declared = false;
        await sleep(backoff.next(), this.stopping.signal);
      }
    }
  }

  private run(leased: LeasedAttempt): void {
    const key = tokenKey(leased.leaseToken);
    const live: LiveAttempt = { leased, controller: undefined, abortedBy: undefined, abortReason: undefined };
    this.live.set(key, live);
    const handling = runAttempt(live, this.tasks.get(leased.task), this.options);
    const slot: Promise<void> = handling.then(() => {
      this.handlers.delete(slot);
      this.wakeLeaseLoop?.();
      this.wakeLeaseLoop = null;
    });
    this.handlers.add(slot);
    // The slot frees when the handler settles, but the lease stays live (and
    // heartbeated) until the coordinator has taken the outcome.
    void handling.then(async (report) => {
      if (report !== null) await this.reporter.report(report);
      this.live.delete(key);
    });
  }

  private abort(token: Uint8Array, cause: AbortCause, message: string): void {
    const live = this.live.get(tokenKey(token));
    if (live) abortAttempt(live, cause, message);
  }


  /**
   * Stops leasing, lets in-flight attempts finish for up to `grace` seconds
   * (default `stopGrace`), then aborts the signals of those still running and
   * waits `abortGrace` more. Outcomes are reported before it resolves, unless
   * the coordinator stays unreachable past `abortGrace`. Safe to call twice.
   */
  stop(options: { grace?: number } = {}): Promise<void> {
    this.stopped ??= this.shutdown(options.grace ?? this.options.stopGrace);
    return this.stopped;
  }

  private async shutdown(graceSeconds: number): Promise<void> {
    const { abortGrace, logger } = this.options;
    this.state = "stopping";
    this.stopping.abort();
    this.wakeLeaseLoop?.();
    await this.leaseLoop;
    if (!(await settledWithin([...this.handlers], graceSeconds * 1000))) {
      logger.warn("stop grace ran out; aborting running attempts", { running: this.handlers.size });
      for (const live of this.live.values()) abortAttempt(live, "stopping", "the worker is stopping and its grace period ran out");
      await settledWithin([...this.handlers], abortGrace * 1000);
    }
    await settledWithin([this.reporter.drained()], abortGrace * 1000);
    this.reporter.close();
    await this.heartbeater.stop();
    this.workers.raw.close();
    this.state = "stopped";
  }
}

/** True when every promise settled within `ms`; the timer never outlives the wait. */
async function settledWithin(promises: Promise<unknown>[], ms: number): Promise<boolean> {
  if (promises.length === 0) return true;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([Promise.allSettled(promises).then(() => true as const), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

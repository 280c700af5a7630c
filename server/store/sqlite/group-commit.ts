// Group commit for the SQLite store: every change of one event-loop turn
// shares one transaction, committed on the next turn. Changes and reads run
// one at a time, in the order they came; each change runs in a savepoint of
// its own, so that one that fails rolls back alone, and settles once its
// batch has committed.
import type Database from "better-sqlite3";
import type { TimedStatement } from "./statements.js";

export type TransactionControl = Record<"begin" | "commit" | "rollback" | "savepoint" | "release" | "rollbackToSavepoint", TimedStatement>;

/** What the store keeps beside the batch, told of each step. */
export interface BatchHooks {
  /** A change starts: returns how to forget what the store notes for it, should it roll back alone. */
  changeStarted(): () => void;
  /** Inside the batch, just before its COMMIT. */
  beforeCommit(): void;
  /** After a COMMIT, with how many changes it carried and how long it took. */
  committed(changes: number, ms: number): void;
  /** The whole batch rolled back (an I/O error, a full disk): forget everything noted for it. */
  rolledBack(): void;
}

/** The promise `body` returns, or a rejected one if it throws before returning one. */
function settled<T>(body: () => Promise<T>): Promise<T> {
  try {
    return body();
  } catch (error) {
    return Promise.reject(error);
  }
}

export class GroupCommit<Tx> {
  private flushScheduled = false;
  private waiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  private effects: (() => void)[] = [];
  /** Changes and reads waiting for the one under way to settle, in order. */
  private readonly queue: (() => void)[] = [];
  private busy = false;
  private commitCount = 0;
  private changesInBatch = 0;

  constructor(
    private readonly db: Database.Database,
    private readonly control: TransactionControl,
    private readonly tx: Tx,
    private readonly hooks: BatchHooks,
  ) {}

  /** Transactions committed so far. */
  get commits(): number {
    return this.commitCount;
  }

  write<T>(change: (tx: Tx) => Promise<T>): Promise<T> {
    return new Promise((resolve, reject) => this.enqueue(() => this.runChange(change, resolve, reject)));
  }

  read<T>(query: (tx: Tx) => Promise<T>): Promise<T> {
    return new Promise((resolve, reject) =>
      this.enqueue(() => {
        settled(() => query(this.tx)).then(
          (value) => {
            this.next();
            // What the open batch holds is not committed yet: answer once it is.
            if (this.db.inTransaction) this.waiters.push({ resolve: () => resolve(value), reject });
            else resolve(value);
          },
          (error: unknown) => {
            this.next();
            reject(error);
          },
        );
      }),
    );
  }

  afterCommit(effect: () => void): void {
    this.effects.push(effect);
  }

  /** Resolves once everything queued so far has run. */
  drain(): Promise<void> {
    return new Promise<void>((resolve) => this.enqueue(() => (this.next(), resolve())));
  }

  /** Runs `job` now if nothing else runs, else after what is queued before it. */
  private enqueue(job: () => void): void {
    if (this.busy) this.queue.push(job);
    else {
      this.busy = true;
      job();
    }
  }

  private next(): void {
    const job = this.queue.shift();
    if (job) job();
    else this.busy = false;
  }

  private runChange<T>(change: (tx: Tx) => Promise<T>, resolve: (value: T) => void, reject: (error: unknown) => void): void {
    const control = this.control;
    let effects: number;
    let forget: () => void;
    try {
      if (!this.db.inTransaction) {
        control.begin.run();
        this.scheduleFlush();
      }
      this.changesInBatch++;
      control.savepoint.run();
      effects = this.effects.length;
      forget = this.hooks.changeStarted();
    } catch (error) {
      this.next();
      reject(error);
      return;
    }
    settled(() => change(this.tx)).then(
      (value) => {
        try {
          control.release.run();
          this.waiters.push({ resolve: () => resolve(value), reject });
        } catch (error) {
          reject(error);
        }
        this.next();
      },
      (error: unknown) => {
        try {
          if (this.db.inTransaction) {
            control.rollbackToSavepoint.run();
            control.release.run();
            // What the change queued for after the commit did not happen.
            this.effects.length = effects;
            forget();
          } else {
            // SQLite rolled back the whole batch: nothing in it will commit,
            // so nobody waiting on it may hear otherwise.
            this.abandonBatch(error);
          }
        } catch (rollbackError) {
          this.abandonBatch(rollbackError);
          if (this.db.inTransaction) this.control.rollback.run();
        } finally {
          reject(error);
          this.next();
        }
      },
    );
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      // A change still under way (it awaits something beyond this store) keeps the batch open.
      if (this.busy) this.scheduleFlush();
      else this.flush();
    });
  }

  private abandonBatch(error: unknown): void {
    const waiters = this.waiters;
    this.waiters = [];
    this.effects = [];
    this.changesInBatch = 0;
    this.hooks.rolledBack();
    for (const waiter of waiters) waiter.reject(error);
  }

  /** Commits the open batch, then runs its effects and settles its waiters. */
  flush(): void {
    if (!this.db.inTransaction) return;
    const waiters = this.waiters;
    const effects = this.effects;
    const changes = this.changesInBatch;
    this.waiters = [];
    this.effects = [];
    this.changesInBatch = 0;
    const started = performance.now();
    try {
      this.hooks.beforeCommit();
      this.control.commit.run();
    } catch (error) {
      if (this.db.inTransaction) this.control.rollback.run();
      this.hooks.rolledBack();
      for (const waiter of waiters) waiter.reject(error);
      return;
    }
    this.commitCount++;
    this.hooks.committed(changes, performance.now() - started);
    for (const effect of effects) effect();
    for (const waiter of waiters) waiter.resolve();
  }
}

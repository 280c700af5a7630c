// WAL checkpoints on a thread of their own. SQLite's automatic checkpoint runs
// inside the COMMIT that crosses its threshold, on the event loop: every few
// hundred commits one of them also copies the WAL into the database file and
// syncs it, and every reply waiting on that commit (or queued behind it) is
// late by milliseconds. Here a second connection, on a worker thread, runs
// PASSIVE checkpoints, which never block the writer; the writer's own
// automatic checkpoint stays as a backstop with a high threshold, for when
// this thread falls behind or is gone.
import { Worker } from "node:worker_threads";
import { sqliteForThreads } from "../../runtime/runtime.js";

/** The thread's code, CommonJS, evaluated as is: it opens the database and checkpoints on request. */
const THREAD = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true, nativeBinding: workerData.nativeBinding });
db.pragma("synchronous = " + workerData.synchronous);
db.pragma("cache_size = -1024");
parentPort.on("message", (message) => {
  if (message === "close") {
    db.close();
    parentPort.close();
    return;
  }
  try {
    db.pragma("wal_checkpoint(PASSIVE)");
    parentPort.postMessage({});
  } catch (error) {
    parentPort.postMessage({ error: String(error) });
  }
});
`;

/** At most one checkpoint starts per this many milliseconds of commits. */
const INTERVAL_MS = 50;

export interface CheckpointerOptions {
  path: string;
  synchronous: "NORMAL" | "FULL";
  onError?: (message: string) => void;
}

export class Checkpointer {
  private readonly thread: Worker;
  private inFlight = false;
  private lastStartedAt = -Infinity;
  private failed = false;
  private checkpointCount = 0;
  private readonly exited: Promise<void>;

  constructor(private readonly options: CheckpointerOptions) {
    this.thread = new Worker(THREAD, {
      eval: true,
      workerData: { ...sqliteForThreads(), path: options.path, synchronous: options.synchronous },
      // It holds one small page cache and a few numbers.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 4 },
    });
    this.thread.on("message", (message: { error?: string }) => {
      this.inFlight = false;
      if (message.error !== undefined) this.options.onError?.(`WAL checkpoint failed: ${message.error}`);
      else this.checkpointCount++;
    });
    this.thread.on("error", (error) => this.fail(`the checkpoint thread failed: ${error.message}`));
    this.exited = new Promise((resolve) =>
      this.thread.once("exit", (code) => {
        this.fail(`the checkpoint thread exited with code ${code}`);
        resolve();
      }),
    );
    // It never keeps the process alive: a coordinator that is done exits.
    // (After the listeners: adding a message listener refs the port again.)
    this.thread.unref();
  }

  /** Checkpoints that completed since the thread started. */
  get checkpoints(): number {
    return this.checkpointCount;
  }

  /** Called after every commit: starts a checkpoint unless one is running or one started less than INTERVAL_MS ago. */
  committed(now = performance.now()): void {
    if (this.inFlight || this.failed || now - this.lastStartedAt < INTERVAL_MS) return;
    this.inFlight = true;
    this.lastStartedAt = now;
    this.thread.postMessage("checkpoint");
  }

  /**
   * Asks the thread to close its connection and end, after any checkpoint in
   * progress; resolves once it has. A thread that has not ended after
   * `graceMs` is terminated.
   */
  async close(graceMs = 5000): Promise<void> {
    if (!this.failed) {
      this.failed = true;
      this.thread.postMessage("close");
    }
    // Whoever awaits the close keeps the process alive until it is done.
    this.thread.ref();
    const timer = setTimeout(() => void this.thread.terminate(), graceMs);
    timer.unref();
    await this.exited;
    clearTimeout(timer);
  }

  private fail(message: string): void {
    if (this.failed) return;
    this.failed = true;
    this.options.onError?.(`${message}; the writer's own automatic checkpoints take over`);
  }
}

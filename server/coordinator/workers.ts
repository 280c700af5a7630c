// The workers the coordinator has heard from (ListWorkers, `reprise workers`):
// each DeclareTasks or LeaseAttempts call says that a worker is there for its
// tasks. A long-polling worker calls many times a second, so each worker and
// task is written down at most every few seconds, and forgotten a week after
// it was last seen.
import type { Tx, WorkerRecord } from "../store/store.js";

/** A worker is written down at most this often per task. */
const SEEN_EVERY_MS = 5000;
/** Workers not seen for this long are forgotten. */
const WORKER_MEMORY_MS = 7 * 86_400_000;
const FORGET_EVERY_MS = 3_600_000;
const MAX_LISTED = 1000;
const FAILURE_MEMORY_MS = 86_400_000;

export class WorkerRegistry {
  /** When each worker and task was last written down, by `${workerId} ${task}`. */
  private readonly writtenAt = new Map<string, number>();
  private forgottenAt = 0;

  /** The tasks of `workerId` whose last-seen time is due to be written at `now`; none for most calls. */
  due(workerId: string, tasks: readonly string[], now: number): readonly string[] {
    return tasks.filter((task) => now - (this.writtenAt.get(`${workerId} ${task}`) ?? -Infinity) >= SEEN_EVERY_MS);
  }

  /**
   * Writes down that a worker was seen, for the tasks that are due unless
   * `always`, and forgets, at most hourly, those gone a week. Runs inside the
   * caller's change.
   */
  async seen(tx: Tx, workerId: string, tasks: readonly string[], now: number, always = false): Promise<void> {
    const due = always ? tasks : this.due(workerId, tasks, now);
    if (due.length === 0) return;
    await tx.workerSeen({ workerId, tasks: due, at: now });
    for (const task of due) this.writtenAt.set(`${workerId} ${task}`, now);
    if (now - this.forgottenAt >= FORGET_EVERY_MS) {
      this.forgottenAt = now;
      await tx.workerForget(now - WORKER_MEMORY_MS);
      // The hourly tidy-up of what the tasks page shows: a day of failure counts is kept.
      await tx.failureStatsForget(now - FAILURE_MEMORY_MS);
      for (const [key, at] of this.writtenAt) if (at < now - SEEN_EVERY_MS) this.writtenAt.delete(key);
    }
  }

  /** The workers seen in the last WORKER_MEMORY_MS, most recent first; with `task`, those of that task. */
  async list(tx: Tx, task: string | undefined, now: number): Promise<WorkerRecord[]> {
    return tx.workerList({ task, seenSince: now - WORKER_MEMORY_MS, limit: MAX_LISTED });
  }
}

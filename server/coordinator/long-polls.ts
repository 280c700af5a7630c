// The LeaseAttempts calls that are waiting for work, oldest first. The
// coordinator offers them work whenever some becomes due, and the scheduler's
// one timer ends those whose `wait` has run out.
import type { LeasedAttempt } from "@reprise/wire";

export interface LeaseRequest {
  workerId: string;
  tasks: readonly string[];
  maxAttempts: number;
  leaseMs: number;
}

export interface Poller extends LeaseRequest {
  deadline: number;
  /** An offer of work to this poller is under way. */
  offering?: boolean;
  /** Work came due during that offer: look again once it ends. */
  offerAgain?: boolean;
  resolve(attempts: LeasedAttempt[]): void;
  reject(error: unknown): void;
}

export class LongPolls {
  private readonly waiting = new Set<Poller>();

  get size(): number {
    return this.waiting.size;
  }

  /** Waiting pollers, oldest first (a Set iterates in insertion order). */
  list(): Poller[] {
    return [...this.waiting];
  }

  add(poller: Poller): void {
    this.waiting.add(poller);
  }

  has(poller: Poller): boolean {
    return this.waiting.has(poller);
  }

  /** Removes a poller; false if it was already answered. */
  remove(poller: Poller): boolean {
    return this.waiting.delete(poller);
  }

  earliestDeadline(): number | null {
    let earliest: number | null = null;
    for (const poller of this.waiting) if (earliest === null || poller.deadline < earliest) earliest = poller.deadline;
    return earliest;
  }

  /** Answers every poller whose wait has run out with no attempts. */
  expire(now: number): void {
    for (const poller of this.waiting) {
      if (poller.deadline <= now) {
        this.waiting.delete(poller);
        poller.resolve([]);
      }
    }
  }

  /** Answers every poller with no attempts (shutdown). */
  releaseAll(): void {
    for (const poller of this.waiting) poller.resolve([]);
    this.waiting.clear();
  }
}

// The coordinator's one timer. It is armed for the earliest moment anything is
// due (a start or retry, a lease expiry, an attempt timeout, a long-poll
// deadline) and never polls: an idle coordinator does not wake up.
import type { Clock, TimerHandle } from "./clock.js";

// setTimeout takes at most 2^31 - 1 ms (about 24.8 days); longer waits re-arm.
const MAX_TIMER_MS = 2 ** 31 - 1;

export class Scheduler {
  private handle: TimerHandle | null = null;
  private armedAt: number | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly onDue: () => void,
  ) {}

  /** The moment the timer is armed for, or null when idle. */
  get nextWakeAt(): number | null {
    return this.armedAt;
  }

  /** Arms the timer for `at`, or disarms it when `at` is null. */
  armAt(at: number | null): void {
    if (this.handle) this.clock.clearTimeout(this.handle);
    this.handle = null;
    this.armedAt = at;
    if (at === null) return;
    const delay = Math.min(Math.max(0, at - this.clock.now()), MAX_TIMER_MS);
    this.handle = this.clock.setTimeout(() => {
      this.handle = null;
      if (this.clock.now() < at) return this.armAt(at);
      this.armedAt = null;
      this.onDue();
    }, delay);
  }

  /** Arms the timer for `at` if that is earlier than the moment it is armed for. */
  consider(at: number): void {
    if (this.armedAt === null || at < this.armedAt) this.armAt(at);
  }

  stop(): void {
    this.armAt(null);
  }
}

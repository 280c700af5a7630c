// One clock for every node of a cluster: the database's. Each node measures
// how far its own clock is from PostgreSQL's (clock_timestamp(), corrected by
// half the round trip) at start and every 30 s, and reads its own clock plus
// that offset. Leases, timeouts and due times are then set and compared on the
// same clock whichever node decides, within a millisecond or so on a LAN.
import type { Clock } from "../../coordinator/clock.js";
import { systemClock } from "../../coordinator/clock.js";

const RESYNC_MS = 30_000;

export class DatabaseClock implements Clock {
  private offsetMs = 0;
  private timer: NodeJS.Timeout | null = null;

  /** `query` returns the database's clock_timestamp() in ms since the epoch. */
  constructor(private readonly query: () => Promise<number>) {}

  /** Measures the offset once (the best of three round trips), then every 30 s in the background. */
  async start(onWarning: (message: string) => void): Promise<void> {
    await this.measure();
    this.timer = setInterval(() => {
      this.measure().catch((error: unknown) => onWarning(`measuring the database clock failed; keeping the last offset: ${String(error)}`));
    }, RESYNC_MS);
    this.timer.unref();
  }

  /** The database's clock minus this machine's, in ms. */
  get offset(): number {
    return this.offsetMs;
  }

  private async measure(): Promise<void> {
    let best: { rtt: number; offset: number } | null = null;
    for (let i = 0; i < 3; i++) {
      const sent = performance.now();
      const sentAt = Date.now();
      const databaseNow = await this.query();
      const rtt = performance.now() - sent;
      const offset = databaseNow - (sentAt + rtt / 2);
      if (best === null || rtt < best.rtt) best = { rtt, offset };
    }
    this.offsetMs = Math.round(best!.offset);
  }

  now(): number {
    return Date.now() + this.offsetMs;
  }

  setTimeout = systemClock.setTimeout;
  clearTimeout = systemClock.clearTimeout;

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

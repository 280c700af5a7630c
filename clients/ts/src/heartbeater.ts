// One Heartbeat RPC for every lease the worker holds, on one timer, well
// inside the lease. The coordinator's answer says which attempts must stop.
import type { ServiceClient } from "@reprise/wire";
import type { WorkerService } from "@reprise/wire";
import type { Logger } from "./log.js";
import { MAX_BATCH, describeError } from "./connection.js";

export interface HeartbeatVerdicts {
  cancelRequested: Uint8Array[];
  lost: Uint8Array[];
}

export class Heartbeater {
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly workers: ServiceClient<typeof WorkerService>,
    private readonly options: { workerId: string; intervalMs: number; logger: Logger },
    private readonly leases: () => Uint8Array[],
    private readonly onVerdicts: (verdicts: HeartbeatVerdicts) => void,
  ) {}

  start(): void {
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.inFlight = this.beat().finally(() => {
        this.inFlight = null;
        this.schedule();
      });
    }, this.options.intervalMs);
  }

  private async beat(): Promise<void> {
    const tokens = this.leases();
    // More tokens than the coordinator takes in one call would fail the whole
    // call, and every lease in it would run out.
    for (let i = 0; i < tokens.length; i += MAX_BATCH) {
      const leaseTokens = tokens.slice(i, i + MAX_BATCH);
      try {
        // A heartbeat slower than its interval is no use: the next one is due.
        const deadline = new Date(Date.now() + this.options.intervalMs);
        const verdicts = await this.workers.heartbeat({ leaseTokens, workerId: this.options.workerId }, { deadline });
        this.onVerdicts(verdicts);
      } catch (error) {
        // The lease lives on until its expiry; the next beat may get through.
        this.options.logger.debug("heartbeat failed", { error: describeError(error), leases: leaseTokens.length });
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight;
  }
}

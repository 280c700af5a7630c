// Reconnect backoff: exponential with full jitter, so that many workers and
// waiters that lost the same coordinator do not come back in lockstep.

export interface ReconnectOptions {
  /** The first wait after a failed call, in seconds. Default 0.1. */
  minDelay?: number;
  /** The longest wait between tries, in seconds. Default 5. */
  maxDelay?: number;
}

export const RECONNECT_DEFAULTS: Required<ReconnectOptions> = { minDelay: 0.1, maxDelay: 5 };

export class Backoff {
  private failures = 0;
  private readonly minMs: number;
  private readonly maxMs: number;

  constructor(options: Required<ReconnectOptions>, private readonly random: () => number = Math.random) {
    this.minMs = options.minDelay * 1000;
    this.maxMs = Math.max(options.maxDelay * 1000, this.minMs);
  }

  /** The wait before the next try, in ms; each call counts one more failure. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.minMs * 2 ** this.failures);
    this.failures = Math.min(this.failures + 1, 30);
    return this.minMs + this.random() * (ceiling - this.minMs);
  }

  reset(): void {
    this.failures = 0;
  }
}

// The chaos run's tasks: their retry options (declared by the workers) and the
// limits the checks hold them to.
import { Retries } from "@reprise/client";
import type { TaskOptions } from "@reprise/client";

export interface Behaviour {
  sleepMs: number;
  failRate: number;
  nonRetryableRate: number;
}

export interface ChaosTask {
  options: TaskOptions;
  /** Most attempts allowed: limit + 1, or Infinity when unlimited. */
  maxAttempts: number;
  behaviour: () => Behaviour;
}

export const CHAOS_TASKS: Record<string, ChaosTask> = {
  // At most once: never run twice, whatever happens.
  at_most_once: {
    options: {},
    maxAttempts: 1,
    behaviour: () => ({ sleepMs: Math.random() * 80, failRate: 0.2, nonRetryableRate: 0 }),
  },
  // Limited retries with a linear backoff; some failures are permanent.
  limited: {
    options: { retries: new Retries({ limit: 3, backoff: [0.05, 0.2] }) },
    maxAttempts: 4,
    behaviour: () => ({ sleepMs: Math.random() * 80, failRate: 0.4, nonRetryableRate: 0.1 }),
  },
  // Unlimited retries with a random delay.
  unlimited: {
    options: { retries: new Retries({ limit: null, backoff: [0.05, 0.1] }) },
    maxAttempts: Number.POSITIVE_INFINITY,
    behaviour: () => ({ sleepMs: Math.random() * 50, failRate: 0.5, nonRetryableRate: 0 }),
  },
  // Slow attempts with 1 s leases kept alive by heartbeats, and a timeout.
  slow: {
    options: { retries: new Retries({ limit: 2, backoff: [0.1, 0.1] }), timeout: 2.5 },
    maxAttempts: 3,
    behaviour: () => ({ sleepMs: 300 + Math.random() * 2700, failRate: 0.1, nonRetryableRate: 0 }),
  },
};

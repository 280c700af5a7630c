// Time is injected so that schedules can be tested on a fake clock in
// milliseconds of test time. Production uses the system clock.

export type TimerHandle = { readonly id: unknown };

export interface Clock {
  /** Unix time in milliseconds. */
  now(): number;
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, delayMs) => ({ id: setTimeout(callback, delayMs) }),
  clearTimeout: (handle) => clearTimeout(handle.id as NodeJS.Timeout),
};

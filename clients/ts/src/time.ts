// Seconds (the unit users write, as in Coflux) to and from the wire's
// google.protobuf Duration and Timestamp.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { DurationSchema, Timestamp } from "@bufbuild/protobuf/wkt";

const DAY_SECONDS = 86_400;

/** The coordinator's longest backoff, timeout or delay (docs/limits.md). */
export const MAX_DURATION_SECONDS = 365 * DAY_SECONDS;
/** The coordinator's longest `RetryPolicy.max_elapsed`. */
export const MAX_ELAPSED_SECONDS = 3650 * DAY_SECONDS;

/**
 * The wire carries whole milliseconds, so round here rather than let the
 * coordinator round a value the user never wrote. Past `maxSeconds`, the
 * coordinator's limit for the field, it throws here, where `name` can say
 * which task and option, rather than at the call, naming only a wire field.
 */
export function durationFromSeconds(seconds: number, name: string, maxSeconds = Infinity): MessageInitShape<typeof DurationSchema> {
  if (!Number.isFinite(seconds) || seconds < 0) throw new RangeError(`${name}: must be a non-negative number of seconds; got ${seconds}`);
  const ms = Math.round(seconds * 1000);
  if (ms > maxSeconds * 1000) throw new RangeError(`${name}: must be at most ${maxSeconds / DAY_SECONDS} days; got ${seconds} seconds`);
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

export function timestampToMs(timestamp: Timestamp | undefined): number | undefined {
  return timestamp === undefined ? undefined : Number(timestamp.seconds) * 1000 + Math.round(timestamp.nanos / 1_000_000);
}

/** Resolves after `ms`, or at once (without rejecting) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

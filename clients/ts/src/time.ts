// Seconds (the unit users write, as in Coflux) to and from the wire's
// google.protobuf Duration and Timestamp.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { DurationSchema, Timestamp } from "@bufbuild/protobuf/wkt";

/**
 * The wire carries whole milliseconds, so round here rather than let the
 * coordinator round a value the user never wrote.
 */
export function durationFromSeconds(seconds: number, name: string): MessageInitShape<typeof DurationSchema> {
  if (!Number.isFinite(seconds) || seconds < 0) throw new RangeError(`${name}: must be a non-negative number of seconds; got ${seconds}`);
  const ms = Math.round(seconds * 1000);
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

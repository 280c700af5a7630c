// Conversions between protobuf time types and the whole milliseconds used
// everywhere inside the coordinator.
import { create } from "@bufbuild/protobuf";
import { DurationSchema, TimestampSchema } from "@bufbuild/protobuf/wkt";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";

/** Whole milliseconds, rounded. Negative durations come back negative. */
export function durationToMs(duration: Duration): number {
  return Math.round(Number(duration.seconds) * 1000 + duration.nanos / 1e6);
}

export function msToDuration(ms: number): Duration {
  const seconds = Math.trunc(ms / 1000);
  return create(DurationSchema, { seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1e6 });
}

export function msToTimestamp(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return create(TimestampSchema, { seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1e6 });
}

export function timestampToMs(timestamp: Timestamp): number {
  return Number(timestamp.seconds) * 1000 + Math.round(timestamp.nanos / 1e6);
}

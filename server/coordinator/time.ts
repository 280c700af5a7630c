// Conversions between protobuf time types and the whole milliseconds used
// everywhere inside the coordinator.
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";

/** Whole milliseconds, rounded. Negative durations come back negative. */
export function durationToMs(duration: Duration): number {
  return Math.round(Number(duration.seconds) * 1000 + duration.nanos / 1e6);
}

// Messages on hot paths are object literals rather than create() calls, which
// first fill every field with its default: the types still demand every field.
export function msToDuration(ms: number): Duration {
  const seconds = Math.trunc(ms / 1000);
  return { $typeName: "google.protobuf.Duration", seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1e6 };
}

export function msToTimestamp(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { $typeName: "google.protobuf.Timestamp", seconds: BigInt(seconds), nanos: (ms - seconds * 1000) * 1e6 };
}

export function timestampToMs(timestamp: Timestamp): number {
  return Number(timestamp.seconds) * 1000 + Math.round(timestamp.nanos / 1e6);
}

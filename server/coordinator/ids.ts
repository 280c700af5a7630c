// Execution ids: UUID version 7 (RFC 9562), a millisecond timestamp followed by
// random bits. They stay opaque to clients; being time-ordered, new ids land at
// the end of the id index instead of at random places in it, which keeps
// inserts cheap when the table holds millions of rows.
import { randomPoolBytes } from "./random-pool.js";

export function newExecutionId(now: number): string {
  const bytes = randomPoolBytes(16);
  bytes.writeUIntBE(now, 0, 6);
  bytes[6] = (bytes[6]! & 0x0f) | 0x70;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

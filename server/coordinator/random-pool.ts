// Random bytes cut from a pool refilled 64 KiB at a time: one randomBytes call
// per execution id and per lease secret was a visible share of a busy
// coordinator's CPU.
import { randomBytes } from "node:crypto";

const POOL_BYTES = 64 * 1024;
let pool = randomBytes(POOL_BYTES);
let used = 0;

/** `length` (at most 64 KiB) fresh random bytes, in a buffer of their own. */
export function randomPoolBytes(length: number): Buffer {
  if (used + length > POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    used = 0;
  }
  // A copy, so that the result does not keep the whole pool alive.
  const bytes = Buffer.from(pool.subarray(used, used + length));
  used += length;
  return bytes;
}

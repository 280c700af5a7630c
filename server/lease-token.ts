// Lease tokens are opaque to workers. Inside they are the attempt's id (8 bytes,
// big-endian) followed by a random 16-byte secret that the store checks, so a
// forged or stale token can never move an attempt.
import { randomBytes, timingSafeEqual } from "node:crypto";

const ID_BYTES = 8;
const SECRET_BYTES = 16;

// Secrets are cut from a pool of random bytes refilled 64 KiB at a time:
// one randomBytes call per lease was a visible share of a busy coordinator's CPU.
const POOL_BYTES = 64 * 1024;
let pool = randomBytes(POOL_BYTES);
let used = 0;

export function newLeaseSecret(): Buffer {
  if (used + SECRET_BYTES > POOL_BYTES) {
    pool = randomBytes(POOL_BYTES);
    used = 0;
  }
  // A copy, so that the secret does not keep the whole pool alive.
  const secret = Buffer.from(pool.subarray(used, used + SECRET_BYTES));
  used += SECRET_BYTES;
  return secret;
}

export function encodeLeaseToken(attemptId: number, secret: Uint8Array): Uint8Array {
  const token = Buffer.alloc(ID_BYTES + SECRET_BYTES);
  token.writeBigUInt64BE(BigInt(attemptId));
  token.set(secret, ID_BYTES);
  return token;
}

/** The attempt id and secret of a well-formed token, or null for a malformed one. */
export function decodeLeaseToken(token: Uint8Array): { attemptId: number; secret: Buffer } | null {
  if (token.byteLength !== ID_BYTES + SECRET_BYTES) return null;
  const buffer = Buffer.from(token.buffer, token.byteOffset, token.byteLength);
  const id = buffer.readBigUInt64BE(0);
  if (id > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return { attemptId: Number(id), secret: buffer.subarray(ID_BYTES) };
}

export function secretsEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}

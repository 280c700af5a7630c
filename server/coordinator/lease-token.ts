// Lease tokens are opaque to workers. Inside they are the attempt's id (8 bytes,
// big-endian) followed by a random 16-byte secret that the store checks, so a
// forged or stale token can never move an attempt.
import { timingSafeEqual } from "node:crypto";
import { randomPoolBytes } from "./random-pool.js";

const ID_BYTES = 8;
const SECRET_BYTES = 16;

export function newLeaseSecret(): Buffer {
  return randomPoolBytes(SECRET_BYTES);
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

// Which PostgreSQL errors mean "try again": the database could not be reached,
// or the transaction lost a race it may win the next time.
import { StoreUnavailableError } from "../store.js";

/** SQLSTATEs after which the same transaction, run again, may succeed. */
const RETRYABLE = new Set(["40001", "40P01"]); // serialization_failure, deadlock_detected

/** True for a serialization failure or a deadlock: run the transaction again. */
export function isRetryable(error: unknown): boolean {
  return RETRYABLE.has(codeOf(error));
}

/** The SQLSTATE or system error code, if the error carries one as a string. */
function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "";
}

/**
 * True when the database could not be reached or went away: a refused or
 * reset connection, a server shutting down or starting up (class 57P), a
 * connection exception (class 08), or no answer in time: no free connection,
 * or none accepted, within the timeout, or a statement with no answer.
 */
export function isConnectionLoss(error: unknown): boolean {
  const code = codeOf(error);
  if (code.startsWith("08") || code.startsWith("57P") || code === "53300") return true;
  if (["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTFOUND", "EHOSTUNREACH", "EAI_AGAIN"].includes(code)) return true;
  const message = error instanceof Error ? error.message : "";
  return /Connection terminated|connection timeout|Client has encountered a connection error|not queryable|timeout exceeded when trying to connect|Query read timeout/i.test(message);
}

/** A connection loss as a StoreUnavailableError; anything else as it is. */
export function unavailableOr(error: unknown): unknown {
  if (!isConnectionLoss(error) || error instanceof StoreUnavailableError) return error;
  return new StoreUnavailableError(`the PostgreSQL database cannot be reached: ${(error as Error).message || codeOf(error)}`, { cause: error });
}

// Turns whatever a handler threw into the wire Failure: its type, message and
// stack, whether `when` allows a retry, and any requested retry delay. User
// code never builds a Failure itself.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { FailureSchema } from "@reprise/wire";
import { NonRetryableError } from "./errors.js";
import { shouldRetry } from "./retries.js";
import type { When } from "./retries.js";
import { MAX_DURATION_SECONDS, durationFromSeconds } from "./time.js";

export type FailureInit = MessageInitShape<typeof FailureSchema>;

// The coordinator's limits (docs/limits.md); longer text would fail the whole
// report batch with INVALID_ARGUMENT, so it is cut here instead.
const MAX_TYPE_BYTES = 1024;
const MAX_MESSAGE_BYTES = 64 * 1024;
const MAX_STACK_BYTES = 256 * 1024;

/** The error's name, unless it is the generic "Error" a subclass forgot to set; then its class name. */
export function errorType(error: unknown): string {
  if (error instanceof Error) {
    if (error.name && error.name !== "Error") return error.name;
    return error.constructor?.name || "Error";
  }
  if (typeof error === "object" && error !== null) return error.constructor?.name || "Object";
  return typeof error;
}

function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  try {
    return typeof error === "string" ? error : (JSON.stringify(error) ?? String(error));
  } catch {
    return String(error);
  }
}

/** A positive `retryAfter` (seconds) on the error, from RetryAfterError or any error that carries one. */
function requestedRetryAfter(error: unknown): number | undefined {
  if (typeof error !== "object" || error === null || !("retryAfter" in error)) return undefined;
  const value = error.retryAfter;
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? value : undefined;
}

function truncate(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  const cut = Buffer.from(text).subarray(0, maxBytes - 16).toString();
  // A cut through a multi-byte character decodes to U+FFFD; drop it.
  return cut.replace(/\uFFFD$/, "") + " …[truncated]";
}

/**
 * The Failure to report for `error`. `when` is evaluated here, at the throw:
 * false makes the failure non-retryable, and a `when` that throws does too,
 * with both messages in the report.
 */
export function toFailure(error: unknown, when: When | undefined): FailureInit {
  let type = errorType(error);
  let message = errorMessage(error);
  let stack = error instanceof Error ? (error.stack ?? "") : "";
  let nonRetryable = error instanceof NonRetryableError;
  if (!nonRetryable) {
    try {
      nonRetryable = !shouldRetry(when, error);
    } catch (whenError) {
      nonRetryable = true;
      message = `${message} (and the retry condition \`when\` threw ${errorType(whenError)}: ${errorMessage(whenError)})`;
      if (whenError instanceof Error && whenError.stack) stack = `${stack}\n\n\`when\` threw:\n${whenError.stack}`;
    }
  }
  const retryAfter = requestedRetryAfter(error);
  type = truncate(type, MAX_TYPE_BYTES);
  return {
    type,
    message: truncate(message, MAX_MESSAGE_BYTES),
    stackTrace: truncate(stack, MAX_STACK_BYTES),
    nonRetryable,
    // Past the coordinator's longest delay it would refuse the whole report: cut to it, as the Go client does.
    ...(retryAfter !== undefined && !nonRetryable ? { retryAfter: durationFromSeconds(Math.min(retryAfter, MAX_DURATION_SECONDS), "retryAfter") } : {}),
  };
}

/**
 * The Failure for an attempt still running when `stop()`'s grace ran out,
 * whatever it threw. Like an abandoned attempt it is always retryable, and
 * `when` is not asked: reporting it at once only saves waiting for the lease
 * to expire. The type is the Go client's.
 */
export function shutdownFailure(error: unknown): FailureInit {
  return { type: "WorkerShutdown", message: truncate(`the worker shut down before the attempt finished: ${errorMessage(error)}`, MAX_MESSAGE_BYTES) };
}

// One gRPC channel per Worker or Client, tuned to come back quickly after the
// coordinator restarts, and the rule for which call errors are worth a retry.
import * as grpc from "@grpc/grpc-js";
import type { ReconnectOptions } from "./backoff.js";

export interface ConnectionOptions {
  /** The coordinator's host:port. Default "127.0.0.1:50051". */
  address?: string;
  /** Default: insecure (plaintext), for loopback and private networks. */
  credentials?: grpc.ChannelCredentials;
  /** Extra grpc-js channel options and interceptors, passed through as they are. */
  grpcOptions?: grpc.ClientOptions;
  /** How quickly to try again after the coordinator goes away. */
  reconnect?: ReconnectOptions;
}

/**
 * grpc-js waits 1 s, then up to 120 s, between reconnects by default, which
 * would leave workers idle for minutes after a coordinator restart. Follow the
 * client's own reconnect backoff instead.
 */
export function channelOptions(reconnect: Required<ReconnectOptions>, extra: grpc.ClientOptions = {}): grpc.ClientOptions {
  return {
    "grpc.initial_reconnect_backoff_ms": Math.max(1, Math.round(reconnect.minDelay * 1000)),
    "grpc.max_reconnect_backoff_ms": Math.max(1, Math.round(reconnect.maxDelay * 1000)),
    "grpc.max_receive_message_length": -1,
    ...extra,
  };
}

function statusCode(error: unknown): number | undefined {
  return typeof error === "object" && error !== null && "code" in error && typeof error.code === "number" ? error.code : undefined;
}

/**
 * Errors that a restart or a network blip causes; the call is tried again
 * after a backoff. Everything else (a bad argument, an unknown id) is the
 * caller's to see.
 */
export function isTransient(error: unknown): boolean {
  const code = statusCode(error);
  return (
    code === grpc.status.UNAVAILABLE ||
    code === grpc.status.DEADLINE_EXCEEDED ||
    code === grpc.status.ABORTED ||
    code === grpc.status.INTERNAL ||
    code === grpc.status.UNKNOWN ||
    code === grpc.status.CANCELLED
  );
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

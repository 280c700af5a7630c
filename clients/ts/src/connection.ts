// One gRPC channel per Worker or Client, tuned to come back quickly after the
// coordinator restarts, and the rule for which call errors are worth a retry.
import * as grpc from "@grpc/grpc-js";
import type { ReconnectOptions } from "./backoff.js";

export interface ConnectionOptions {
  /** The coordinator's host:port. Default "127.0.0.1:50051". */
  address?: string;
  /** Default: insecure (plaintext), for loopback and private networks. */
  credentials?: grpc.ChannelCredentials;
  /**
   * A bearer token sent on every call (the coordinator's `--auth-tokens`): a
   * `worker` token for a Worker, a `caller` token for a Client.
   */
  token?: string;
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
export function channelOptions(reconnect: Required<ReconnectOptions>, extra: grpc.ClientOptions = {}, token?: string): grpc.ClientOptions {
  return {
    "grpc.initial_reconnect_backoff_ms": Math.max(1, Math.round(reconnect.minDelay * 1000)),
    "grpc.max_reconnect_backoff_ms": Math.max(1, Math.round(reconnect.maxDelay * 1000)),
    "grpc.max_receive_message_length": -1,
    ...extra,
    interceptors: [...(token === undefined ? [] : [bearerToken(token)]), ...(extra.interceptors ?? [])],
  };
}

/**
 * grpc-js refuses call credentials on a plaintext channel, which is what a
 * loopback coordinator with tokens uses, so the header goes on as metadata.
 */
function bearerToken(token: string): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

/**
 * The coordinator's default --max-batch-size (docs/limits.md): the most
 * submissions, outcomes or heartbeat tokens one call may carry. Larger sets
 * are split into calls of this size.
 */
export const MAX_BATCH = 1000;

export function statusCode(error: unknown): number | undefined {
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

/**
 * A per-connection quota of the coordinator is full (its watches or
 * long-polls). Calls that carry no payload can only mean that, so they wait
 * for a turn instead of failing.
 */
export function isQuotaFull(error: unknown): boolean {
  return statusCode(error) === grpc.status.RESOURCE_EXHAUSTED;
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

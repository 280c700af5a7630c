// The typed options of Worker and Client, with every default in one place and
// validation that names the option.
import { hostname } from "node:os";
import * as grpc from "@grpc/grpc-js";
import { RECONNECT_DEFAULTS } from "./backoff.js";
import type { ReconnectOptions } from "./backoff.js";
import { jsonCodec } from "./codec.js";
import type { Codec } from "./codec.js";
import type { ConnectionOptions } from "./connection.js";
import { stderrLogger } from "./log.js";
import type { Logger } from "./log.js";

export interface ClientOptions extends ConnectionOptions {
  /** Encodes arguments and decodes results. Default JSON. */
  codec?: Codec;
  logger?: Logger;
}

export interface WorkerOptions extends ConnectionOptions {
  /** The most attempts this worker runs at once. Default 16. */
  concurrency?: number;
  /** Identifies this worker to operators. Default host-pid-random. */
  workerId?: string;
  /**
   * Seconds each lease lasts without a heartbeat. A worker that dies is noticed
   * (its attempts abandoned) this long after its last heartbeat. Default 30;
   * 0.1 to 3600.
   */
  leaseDuration?: number;
  /** Seconds between heartbeats. Default a third of `leaseDuration`. */
  heartbeatInterval?: number;
  /** Seconds one LeaseAttempts long-poll waits for work. Default 30; at most 60. */
  pollWait?: number;
  /** Seconds `stop()` lets in-flight attempts run before aborting their signals. Default 10. */
  stopGrace?: number;
  /** Seconds `stop()` then still waits for aborted handlers and their reports. Default 2. */
  abortGrace?: number;
  /** Encodes results and decodes arguments. Default JSON. */
  codec?: Codec;
  /**
   * Where failed attempts and their retries (info), refused reports and
   * connection trouble are logged. Default JSON lines on stderr, warn and up.
   */
  logger?: Logger;
}

export interface ResolvedConnection {
  address: string;
  credentials: grpc.ChannelCredentials;
  grpcOptions: grpc.ClientOptions;
  token: string | undefined;
  reconnect: Required<ReconnectOptions>;
}

export type ResolvedClientOptions = ResolvedConnection & { codec: Codec; logger: Logger };

export type ResolvedWorkerOptions = ResolvedConnection & {
  concurrency: number;
  workerId: string;
  leaseDuration: number;
  heartbeatInterval: number;
  pollWait: number;
  stopGrace: number;
  abortGrace: number;
  codec: Codec;
  logger: Logger;
};

function check(ok: boolean, name: string, rule: string, value: unknown): void {
  if (!ok) throw new RangeError(`${name}: must be ${rule}; got ${JSON.stringify(value)}`);
}

function connection(options: ConnectionOptions, owner: string): ResolvedConnection {
  const reconnect = { ...RECONNECT_DEFAULTS, ...options.reconnect };
  check(reconnect.minDelay > 0, `${owner}.reconnect.minDelay`, "> 0 seconds", reconnect.minDelay);
  check(reconnect.maxDelay >= reconnect.minDelay, `${owner}.reconnect.maxDelay`, ">= minDelay", reconnect.maxDelay);
  const address = options.address ?? "127.0.0.1:50051";
  check(address !== "", `${owner}.address`, "host:port", address);
  check(options.token === undefined || options.token !== "", `${owner}.token`, "a non-empty string or absent", options.token);
  return {
    address,
    credentials: options.credentials ?? grpc.credentials.createInsecure(),
    grpcOptions: options.grpcOptions ?? {},
    token: options.token,
    reconnect,
  };
}

export function resolveClientOptions(options: ClientOptions): ResolvedClientOptions {
  return { ...connection(options, "Client"), codec: options.codec ?? jsonCodec, logger: options.logger ?? stderrLogger };
}

export function resolveWorkerOptions(options: WorkerOptions): ResolvedWorkerOptions {
  const concurrency = options.concurrency ?? 16;
  check(Number.isInteger(concurrency) && concurrency >= 1 && concurrency <= 1000, "Worker.concurrency", "a whole number from 1 to 1000", concurrency);
  const leaseDuration = options.leaseDuration ?? 30;
  check(leaseDuration >= 0.1 && leaseDuration <= 3600, "Worker.leaseDuration", "from 0.1 to 3600 seconds", leaseDuration);
  const heartbeatInterval = options.heartbeatInterval ?? leaseDuration / 3;
  check(heartbeatInterval > 0 && heartbeatInterval < leaseDuration, "Worker.heartbeatInterval", "> 0 and shorter than leaseDuration", heartbeatInterval);
  const pollWait = options.pollWait ?? 30;
  check(pollWait >= 0 && pollWait <= 60, "Worker.pollWait", "from 0 to 60 seconds", pollWait);
  const stopGrace = options.stopGrace ?? 10;
  check(stopGrace >= 0, "Worker.stopGrace", ">= 0 seconds", stopGrace);
  const abortGrace = options.abortGrace ?? 2;
  check(abortGrace >= 0, "Worker.abortGrace", ">= 0 seconds", abortGrace);
  const workerId = options.workerId ?? `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  check(workerId !== "" && Buffer.byteLength(workerId) <= 256, "Worker.workerId", "1 to 256 bytes", workerId);
  return {
    ...connection(options, "Worker"),
    concurrency,
    workerId,
    leaseDuration,
    heartbeatInterval,
    pollWait,
    stopGrace,
    abortGrace,
    codec: options.codec ?? jsonCodec,
    logger: options.logger ?? stderrLogger,
  };
}

// The one typed configuration of `reprise serve`: every option, its default,
// its environment variable and its validation, in one place. Flags win over
// environment variables, which win over defaults.
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { LogLevel } from "./log.js";
import { DEFAULT_LIMITS } from "../api/limits.js";
import type { Limits } from "../api/limits.js";
import type { Durability } from "../store/sqlite/sqlite-store.js";
import { DEFAULT_TIMEOUT_MS } from "../store/postgres/postgres-store.js";

/** Every option of `reprise serve`; the limits are those of server/limits.ts. */
export interface ServeConfig extends Limits {
  listen: string;
  db: string;
  durability: Durability;
  /** PostgreSQL store: how long to wait for a connection or a statement's answer. */
  dbTimeoutMs: number;
  tlsCert: string | null;
  tlsKey: string | null;
  tlsClientCa: string | null;
  authTokens: string | null;
  /** The HTTP listener: the JSON API and /metrics. --metrics-listen is its alias. */
  httpListen: string | null;
  metricsListen: string | null;
  /** Delete executions that finished longer ago than this; null keeps them forever. */
  retainMs: number | null;
  logLevel: LogLevel;
}

export class ConfigError extends Error {}

interface OptionSpec<K extends keyof ServeConfig> {
  key: K;
  flag: string;
  env: string;
  default: ServeConfig[K];
  help: string;
  parse(raw: string, name: string): ServeConfig[K];
  /** How --help shows the default (typed loosely: the option list mixes value types); String() when absent. */
  show?: (value: never) => string;
}

function oneOf<T extends string>(values: readonly T[]) {
  return (raw: string, name: string): T => {
    if (!(values as readonly string[]).includes(raw)) throw new ConfigError(`${name}: must be one of ${values.join(", ")}; got ${JSON.stringify(raw)}`);
    return raw as T;
  };
}

function listenAddress(raw: string, name: string): string {
  const match = /^(.+):(\d{1,5})$/.exec(raw);
  if (!match || Number(match[2]) > 65535) throw new ConfigError(`${name}: must be HOST:PORT, for example 127.0.0.1:50051; got ${JSON.stringify(raw)}`);
  return raw;
}

function positiveInteger(max: number) {
  return (raw: string, name: string): number => {
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || value < 1 || value > max) throw new ConfigError(`${name}: must be a whole number from 1 to ${max}; got ${JSON.stringify(raw)}`);
    return value;
  };
}

const nonEmpty = (raw: string, name: string): string => {
  if (raw === "") throw new ConfigError(`${name}: must not be empty`);
  return raw;
};

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * "250ms", "30s", "1.5m", "1h" or "7d" in milliseconds, or null when malformed.
 * A bare number means `bareUnit`, and is malformed without one.
 */
export function parseDurationMs(raw: string, bareUnit?: "s"): number | null {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(raw.trim());
  const unit = match?.[2] ?? bareUnit;
  return match && unit ? Math.round(Number(match[1]) * UNIT_MS[unit]!) : null;
}

/** The units a bare number may have been meant in, likeliest first. */
const READING_ORDER = ["s", "ms", "m", "h", "d"];

/**
 * A serve option's duration, at least `minMs`. It needs its unit: a bare "30"
 * could mean seconds to one reader and milliseconds to the next, so it is
 * refused with the two likeliest readings that the option accepts.
 */
function duration(raw: string, name: string, minMs = 0): number {
  const ms = parseDurationMs(raw);
  if (ms === null) {
    const readings = /^\d+$/.test(raw) ? READING_ORDER.filter((unit) => Number(raw) * UNIT_MS[unit]! >= minMs).slice(0, 2) : [];
    const hint = readings.length > 0 ? `give it a unit, as in ${readings.map((unit) => raw + unit).join(" or ")}` : "must be a duration such as 250ms, 30s, 5m, 1h or 7d";
    throw new ConfigError(`${name}: ${hint}; got ${JSON.stringify(raw)}`);
  }
  if (ms < minMs) throw new ConfigError(`${name}: must be at least ${formatDuration(minMs)}; got ${JSON.stringify(raw)}`);
  return ms;
}

/** Milliseconds in the largest unit that divides them: 3600000 is "1h". */
export function formatDuration(ms: number): string {
  for (const unit of ["d", "h", "m", "s"] as const) {
    if (ms !== 0 && ms % UNIT_MS[unit]! === 0) return `${ms / UNIT_MS[unit]!}${unit}`;
  }
  return `${ms}ms`;
}

const showDuration = (ms: number | null) => (ms === null ? "none" : formatDuration(ms));

/** Finished executions are kept at least a minute, so that a watch or a re-sent report finds them. */
const MIN_RETAIN_MS = 60_000;

/** A database timeout: at least 100 ms, so that a slow answer is not taken for a lost database. */
function databaseTimeout(raw: string, name: string): number {
  return duration(raw, name, 100);
}

function retention(raw: string, name: string): number | null {
  return duration(raw, name, MIN_RETAIN_MS);
}

function pattern(raw: string, name: string): RegExp {
  try {
    return new RegExp(raw, "u");
  } catch (error) {
    throw new ConfigError(`${name}: not a valid regular expression: ${(error as Error).message}`);
  }
}

const path = (raw: string, name: string): string | null => nonEmpty(raw, name);

export const SERVE_OPTIONS = [
  { key: "listen", flag: "listen", env: "REPRISE_LISTEN", default: "127.0.0.1:50051", help: "host:port to serve gRPC on (port 0 picks a free one)", parse: listenAddress },
  { key: "db", flag: "db", env: "REPRISE_DB", default: "./reprise.db", help: "SQLite database file (created if missing), or a postgres:// URL for the PostgreSQL store", parse: nonEmpty },
  {
    key: "durability",
    flag: "durability",
    env: "REPRISE_DURABILITY",
    default: "normal",
    help: "normal: survives a process crash (SQLite synchronous=NORMAL); full: also survives power loss (synchronous=FULL), at a cost in commits/s",
    parse: oneOf(["normal", "full"] as const),
  },
  {
    key: "dbTimeoutMs",
    flag: "db-timeout",
    env: "REPRISE_DB_TIMEOUT",
    default: DEFAULT_TIMEOUT_MS,
    help: "PostgreSQL store: how long to wait for the database to accept a connection or answer a statement; past it the call fails with UNAVAILABLE and health says NOT_SERVING",
    parse: databaseTimeout,
    show: showDuration,
  },
  {
    key: "maxPayloadBytes",
    flag: "max-payload-bytes",
    env: "REPRISE_MAX_PAYLOAD_BYTES",
    default: DEFAULT_LIMITS.maxPayloadBytes,
    help: "largest arguments or result payload accepted; larger is RESOURCE_EXHAUSTED",
    parse: positiveInteger(64 * 1024 * 1024),
  },
  {
    key: "maxBatchSize",
    flag: "max-batch-size",
    env: "REPRISE_MAX_BATCH_SIZE",
    default: DEFAULT_LIMITS.maxBatchSize,
    help: "most entries in one batch (submissions, outcomes, heartbeat tokens, attempts per lease, tasks per call)",
    parse: positiveInteger(100_000),
  },
  { key: "maxTaskNameBytes", flag: "max-task-name-bytes", env: "REPRISE_MAX_TASK_NAME_BYTES", default: DEFAULT_LIMITS.maxTaskNameBytes, help: "longest task name, in UTF-8 bytes", parse: positiveInteger(4096) },
  { key: "taskNamePattern", flag: "task-name-pattern", env: "REPRISE_TASK_NAME_PATTERN", default: DEFAULT_LIMITS.taskNamePattern, help: "regular expression every task name must match", parse: pattern },
  { key: "minLeaseMs", flag: "min-lease-duration", env: "REPRISE_MIN_LEASE_DURATION", default: DEFAULT_LIMITS.minLeaseMs, help: "shortest lease_duration a worker may ask for (250ms, 30s, 5m, 1h)", parse: duration, show: showDuration },
  { key: "maxLeaseMs", flag: "max-lease-duration", env: "REPRISE_MAX_LEASE_DURATION", default: DEFAULT_LIMITS.maxLeaseMs, help: "longest lease_duration a worker may ask for", parse: duration, show: showDuration },
  {
    key: "maxLongPollsPerConnection",
    flag: "max-long-polls-per-connection",
    env: "REPRISE_MAX_LONG_POLLS_PER_CONNECTION",
    default: DEFAULT_LIMITS.maxLongPollsPerConnection,
    help: "LeaseAttempts calls one connection may have waiting at once; more is RESOURCE_EXHAUSTED",
    parse: positiveInteger(100_000),
  },
  {
    key: "maxWatchesPerConnection",
    flag: "max-watches-per-connection",
    env: "REPRISE_MAX_WATCHES_PER_CONNECTION",
    default: DEFAULT_LIMITS.maxWatchesPerConnection,
    help: "WatchExecution streams one connection may have open at once; more is RESOURCE_EXHAUSTED",
    parse: positiveInteger(100_000),
  },
  { key: "tlsCert", flag: "tls-cert", env: "REPRISE_TLS_CERT", default: null, help: "PEM certificate chain file; serve TLS (needs --tls-key)", parse: path },
  { key: "tlsKey", flag: "tls-key", env: "REPRISE_TLS_KEY", default: null, help: "PEM private key file for --tls-cert", parse: path },
  { key: "tlsClientCa", flag: "tls-client-ca", env: "REPRISE_TLS_CLIENT_CA", default: null, help: "PEM CA file; require client certificates it signed (mutual TLS)", parse: path },
  {
    key: "authTokens",
    flag: "auth-tokens",
    env: "REPRISE_AUTH_TOKENS",
    default: null,
    help: "file of `ROLE TOKEN` lines (roles: worker, caller, admin); require bearer tokens",
    parse: path,
  },
  {
    key: "httpListen",
    flag: "http-listen",
    env: "REPRISE_HTTP_LISTEN",
    default: null,
    help: "host:port to serve HTTP on (HTTPS with --tls-cert): the web console at /, the JSON API under /api/v1/ and Prometheus metrics at /metrics, for example 127.0.0.1:8080; off when unset",
    parse: listenAddress,
  },
  {
    key: "metricsListen",
    flag: "metrics-listen",
    env: "REPRISE_METRICS_LISTEN",
    default: null,
    help: "the former name of --http-listen, kept as an alias",
    parse: listenAddress,
  },
  {
    key: "retainMs",
    flag: "retain",
    env: "REPRISE_RETAIN",
    default: null,
    help: "delete executions that finished longer ago than this (for example 72h or 30d), with their attempts; at least 1m; off when unset",
    parse: retention,
    show: showDuration,
  },
  { key: "logLevel", flag: "log-level", env: "REPRISE_LOG_LEVEL", default: "warn", help: "debug, info, warn, error or silent", parse: oneOf(["debug", "info", "warn", "error", "silent"] as const) },
] as const satisfies readonly OptionSpec<keyof ServeConfig>[];

type Flags = Record<string, string | undefined>;

/** An option's value as the operator gave it, and under which name: the flag wins over the environment variable. */
function given(option: (typeof SERVE_OPTIONS)[number], flags: Flags, env: NodeJS.ProcessEnv): { raw: string; name: string } | undefined {
  const flagValue = flags[option.flag];
  if (flagValue !== undefined) return { raw: flagValue, name: `--${option.flag}` };
  const envValue = env[option.env];
  return envValue === undefined ? undefined : { raw: envValue, name: option.env };
}

/** Resolves the configuration from parsed flags and the environment. Throws ConfigError naming the option. */
export function loadServeConfig(flags: Flags, env: NodeJS.ProcessEnv): ServeConfig {
  const config: Record<string, unknown> = {};
  for (const option of SERVE_OPTIONS) {
    const value = given(option, flags, env);
    config[option.key] = value === undefined ? option.default : option.parse(value.raw, value.name);
  }
  const result = config as unknown as ServeConfig;
  if ((result.tlsCert === null) !== (result.tlsKey === null)) throw new ConfigError("--tls-cert and --tls-key: give both or neither");
  if (result.tlsClientCa !== null && result.tlsCert === null) throw new ConfigError("--tls-client-ca: needs --tls-cert and --tls-key");
  if (result.minLeaseMs > result.maxLeaseMs) throw new ConfigError("--min-lease-duration: must not be greater than --max-lease-duration");
  if (result.httpListen !== null && result.metricsListen !== null && result.httpListen !== result.metricsListen) {
    throw new ConfigError("--metrics-listen: is an alias of --http-listen; give one of them, or the same address to both");
  }
  result.httpListen ??= result.metricsListen;
  result.metricsListen = null;
  return result;
}

/**
 * How an error names a serve option: its flag, or its environment variable
 * when the value came from there. The HTTP address may have come through its
 * alias, --metrics-listen, which loadServeConfig folds into it.
 */
export function optionName(key: keyof ServeConfig, flags: Flags, env: NodeJS.ProcessEnv): string {
  const option = (name: keyof ServeConfig) => SERVE_OPTIONS.find((candidate) => candidate.key === name)!;
  const value = given(option(key), flags, env) ?? (key === "httpListen" ? given(option("metricsListen"), flags, env) : undefined);
  return value?.name ?? `--${option(key).flag}`;
}

export function serveHelp(): string {
  const shown = (option: (typeof SERVE_OPTIONS)[number]) => {
    if ("show" in option) return (option.show as (value: unknown) => string)(option.default);
    const value: unknown = option.default;
    return value === null ? "none" : value instanceof RegExp ? value.source : String(value);
  };
  const lines = SERVE_OPTIONS.map((o) => `  --${o.flag.padEnd(30)} ${o.help}\n  ${"".padEnd(32)} default: ${shown(o)}; env: ${o.env}`);
  return `Usage: reprise serve [options]\n\nStarts the Reprise coordinator.\n\nOptions:\n${lines.join("\n")}\n  --help                           show this help\n`;
}

/** A PEM file named by `flag`, checked to hold a `kind`: a file that cannot be read or parsed is a ConfigError naming the flag. */
export function readPem(path: string, flag: string, kind: "certificate" | "private key"): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (error) {
    throw new ConfigError(`${flag}: cannot read ${path}: ${(error as Error).message}`);
  }
  try {
    if (kind === "certificate") new X509Certificate(pem);
    else createPrivateKey(pem);
  } catch (error) {
    throw new ConfigError(`${flag}: ${path} is not a PEM ${kind}: ${(error as Error).message}`);
  }
  return pem;
}

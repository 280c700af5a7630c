// The one typed configuration of `reprise serve`: every option, its default,
// its environment variable and its validation, in one place. Flags win over
// environment variables, which win over defaults.
import type { LogLevel } from "./log.js";
import type { Durability } from "./sqlite-store.js";

export interface ServeConfig {
  listen: string;
  db: string;
  durability: Durability;
  maxPayloadBytes: number;
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

export const SERVE_OPTIONS = [
  { key: "listen", flag: "listen", env: "REPRISE_LISTEN", default: "127.0.0.1:50051", help: "host:port to serve gRPC on (port 0 picks a free one)", parse: listenAddress },
  { key: "db", flag: "db", env: "REPRISE_DB", default: "./reprise.db", help: "SQLite database file; created if missing", parse: nonEmpty },
  {
    key: "durability",
    flag: "durability",
    env: "REPRISE_DURABILITY",
    default: "normal",
    help: "normal: survives a process crash (SQLite synchronous=NORMAL); full: also survives power loss (synchronous=FULL), at a cost in commits/s",
    parse: oneOf(["normal", "full"] as const),
  },
  {
    key: "maxPayloadBytes",
    flag: "max-payload-bytes",
    env: "REPRISE_MAX_PAYLOAD_BYTES",
    default: 1024 * 1024,
    help: "largest arguments or result payload accepted; larger is RESOURCE_EXHAUSTED",
    parse: positiveInteger(64 * 1024 * 1024),
  },
  { key: "logLevel", flag: "log-level", env: "REPRISE_LOG_LEVEL", default: "warn", help: "debug, info, warn, error or silent", parse: oneOf(["debug", "info", "warn", "error", "silent"] as const) },
] as const satisfies readonly OptionSpec<keyof ServeConfig>[];

/** Resolves the configuration from parsed flags and the environment. Throws ConfigError naming the option. */
export function loadServeConfig(flags: Record<string, string | undefined>, env: NodeJS.ProcessEnv): ServeConfig {
  const config: Record<string, unknown> = {};
  for (const option of SERVE_OPTIONS) {
    const flagValue = flags[option.flag];
    const envValue = env[option.env];
    if (flagValue !== undefined) config[option.key] = option.parse(flagValue, `--${option.flag}`);
    else if (envValue !== undefined) config[option.key] = option.parse(envValue, option.env);
    else config[option.key] = option.default;
  }
  return config as unknown as ServeConfig;
}

export function serveHelp(): string {
  const lines = SERVE_OPTIONS.map((o) => `  --${o.flag.padEnd(20)} ${o.help}\n  ${"".padEnd(22)} default: ${o.default}; env: ${o.env}`);
  return `Usage: reprise serve [options]\n\nStarts the Reprise coordinator.\n\nOptions:\n${lines.join("\n")}\n  --help                 show this help\n`;
}

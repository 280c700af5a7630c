// Structured logs: JSON lines on stderr through pino. Quiet by default (`warn`):
// a healthy coordinator logs nothing. Lifecycle events carry execution_id, task
// and attempt; `info` shows retries, abandonments, timeouts and ends, `debug`
// every submit, lease and success.
import pino from "pino";

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** Writes out anything buffered; call before exit. */
  flush(): void;
}

/** A pino logger writing to `destination` (a file descriptor; stderr by default). */
export function jsonLogger(level: LogLevel, destination: number | NodeJS.WritableStream = 2): Logger {
  const logger = pino(
    { level, base: null, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
    typeof destination === "number" ? pino.destination({ dest: destination, sync: false }) : destination,
  );
  return {
    debug: (message, fields) => logger.debug(fields ?? {}, message),
    info: (message, fields) => logger.info(fields ?? {}, message),
    warn: (message, fields) => logger.warn(fields ?? {}, message),
    error: (message, fields) => logger.error(fields ?? {}, message),
    flush: () => logger.flush(),
  };
}

/**
 * A line every operator must see whatever the level (the address served, the
 * stop), in the shape of the JSON log lines, so that stderr stays pure JSON.
 */
export function announce(message: string, fields: LogFields = {}): void {
  process.stderr.write(`${JSON.stringify({ level: "info", time: new Date().toISOString(), ...fields, msg: message })}\n`);
}

const nothing = () => {};
export const silentLogger: Logger = { debug: nothing, info: nothing, warn: nothing, error: nothing, flush: nothing };

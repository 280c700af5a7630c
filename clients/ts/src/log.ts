// The client's logger: anything with warn/error (console fits). The default
// writes JSON lines on stderr, like the coordinator does.

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

const line = (level: string) => (message: string, fields: LogFields = {}) =>
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields }) + "\n");

/** Warnings and errors on stderr; debug and info are dropped. */
export const stderrLogger: Logger = { debug() {}, info() {}, warn: line("warn"), error: line("error") };

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

#!/usr/bin/env node
// The `reprise` command. Environment variables are read here and nowhere else.
import { parseCommandLine } from "./operator/args.js";
import { createSecureContext } from "node:tls";
import { status } from "@grpc/grpc-js";
import Database from "better-sqlite3";
import { AuthFileError, Authorizer } from "./api/auth.js";
import { backupDatabase, checkBackupPaths, databaseBytes, mib } from "./operator/backup.js";
import { COMMANDS, EXIT } from "./operator/commands.js";
import { ConfigError, SERVE_OPTIONS, loadServeConfig, optionName, readPem, serveHelp } from "./operator/config.js";
import type { ServeConfig } from "./operator/config.js";
import { announce, jsonLogger } from "./operator/log.js";
import type { Logger } from "./operator/log.js";
import { protosCommand } from "./operator/protos.js";
import { buildInfo, sqliteBinding } from "./runtime/runtime.js";
import { UnpackError } from "./runtime/unpack.js";
import { isPostgresUrl, redactUrl, startServer } from "./api/server.js";
import type { ServerOptions } from "./api/server.js";

const USAGE = `Usage: reprise <command> [options]

Commands:
  serve     start the coordinator (reprise serve --help for its options)
  ls        list executions: reprise ls [--task T] [--state S] [--retrying]
  show      an execution and its attempt timeline: reprise show ID
  submit    submit an execution: reprise submit TASK [--args JSON] [--retries N] [--wait]
  watch     follow an execution until it ends: reprise watch ID
  cancel    cancel an execution: reprise cancel ID
  rerun     run a failed, abandoned, timed-out or cancelled execution again:
            reprise rerun ID, or reprise rerun --task T --state failed [--since 1h]
  workers   the workers seen lately and their tasks: reprise workers [--task T]
  backup    copy a database online while the coordinator serves it:
            reprise backup --db ./reprise.db OUT
  protos    write the API's .proto files under DIR/reprise/v1/: reprise protos DIR

reprise --version prints the version, the commit, and the Node and SQLite versions.

ls, show, submit, watch, cancel, rerun and workers talk to --addr (default 127.0.0.1:50051, or
REPRISE_ADDR) and take --json. Exit codes: 0 ok; 1 the execution did not
succeed (submit --wait, watch); 2 bad usage; 3 the call failed.

Run 'reprise <command> --help' for a command's options.
`;

/** How an error names a serve option: as the operator gave it, by flag or by environment variable. */
type OptionName = (key: keyof ServeConfig) => string;

function readTls(cert: string, key: string, clientCa: string | null, nameOf: OptionName): NonNullable<ServerOptions["tls"]> {
  const tls = {
    cert: readPem(cert, nameOf("tlsCert"), "certificate"),
    key: readPem(key, nameOf("tlsKey"), "private key"),
    clientCa: clientCa ? readPem(clientCa, nameOf("tlsClientCa"), "certificate") : undefined,
  };
  try {
    createSecureContext({ cert: tls.cert, key: tls.key });
  } catch (error) {
    throw new ConfigError(`${nameOf("tlsKey")}: ${key} does not belong to the certificate in ${nameOf("tlsCert")} ${cert}: ${(error as Error).message}`);
  }
  return tls;
}

function serverOptions(config: ServeConfig, log: Logger, nameOf: OptionName): ServerOptions {
  const { listen, db, durability, dbTimeoutMs, tlsCert, tlsKey, tlsClientCa, authTokens, httpListen, metricsListen: _alias, retainMs, logLevel: _, ...limits } = config;
  return {
    listen,
    db,
    durability,
    dbTimeoutMs,
    limits,
    tls: tlsCert && tlsKey ? readTls(tlsCert, tlsKey, tlsClientCa, nameOf) : undefined,
    authorizer: authTokens ? Authorizer.fromFile(authTokens) : undefined,
    httpListen: httpListen ?? undefined,
    retainMs: retainMs ?? undefined,
    optionNames: { db: nameOf("db"), listen: nameOf("listen"), httpListen: nameOf("httpListen") },
    log,
  };
}

async function serve(args: string[]): Promise<number> {
  const { values } = parseCommandLine({
    args,
    options: {
      help: { type: "boolean" },
      ...Object.fromEntries(SERVE_OPTIONS.map((o) => [o.flag, { type: "string" as const }])),
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(serveHelp());
    return 0;
  }
  const flags = values as Record<string, string | undefined>;
  const config = loadServeConfig(flags, process.env);
  const log = jsonLogger(config.logLevel);
  const nameOf: OptionName = (key) => optionName(key, flags, process.env);
  const server = await startServer(serverOptions(config, log, nameOf));
  const httpBase = server.httpPort === null ? null : `${config.tlsCert ? "https" : "http"}://${config.httpListen!.replace(/:\d+$/, `:${server.httpPort}`)}`;
  const metricsNote = httpBase === null ? "" : `; console on ${httpBase}/, JSON API on ${httpBase}/api/v1/, metrics on ${httpBase}/metrics`;
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      announce(`reprise: ${signal}; shutting down`, { signal });
      server.shutdown(3000).finally(() => {
        log.flush();
        resolve();
      });
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  // Said only once the handlers are in place: whoever reads it may send SIGTERM at once.
  const address = config.listen.replace(/:\d+$/, `:${server.port}`);
  const db = isPostgresUrl(config.db) ? redactUrl(config.db) : config.db;
  announce(`reprise: serving on ${address} with ${db}${metricsNote}`, { listen: address, db });
  await stopped;
  return 0;
}

async function backup(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine({ args, options: { db: { type: "string" }, help: { type: "boolean" } }, allowPositionals: true });
  if (values.help) {
    process.stdout.write("Usage: reprise backup [--db ./reprise.db] OUT\n\nWrites a consistent copy of the database to OUT (a new file) while the coordinator keeps serving.\nRestore by stopping the coordinator and starting it with --db OUT.\n");
    return 0;
  }
  if (positionals.length !== 1) throw new ConfigError("backup: give exactly one output file, for example: reprise backup --db ./reprise.db ./reprise-backup.db");
  const source = values.db ?? process.env.REPRISE_DB ?? "./reprise.db";
  if (isPostgresUrl(source)) throw new ConfigError("backup: --db names a PostgreSQL database; back it up with pg_dump (see docs/postgres.md)");
  checkBackupPaths(source, positionals[0]!);
  process.stderr.write(`reprise: backing up ${source} (${mib(databaseBytes(source))}) to ${positionals[0]}\n`);
  const result = await backupDatabase(source, positionals[0]!, (step) => process.stderr.write(`reprise: ${step}\n`));
  process.stderr.write(`reprise: integrity check ok; ${result.ms} ms in all\n`);
  return 0;
}

function versionText(): string {
  const { version, commit } = buildInfo();
  const db = new Database(":memory:", { nativeBinding: sqliteBinding() });
  try {
    const sqlite = db.prepare("SELECT sqlite_version()").pluck().get() as string;
    return `reprise ${version}\ncommit ${commit}\nnode ${process.versions.node}\nsqlite ${sqlite}\n`;
  } finally {
    db.close();
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serve(rest);
    case "backup":
      return backup(rest);
    case "ls":
    case "show":
    case "submit":
    case "watch":
    case "cancel":
    case "rerun":
    case "workers":
      return COMMANDS[command]!(rest);
    case "protos":
      return protosCommand(rest);
    case "--version":
      process.stdout.write(versionText());
      return 0;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`reprise: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError || error instanceof AuthFileError || (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`reprise: ${error.message}\n`);
      process.exit(2);
    }
    if (error instanceof UnpackError) {
      process.stderr.write(`reprise: ${error.message}\n`);
      process.exit(1);
    }
    if (typeof error === "object" && error !== null && "code" in error && "details" in error && typeof error.code === "number") {
      process.stderr.write(`reprise: ${status[error.code] ?? error.code}: ${String(error.details)}\n`);
      process.exit(EXIT.callFailed);
    }
    process.stderr.write(`reprise: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);

#!/usr/bin/env node
// The `reprise` command. Environment variables are read here and nowhere else.
import { parseArgs } from "node:util";
import { ConfigError, SERVE_OPTIONS, loadServeConfig, serveHelp } from "./config.js";
import { jsonLogger } from "./log.js";
import { startServer } from "./server.js";

const USAGE = `Usage: reprise <command> [options]

Commands:
  serve     start the coordinator (reprise serve --help for its options)

Run 'reprise <command> --help' for a command's options.
`;

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({
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
  const config = loadServeConfig(values as Record<string, string | undefined>, process.env);
  const log = jsonLogger(config.logLevel);
  const server = await startServer({ ...config, log });
  process.stderr.write(`reprise: serving on ${config.listen.replace(/:\d+$/, `:${server.port}`)} with ${config.db}\n`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.stderr.write(`reprise: ${signal}; shutting down\n`);
      server.shutdown(3000).then(resolve, resolve);
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serve(rest);
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
    if (error instanceof ConfigError || (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`reprise: ${error.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`reprise: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);

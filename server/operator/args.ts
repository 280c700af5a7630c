// Command-line parsing for every `reprise` command: node's parseArgs, with its
// generic errors turned into ones that name the nearest real option, or let the
// option's own rule speak.
import { parseArgs } from "node:util";
import type { ParseArgsConfig } from "node:util";
import { ConfigError } from "./config.js";

/** parseArgs, whose errors are ConfigErrors that name an option and what to do. */
export function parseCommandLine<T extends ParseArgsConfig & { args: string[] }>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    const code = (error as { code?: string }).code;
    const known = Object.keys(config.options ?? {}).map((name) => `--${name}`);
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      const given = /'(-[^']*)'/.exec((error as Error).message)?.[1] ?? "";
      const nearest = nearestOption(given.split("=")[0]!, known);
      throw new ConfigError(`unknown option ${given}; ${nearest ? `did you mean ${nearest}?` : `the options are ${known.join(", ")}`}`);
    }
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && /argument is ambiguous/.test((error as Error).message)) {
      // "--retries -1": parseArgs will not take a value that starts with a dash
      // unless it is written --retries=-1. Unless that value is an option
      // itself, read it so, and let the command's own check name the rule.
      const option = /'(--[^' ]+)/.exec((error as Error).message)?.[1] ?? "";
      const at = config.args.indexOf(option);
      const value = config.args[at + 1];
      if (at >= 0 && value !== undefined && !known.includes(value.split("=")[0]!)) {
        return parseCommandLine({ ...config, args: [...config.args.slice(0, at), `${option}=${value}`, ...config.args.slice(at + 2)] });
      }
      throw new ConfigError(`${option}: needs a value`);
    }
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" || code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
      throw new ConfigError((error as Error).message.split("\n")[0]!);
    }
    throw error;
  }
}

/** The known option closest to `given` by edit distance, if it is close enough to be a typo. */
function nearestOption(given: string, known: readonly string[]): string | undefined {
  let best: { option: string; distance: number } | undefined;
  for (const option of known) {
    const distance = editDistance(given, option);
    if (!best || distance < best.distance) best = { option, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(given.length / 4)) ? best.option : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

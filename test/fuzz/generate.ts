// Generates random protobuf messages from a descriptor: boundary and random
// numbers, empty, odd and enormous strings, wrong enum numbers, forged lease
// tokens, nested messages and absent fields. Seeded, so a failure replays.
import { ScalarType, create } from "@bufbuild/protobuf";
import type { DescField, DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";

export type Random = () => number;

/**
 * How many more bytes of strings and bytes one message may get. Enormous
 * values are drawn only while the budget lasts, so a message stays a few MiB
 * at most (a 1200-entry list of 300 KB strings would otherwise be 360 MB).
 */
interface Budget {
  bytes: number;
}

const MESSAGE_BUDGET = 3 * 1024 * 1024;

/** mulberry32: small, fast and good enough to drive a fuzzer. */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(random: Random, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
const int = (random: Random, max: number) => Math.floor(random() * max);

const ODD_STRINGS = ["", " ", "a", "send_notification", "x y", "tab\there", "nul\u0000byte", "ünïcödé", "🙂", "\u200b", "\n", "-", "../../etc/passwd", "%s%n", "DROP TABLE executions;"];

function randomString(random: Random, budget: Budget): string {
  const roll = random();
  if (roll < 0.5) return pick(random, ODD_STRINGS);
  if (roll < 0.97 || budget.bytes < 300_000) {
    const text = Array.from({ length: int(random, 300) }, () => String.fromCodePoint(pick(random, [32 + int(random, 95), int(random, 0x2fff), 0x1f600 + int(random, 80)]))).join("");
    budget.bytes -= text.length * 3;
    return text;
  }
  const length = pick(random, [257, 1025, 70_000, 300_000]);
  budget.bytes -= length;
  return "z".repeat(length);
}

function randomBytes(random: Random, budget: Budget): Uint8Array {
  const roll = random();
  if (roll < 0.3) {
    // Shaped like a lease token: a small attempt id and a random secret.
    const token = new Uint8Array(24);
    token[7] = int(random, 64);
    for (let i = 8; i < 24; i++) token[i] = int(random, 256);
    return token;
  }
  const length = roll < 0.97 || budget.bytes < 2 * 1024 * 1024 ? int(random, 64) : pick(random, [1024 * 1024 + 1, 2 * 1024 * 1024]);
  budget.bytes -= length;
  const bytes = new Uint8Array(length);
  for (let i = 0; i < Math.min(length, 4096); i++) bytes[i] = int(random, 256);
  return bytes;
}

const INT32 = [0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 7, 1000, 1001, 60, 100];
const UINT32 = [0, 1, 2 ** 32 - 1, 2 ** 31, 10_000, 10_001, 1000, 1001, 5];
const INT64 = [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 31_536_000n, 31_536_001n, 59n, 60n, 61n, 3600n, 3601n];

function scalar(random: Random, type: ScalarType, budget: Budget): unknown {
  const boundary = random() < 0.6;
  switch (type) {
    case ScalarType.STRING:
      return randomString(random, budget);
    case ScalarType.BYTES:
      return randomBytes(random, budget);
    case ScalarType.BOOL:
      return random() < 0.5;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return pick(random, [0, -0, 1.5, -1e308, 1e308, Number.NaN, Number.POSITIVE_INFINITY]);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return boundary ? pick(random, INT32) : int(random, 2 ** 32) - 2 ** 31;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return boundary ? pick(random, UINT32) : int(random, 2 ** 32);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return boundary ? pick(random, INT64.filter((v) => v >= 0n)) : BigInt(int(random, 2 ** 53));
    default:
      return boundary ? pick(random, INT64) : BigInt(int(random, 2 ** 53) - 2 ** 52);
  }
}

function enumNumber(random: Random, values: readonly { number: number }[]): number {
  return random() < 0.7 ? pick(random, values).number : pick(random, [-1, 99, 2 ** 31 - 1, 8]);
}

function single(random: Random, field: DescField, depth: number, budget: Budget): unknown {
  switch (field.fieldKind) {
    case "scalar":
      return scalar(random, field.scalar, budget);
    case "enum":
      return enumNumber(random, field.enum.values);
    case "message":
      return randomMessage(random, field.message, depth + 1, budget);
    default:
      throw new Error(`not a singular field: ${field.name}`);
  }
}

function value(random: Random, field: DescField, depth: number, budget: Budget): unknown {
  switch (field.fieldKind) {
    case "list": {
      const count = random() < 0.9 ? int(random, 4) : int(random, depth === 0 ? 1200 : 3);
      return Array.from({ length: count }, () =>
        field.listKind === "scalar" ? scalar(random, field.scalar, budget) : field.listKind === "enum" ? enumNumber(random, field.enum.values) : randomMessage(random, field.message, depth + 1, budget),
      );
    }
    case "map": {
      const entries = Array.from({ length: random() < 0.9 ? int(random, 3) : 70 }, (_, i) => [
        `${randomString(random, budget).slice(0, 200)}${i}`,
        field.mapKind === "scalar" ? scalar(random, field.scalar, budget) : field.mapKind === "enum" ? enumNumber(random, field.enum.values) : randomMessage(random, field.message, depth + 1, budget),
      ]);
      return Object.fromEntries(entries);
    }
    default:
      return single(random, field, depth, budget);
  }
}

/** A random message of `schema`; each field is absent about a third of the time. */
export function randomMessage<D extends DescMessage>(random: Random, schema: D, depth = 0, budget: Budget = { bytes: MESSAGE_BUDGET }): MessageShape<D> {
  const init: Record<string, unknown> = {};
  if (depth < 4) {
    for (const member of schema.members) {
      if (random() < 0.35) continue;
      if (member.kind === "oneof") {
        const field = pick(random, member.fields);
        init[member.localName] = { case: field.localName, value: single(random, field, depth, budget) };
      } else {
        init[member.localName] = value(random, member, depth, budget);
      }
    }
  }
  return create(schema, init as MessageInitShape<D>);
}

/** Bytes that are usually not a valid protobuf encoding at all. */
export function garbage(random: Random): Buffer {
  const bytes = Buffer.alloc(int(random, 200) + 1);
  for (let i = 0; i < bytes.length; i++) bytes[i] = int(random, 256);
  // Start with a length-delimited field whose length runs past the end.
  if (bytes.length >= 5 && random() < 0.5) bytes.set([0x0a, 0xff, 0xff, 0xff, 0x0f], 0);
  return bytes;
}

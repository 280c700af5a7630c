// The wire encoder and decoder (proto/ts/src/encode.ts, decode.ts) against
// protobuf-es's toBinary and fromBinary: the same bytes and the same messages
// for every message type of the Reprise protos, with random values of every
// field, init objects as well as messages, corrupted input, and the fallbacks.
import { ScalarType, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescField, DescMessage } from "@bufbuild/protobuf";
import { DurationSchema, FloatValueSchema, StructSchema, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, test } from "vitest";
import { decodeMessage, decoderCovers } from "../proto/ts/src/decode.js";
import { encodeMessage, encoderCovers } from "../proto/ts/src/encode.js";
import { PayloadSchema, file_reprise_v1_execution_service, file_reprise_v1_types, file_reprise_v1_worker_service } from "@reprise/wire";

const SCHEMAS: DescMessage[] = [
  ...[file_reprise_v1_types, file_reprise_v1_execution_service, file_reprise_v1_worker_service].flatMap((file) => file.messages),
  TimestampSchema,
  DurationSchema,
];

/** A small deterministic random source, so a failure can be replayed from its seed. */
function randomSource(seed: number) {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x100000000;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  return { next, int, pick };
}
type Random = ReturnType<typeof randomSource>;

const STRINGS = ["", "a", "bench", "é", "日本語", "🙂 emoji", "\u0000nul", "x".repeat(200), "lone \ud800 surrogate"];

function scalar(random: Random, type: ScalarType | undefined, zeroOften = true): unknown {
  const zero = zeroOften && random.int(4) === 0;
  switch (type ?? ScalarType.INT32) {
    case ScalarType.STRING:
      return zero ? "" : random.pick(STRINGS);
    case ScalarType.BYTES:
      return zero ? new Uint8Array() : Uint8Array.from({ length: random.pick([1, 3, 127, 128, 300]) }, () => random.int(256));
    case ScalarType.BOOL:
      return zero ? false : random.int(2) === 1;
    case ScalarType.INT32:
      return zero ? 0 : random.pick([1, 127, 128, 16_384, 2 ** 31 - 1, -1, -(2 ** 31), random.int(1000)]);
    case ScalarType.UINT32:
      return zero ? 0 : random.pick([1, 127, 128, 2 ** 28, 2 ** 32 - 1, random.int(1000)]);
    case ScalarType.INT64:
      return zero ? 0n : random.pick([1n, 1_732_400_000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n - 1n, -1n, -(2n ** 63n)]);
    case ScalarType.UINT64:
      return zero ? 0n : random.pick([1n, 2n ** 53n, 2n ** 64n - 1n]);
    case ScalarType.DOUBLE:
      return zero ? 0 : random.pick([0.5, 1, 2, 1.5e-7, -3.25, -0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.MAX_VALUE, Number.MIN_VALUE]);
    default:
      throw new Error(`no generator for scalar type ${type}`);
  }
}

function fieldValue(random: Random, field: DescField, depth: number): unknown {
  switch (field.fieldKind) {
    case "scalar":
      return scalar(random, field.scalar);
    case "enum":
      return random.pick(field.enum.values).number;
    case "message":
      return depth > 3 || random.int(3) === 0 ? undefined : randomMessage(random, field.message, depth + 1);
    case "list":
      return Array.from({ length: random.pick([0, 1, 2, 5]) }, () =>
        field.listKind === "message"
          ? randomMessage(random, field.message, depth + 1)
          : field.listKind === "enum"
            ? random.pick(field.enum.values).number
            : scalar(random, field.scalar, false),
      );
    case "map": {
      const map: Record<string, unknown> = {};
      for (let i = random.pick([0, 1, 3]); i > 0; i--) {
        const value = field.mapKind === "message" ? randomMessage(random, field.message, depth + 1) : scalar(random, field.scalar);
        map[String(scalar(random, field.mapKey, false))] = value;
      }
      return map;
    }
  }
}

function randomMessage(random: Random, schema: DescMessage, depth = 0): Record<string, unknown> {
  const message = create(schema) as unknown as Record<string, unknown>;
  for (const member of schema.members) {
    if (member.kind === "oneof") {
      const chosen = random.int(member.fields.length + 1);
      const field = member.fields[chosen];
      message[member.localName] = field ? { case: field.localName, value: fieldValue(random, field, depth) ?? create(field.message!) } : { case: undefined };
    } else {
      const value = fieldValue(random, member, depth);
      if (value !== undefined) message[member.localName] = value;
    }
  }
  return message;
}

describe("wire encoder", () => {
  test("encodes every message type of the protos exactly as toBinary does, over random values of every field", () => {
    expect(SCHEMAS.filter((schema) => !encoderCovers(schema)).map((schema) => schema.typeName)).toEqual([]);
    for (const schema of SCHEMAS) {
      for (let seed = 1; seed <= 300; seed++) {
        const message = randomMessage(randomSource(seed * 7919 + schema.typeName.length), schema);
        const expected = toBinary(schema, message as never);
        const actual = encodeMessage(schema, message as never);
        if (!Buffer.from(expected).equals(actual)) {
          throw new Error(`${schema.typeName}, seed ${seed}: expected ${Buffer.from(expected).toString("hex")}, got ${actual.toString("hex")}`);
        }
      }
    }
  });

  test("encodes an init object (no $typeName, fields left out) as toBinary encodes the message create() makes of it", () => {
    const schema = SCHEMAS.find((s) => s.typeName === "reprise.v1.SubmitBatchRequest")!;
    const init = {
      submissions: [
        { task: "bench", arguments: { data: new Uint8Array([123, 125]), contentType: "application/json" } },
        { task: "t", delay: { seconds: 5n }, labels: { tenant: "a", "": "" }, retryPolicy: { limit: 3, backoffMin: { nanos: 5 } } },
        {},
      ],
    };
    expect(encodeMessage(schema, init as never)).toEqual(Buffer.from(toBinary(schema, create(schema, init as never))));
  });

  test("what the encoder writes decodes, and the decoded message encodes to the same bytes", () => {
    const schema = SCHEMAS.find((s) => s.typeName === "reprise.v1.Execution")!;
    for (let seed = 1; seed <= 50; seed++) {
      const bytes = encodeMessage(schema, randomMessage(randomSource(seed), schema) as never);
      expect(encodeMessage(schema, fromBinary(schema, bytes))).toEqual(bytes);
    }
  });

  test("messages it does not cover go to toBinary: unknown fields, other field types, values out of range", () => {
    const timestamp = fromBinary(TimestampSchema, Uint8Array.from([0x08, 0x01, 0x98, 0x06, 0x05])); // seconds 1, then unknown field 99
    expect(timestamp.$unknown).toBeDefined();
    expect(encodeMessage(TimestampSchema, timestamp)).toEqual(Buffer.from(toBinary(TimestampSchema, timestamp)));

    // A float field (32-bit) is not covered; a double is.
    const float = create(FloatValueSchema, { value: 1.5 });
    expect(encoderCovers(FloatValueSchema)).toBe(false);
    expect(encodeMessage(FloatValueSchema, float)).toEqual(Buffer.from(toBinary(FloatValueSchema, float)));
    const struct = create(StructSchema, { fields: { n: { kind: { case: "numberValue", value: 1.5 } } } });
    expect(encoderCovers(StructSchema)).toBe(true);
    expect(encodeMessage(StructSchema, struct)).toEqual(Buffer.from(toBinary(StructSchema, struct)));

    const outOfRange = create(DurationSchema, { seconds: 1n, nanos: 0.5 });
    expect(() => encodeMessage(DurationSchema, outOfRange)).toThrow(/nanos/);
  });
});

/** What a call returned, or the message it threw: the decoder and fromBinary must agree on either. */
function outcome(run: () => unknown): { value: unknown } | { error: string } {
  try {
    return { value: run() };
  } catch (error) {
    return { error: String(error) };
  }
}

describe("wire decoder", () => {
  test("decodes every message type of the protos to exactly what fromBinary returns, over random values of every field", () => {
    expect(SCHEMAS.filter((schema) => !decoderCovers(schema)).map((schema) => schema.typeName)).toEqual([]);
    for (const schema of SCHEMAS) {
      for (let seed = 1; seed <= 300; seed++) {
        const bytes = Buffer.from(toBinary(schema, randomMessage(randomSource(seed * 104_729 + schema.typeName.length), schema) as never));
        const expected = fromBinary(schema, bytes);
        const actual = decodeMessage(schema, bytes);
        expect(actual, `${schema.typeName}, seed ${seed}, bytes ${bytes.toString("hex")}`).toStrictEqual(expected);
        // Same members, created in the same order.
        expect(Object.keys(actual)).toEqual(Object.keys(expected));
      }
    }
  });

  test("on corrupted input it returns what fromBinary returns, or throws what fromBinary throws", () => {
    let decoded = 0;
    for (const schema of SCHEMAS) {
      for (let seed = 1; seed <= 200; seed++) {
        const random = randomSource(seed * 15_485_863 + schema.typeName.length);
        const bytes = Buffer.from(toBinary(schema, randomMessage(random, schema) as never));
        // Flip, drop, insert or truncate a few bytes.
        for (let edits = 1 + random.int(3); edits > 0 && bytes.length > 0; edits--) {
          const at = random.int(bytes.length);
          const kind = random.int(3);
          if (kind === 0) bytes[at] = random.int(256);
          else if (kind === 1) bytes[at] = bytes[at]! ^ (1 << random.int(8));
          else bytes[at] = random.pick([0x00, 0x7f, 0x80, 0xff, 0xef]);
        }
        const cut = random.int(4) === 0 ? bytes.subarray(0, random.int(bytes.length + 1)) : bytes;
        const expected = outcome(() => fromBinary(schema, cut));
        const actual = outcome(() => decodeMessage(schema, cut));
        expect(actual, `${schema.typeName}, seed ${seed}, bytes ${cut.toString("hex")}`).toStrictEqual(expected);
        if ("value" in expected) decoded++;
      }
    }
    // Enough of the corrupted inputs still decode for the comparison to mean something.
    expect(decoded).toBeGreaterThan(500);
  });

  test("bytes fields are views of the input, as fromBinary gives them: Buffers from a Buffer, Uint8Arrays from a Uint8Array", () => {
    const schema = PayloadSchema;
    const bytes = toBinary(schema, create(schema, { data: new Uint8Array([1, 2, 3]), contentType: "x" }));
    expect(decodeMessage(schema, Buffer.from(bytes)).data).toBeInstanceOf(Buffer);
    const plain = decodeMessage(schema, new Uint8Array(bytes)).data;
    expect(plain).toStrictEqual(fromBinary(schema, new Uint8Array(bytes)).data);
  });
});

// The decoding half of encode.ts: reads the binary form of a message into the
// same plain object fromBinary returns (every implicit field at its zero value,
// oneofs as { case }, message fields absent until read), straight from the
// bytes and the field plans, without fromBinary's reflection.
//
// Whatever it does not read on its own is handed to fromBinary, which decodes
// it or throws its own error: unknown fields, field types outside the plans,
// wire types that do not match the field, overlong varints, truncated input,
// invalid UTF-8 and nesting past fromBinary's recursion limit.
import { fromBinary, protoInt64 } from "@bufbuild/protobuf";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { isUtf8 } from "node:buffer";
import { Kind, planOf, wireTypeOf } from "./encode.js";
import type { FieldPlan } from "./encode.js";

/** fromBinary's default recursion limit. */
const MAX_DEPTH = 100;

interface DecodePlan {
  typeName: string;
  /** The field plan for each field number. */
  byNumber: Map<number, FieldPlan>;
  /** Members with a zero value, in declaration order (the order fromBinary creates them in). */
  zero: { localName: string; zero: () => unknown }[];
}

class Fallback extends Error {}
const fallback = new Fallback();

const decodePlans = new Map<DescMessage, DecodePlan | null>();

function zeroOf(field: FieldPlan): () => unknown {
  if (field.shape === "list") return () => [];
  if (field.shape === "map") return () => ({});
  switch (field.kind) {
    case Kind.String:
      return () => "";
    case Kind.Bytes:
      return () => new Uint8Array(0);
    case Kind.Bool:
      return () => false;
    case Kind.Int64:
    case Kind.Uint64:
      return () => protoInt64.zero;
    default:
      return () => 0;
  }
}

function decodePlanOf(schema: DescMessage): DecodePlan | null {
  const known = decodePlans.get(schema);
  if (known !== undefined) return known;
  const fields = planOf(schema);
  // Only proto3-style messages are plain objects; maps are read with string keys only.
  const plain = schema.file.edition === 999 /* EDITION_PROTO3 */;
  if (fields === null || !plain || fields.some((f) => f.shape === "map" && f.mapKey !== Kind.String)) {
    decodePlans.set(schema, null);
    return null;
  }
  const byNumber = new Map(fields.map((field) => [field.number, field]));
  const zero: DecodePlan["zero"] = [];
  for (const member of schema.members) {
    if (member.kind === "oneof") zero.push({ localName: member.localName, zero: () => ({ case: undefined }) });
    else if (member.fieldKind !== "message") zero.push({ localName: member.localName, zero: zeroOf(byNumber.get(member.number)!) });
  }
  const plan = { typeName: schema.typeName, byNumber, zero };
  decodePlans.set(schema, plan);
  return plan;
}

// ---- reading ---------------------------------------------------------------

let input: Uint8Array = new Uint8Array(0);
let buf: Buffer = Buffer.alloc(0);
let pos = 0;

/** A varint of at most 5 bytes that fits in 32 bits, unsigned; longer ones go to fromBinary. */
function readVarint32(): number {
  let value = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (pos >= buf.length) throw fallback;
    const byte = buf[pos++]!;
    if (shift === 28 && byte > 0x0f) throw fallback;
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return value;
  }
  throw fallback;
}

/** A 64-bit varint as its low and high 32 bits. */
function readVarint64(): [number, number] {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw fallback;
    const byte = buf[pos++]!;
    const bits = byte & 0x7f;
    if (i < 4) lo |= bits << (7 * i);
    else if (i === 4) {
      lo |= (bits & 0x0f) << 28;
      hi |= bits >> 4;
    } else hi |= bits << (7 * i - 32);
    if (byte < 0x80) return [lo >>> 0, hi >>> 0];
  }
  throw fallback;
}

function readLength(end: number): number {
  const length = readVarint32();
  if (pos + length > end) throw fallback;
  return length;
}

function readValue(kind: Kind, end: number): unknown {
  switch (kind) {
    case Kind.String: {
      const length = readLength(end);
      // fromBinary's TextDecoder drops a leading byte order mark; leave that to it.
      if (length >= 3 && buf[pos] === 0xef && buf[pos + 1] === 0xbb && buf[pos + 2] === 0xbf) throw fallback;
      const value = buf.toString("utf8", pos, pos + length);
      if (value.includes("\ufffd") && !isUtf8(buf.subarray(pos, pos + length))) throw fallback;
      pos += length;
      return value;
    }
    case Kind.Bytes: {
      const length = readLength(end);
      // A view of the input, as fromBinary gives: a Buffer for a Buffer.
      const value = input.subarray(pos, pos + length);
      pos += length;
      return value;
    }
    case Kind.Bool: {
      const [lo, hi] = readVarint64();
      return lo !== 0 || hi !== 0;
    }
    case Kind.Int32:
      return readVarint32() | 0;
    case Kind.Uint32:
      return readVarint32();
    case Kind.Int64: {
      const [lo, hi] = readVarint64();
      return protoInt64.dec(lo, hi);
    }
    case Kind.Uint64: {
      const [lo, hi] = readVarint64();
      return protoInt64.uDec(lo, hi);
    }
    case Kind.Double: {
      if (pos + 8 > end) throw fallback;
      const value = buf.readDoubleLE(pos);
      pos += 8;
      return value;
    }
  }
}

function readMessage(plan: DecodePlan, end: number, depth: number, into?: Record<string, unknown>): Record<string, unknown> {
  if (depth > MAX_DEPTH) throw fallback;
  let message = into;
  if (message === undefined) {
    message = { $typeName: plan.typeName };
    for (const member of plan.zero) message[member.localName] = member.zero();
  }
  while (pos < end) {
    const tag = readVarint32();
    const field = plan.byNumber.get(tag >>> 3);
    const wireType = tag & 7;
    if (field === undefined) throw fallback;
    if (field.oneof !== undefined) {
      if (wireType !== expectedWireType(field)) throw fallback;
      const current = message[field.oneof] as { case: string | undefined; value?: unknown };
      const value =
        field.shape === "message"
          ? readNested(field, end, depth, current.case === field.localName ? (current.value as Record<string, unknown>) : undefined)
          : readValue(field.kind, end);
      message[field.oneof] = { case: field.localName, value };
      continue;
    }
    switch (field.shape) {
      case "scalar":
        if (wireType !== wireTypeOf(field.kind)) throw fallback;
        message[field.localName] = readValue(field.kind, end);
        break;
      case "message":
        if (wireType !== 2) throw fallback;
        message[field.localName] = readNested(field, end, depth, message[field.localName] as Record<string, unknown> | undefined);
        break;
      case "list": {
        const list = message[field.localName] as unknown[];
        if (field.message !== undefined) {
          if (wireType !== 2) throw fallback;
          list.push(readNested(field, end, depth, undefined));
        } else if (wireType === 2 && wireTypeOf(field.kind) !== 2) {
          // Packed.
          const length = readLength(end);
          const packedEnd = pos + length;
          while (pos < packedEnd) list.push(readValue(field.kind, packedEnd));
          if (pos !== packedEnd) throw fallback;
        } else {
          if (wireType !== wireTypeOf(field.kind)) throw fallback;
          list.push(readValue(field.kind, end));
        }
        break;
      }
      case "map": {
        if (wireType !== 2) throw fallback;
        const length = readLength(end);
        const entryEnd = pos + length;
        let key: unknown;
        let value: unknown;
        while (pos < entryEnd) {
          const entryTag = readVarint32();
          if (entryTag === ((1 << 3) | 2)) key = readValue(Kind.String, entryEnd);
          else if (typeof field.mapValue === "number" && entryTag === ((2 << 3) | wireTypeOf(field.mapValue))) value = readValue(field.mapValue, entryEnd);
          else if (typeof field.mapValue !== "number" && entryTag === ((2 << 3) | 2)) value = readNestedOf(field.schema!, entryEnd, depth, undefined);
          else throw fallback;
        }
        if (pos !== entryEnd) throw fallback;
        if (value === undefined) {
          if (typeof field.mapValue !== "number") throw fallback;
          value = zeroOf({ ...field, shape: "scalar", kind: field.mapValue })();
        }
        (message[field.localName] as Record<string, unknown>)[(key as string | undefined) ?? ""] = value;
        break;
      }
    }
  }
  if (pos !== end) throw fallback;
  return message;
}

function expectedWireType(field: FieldPlan): number {
  return field.shape === "message" ? 2 : wireTypeOf(field.kind);
}

function readNested(field: FieldPlan, end: number, depth: number, into: Record<string, unknown> | undefined): Record<string, unknown> {
  return readNestedOf(field.schema!, end, depth, into);
}

function readNestedOf(schema: DescMessage, end: number, depth: number, into: Record<string, unknown> | undefined): Record<string, unknown> {
  const plan = decodePlanOf(schema);
  if (plan === null) throw fallback;
  const length = readLength(end);
  return readMessage(plan, pos + length, depth + 1, into);
}

/** Whether messages of `schema` are decoded here rather than handed to fromBinary. */
export function decoderCovers(schema: DescMessage): boolean {
  return decodePlanOf(schema) !== null;
}

/** Decodes `bytes` exactly as fromBinary(schema, bytes) would, or throws as it would. */
export function decodeMessage<D extends DescMessage>(schema: D, bytes: Uint8Array): MessageShape<D> {
  const plan = decodePlanOf(schema);
  if (plan !== null) {
    input = bytes;
    buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    pos = 0;
    try {
      return readMessage(plan, buf.length, 0) as MessageShape<D>;
    } catch (error) {
      if (!(error instanceof Fallback)) throw error;
    } finally {
      input = buf = EMPTY;
    }
  }
  return fromBinary(schema, bytes);
}

const EMPTY = Buffer.alloc(0);

// A faster binary encoder for protobuf-es messages, compiled once per message
// type from its descriptor. toBinary walks each message through reflection and
// builds every nested message in a buffer of its own; this measures the whole
// message first and then writes it into one buffer. It writes exactly the
// bytes toBinary writes (fields by number, the same presence rules, map
// entries with both key and value), which test/encode.test.ts checks over
// every message of the Reprise protos.
//
// It covers the field types the Reprise protos use. A message type with any
// other (float, fixed-width and zigzag integers, groups, proto2 required
// fields), a message carrying unknown fields, or a value out of its type's
// range is handed to toBinary, which encodes it or throws its own error.
import { ScalarType, create, isMessage, protoInt64, toBinary } from "@bufbuild/protobuf";
import type { DescField, DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";

export const enum Kind {
  String,
  Bytes,
  Bool,
  Int32,
  Uint32,
  Int64,
  Uint64,
  Double,
}

const KIND_OF_SCALAR: Partial<Record<ScalarType, Kind>> = {
  [ScalarType.STRING]: Kind.String,
  [ScalarType.BYTES]: Kind.Bytes,
  [ScalarType.BOOL]: Kind.Bool,
  [ScalarType.INT32]: Kind.Int32,
  [ScalarType.UINT32]: Kind.Uint32,
  [ScalarType.INT64]: Kind.Int64,
  [ScalarType.UINT64]: Kind.Uint64,
  [ScalarType.DOUBLE]: Kind.Double,
};

/** One field, ready to measure and write (and, in decode.ts, to read). */
export interface FieldPlan {
  number: number;
  localName: string;
  /** The oneof's localName when the field is a member of one. */
  oneof: string | undefined;
  /** Proto3 `optional` (or a oneof member): written when set, even to its zero value. */
  explicit: boolean;
  shape: "scalar" | "message" | "list" | "map";
  /** The tag as varint bytes, with the wire type of one element (packed lists: length-delimited). */
  tag: number[];
  kind: Kind;
  packed: boolean;
  message: MessagePlan | undefined;
  /** The schema of `message`, or of a map's message values. */
  schema: DescMessage | undefined;
  /** Map keys and values: their kinds, and the value's message plan. */
  mapKey: Kind;
  mapValue: MessagePlan | Kind;
}

export type MessagePlan = FieldPlan[];

/** Thrown while measuring: this message goes to toBinary instead. */
class Unsupported extends Error {}
const unsupported = new Unsupported();

const plans = new Map<DescMessage, MessagePlan | null>();

function tagBytes(fieldNumber: number, wireType: number): number[] {
  const bytes: number[] = [];
  let value = (fieldNumber << 3) | wireType;
  while (value > 0x7f) {
    bytes.push((value & 0x7f) | 0x80);
    value >>>= 7;
  }
  bytes.push(value);
  return bytes;
}

function scalarKind(type: ScalarType | undefined): Kind | null {
  return KIND_OF_SCALAR[type ?? ScalarType.INT32] ?? null;
}

/** Length-delimited (2), 64-bit (1) or varint (0). */
export const wireTypeOf = (kind: Kind) => (kind === Kind.String || kind === Kind.Bytes ? 2 : kind === Kind.Double ? 1 : 0);

/** The plan of a message type, or null when it uses a field type this encoder leaves to toBinary. */
export function planOf(schema: DescMessage): MessagePlan | null {
  const known = plans.get(schema);
  if (known !== undefined) return known;
  const plan: MessagePlan = [];
  // In the map before its fields are planned, so that a recursive type finds itself.
  plans.set(schema, plan);
  for (const field of [...schema.fields].sort((a, b) => a.number - b.number)) {
    const planned = planField(field);
    if (planned === null) {
      plans.set(schema, null);
      return null;
    }
    plan.push(planned);
  }
  return plan;
}

/** Every plan is built here, so that all share one hidden class and the hot loops stay monomorphic. */
function fieldPlan(field: DescField, shape: FieldPlan["shape"], wireType: number, parts: Partial<Pick<FieldPlan, "kind" | "packed" | "message" | "mapKey" | "mapValue">>): FieldPlan {
  return {
    number: field.number,
    localName: field.localName,
    oneof: field.oneof?.localName,
    explicit: field.oneof !== undefined || field.presence === 1 /* EXPLICIT */,
    shape,
    tag: tagBytes(field.number, wireType),
    kind: parts.kind ?? Kind.Int32,
    packed: parts.packed ?? false,
    message: parts.message,
    schema: field.fieldKind === "message" || field.fieldKind === "list" || field.fieldKind === "map" ? field.message : undefined,
    mapKey: parts.mapKey ?? Kind.String,
    mapValue: parts.mapValue ?? Kind.String,
  };
}

function planField(field: DescField): FieldPlan | null {
  if (field.presence === 3 /* LEGACY_REQUIRED */) return null;
  switch (field.fieldKind) {
    case "scalar":
    case "enum": {
      const kind = field.fieldKind === "enum" ? Kind.Int32 : scalarKind(field.scalar);
      return kind === null ? null : fieldPlan(field, "scalar", wireTypeOf(kind), { kind });
    }
    case "message": {
      const message = field.delimitedEncoding ? null : planOf(field.message);
      return message && fieldPlan(field, "message", 2, { message });
    }
    case "list": {
      if (field.listKind === "message") {
        const message = field.delimitedEncoding ? null : planOf(field.message);
        return message && fieldPlan(field, "list", 2, { message });
      }
      const kind = field.listKind === "enum" ? Kind.Int32 : scalarKind(field.scalar);
      if (kind === null) return null;
      const packed = field.packed && wireTypeOf(kind) !== 2;
      return fieldPlan(field, "list", packed ? 2 : wireTypeOf(kind), { kind, packed });
    }
    case "map": {
      const mapKey = scalarKind(field.mapKey);
      const mapValue = field.mapKind === "message" ? planOf(field.message) : scalarKind(field.mapKind === "enum" ? undefined : field.scalar);
      return mapKey === null || mapValue === null ? null : fieldPlan(field, "map", 2, { mapKey, mapValue });
    }
  }
}

// ---- measuring -----------------------------------------------------------
// Sizes of nested messages and UTF-8 lengths of strings are recorded in the
// order they are met, and consumed in the same order while writing.

const lengths: number[] = [];
let next = 0;

function varintSize(value: number): number {
  if (value < 0x80) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x200000) return 3;
  if (value < 0x10000000) return 4;
  let size = 5;
  for (value = Math.floor(value / 0x800000000); value > 0; value = Math.floor(value / 0x80)) size++;
  return size;
}

/** A 64-bit value as a non-negative number when it fits in 53 bits, else as its two's-complement bigint. */
function int64Value(value: unknown, unsigned: boolean): number | bigint {
  if (typeof value === "bigint" && value >= 0n && value <= 0x1fffffffffffffn) return Number(value);
  if (typeof value !== "bigint" && typeof value !== "number" && typeof value !== "string") throw unsupported;
  const { lo, hi } = unsigned ? protoInt64.uEnc(value) : protoInt64.enc(value);
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

function bigVarintSize(value: bigint): number {
  let size = 1;
  while (value > 0x7fn) {
    value >>= 7n;
    size++;
  }
  return size;
}

function isZero(kind: Kind, value: unknown): boolean {
  switch (kind) {
    case Kind.String:
      return value === "" || value === undefined;
    case Kind.Bytes:
      return value === undefined || (value as Uint8Array).length === 0;
    case Kind.Bool:
      return value === false || value === undefined;
    case Kind.Int64:
    case Kind.Uint64:
      return value === undefined || value === 0n || value === 0 || value === "0";
    case Kind.Double:
      // -0 is written, as toBinary writes it.
      return value === undefined || Object.is(value, 0);
    default:
      return value === 0 || value === undefined;
  }
}

/** The encoded size of one value (no tag). */
function valueSize(kind: Kind, value: unknown): number {
  switch (kind) {
    case Kind.String: {
      if (typeof value !== "string") throw unsupported;
      const length = Buffer.byteLength(value);
      lengths.push(length);
      return varintSize(length) + length;
    }
    case Kind.Bytes:
      if (!(value instanceof Uint8Array)) throw unsupported;
      return varintSize(value.length) + value.length;
    case Kind.Bool:
      if (typeof value !== "boolean") throw unsupported;
      return 1;
    case Kind.Int32:
      if (typeof value !== "number" || (value | 0) !== value) throw unsupported;
      return value < 0 ? 10 : varintSize(value);
    case Kind.Uint32:
      if (typeof value !== "number" || value >>> 0 !== value) throw unsupported;
      return varintSize(value);
    case Kind.Int64:
    case Kind.Uint64: {
      const int = int64Value(value, kind === Kind.Uint64);
      return typeof int === "number" ? varintSize(int) : bigVarintSize(int);
    }
    case Kind.Double:
      if (typeof value !== "number") throw unsupported;
      return 8;
  }
}

/**
 * The value to write for a field, or undefined when nothing is written: a
 * oneof set to another case, a scalar at its zero value (implicit presence) or
 * unset (explicit presence), a message, list or map left out.
 */
function writtenValue(field: FieldPlan, message: Record<string, unknown>): unknown {
  let value: unknown;
  if (field.oneof !== undefined) {
    const oneof = message[field.oneof] as { case: string | undefined; value: unknown } | undefined;
    if (oneof?.case !== field.localName) return undefined;
    value = oneof.value;
  } else {
    value = message[field.localName];
  }
  if (field.shape === "scalar" && !field.explicit && isZero(field.kind, value)) return undefined;
  return value;
}

function messageSize(plan: MessagePlan, message: Record<string, unknown>): number {
  const unknown = message.$unknown as unknown[] | undefined;
  if (unknown !== undefined && unknown.length > 0) throw unsupported;
  let size = 0;
  for (const field of plan) {
    const value = writtenValue(field, message);
    if (value === undefined) continue;
    switch (field.shape) {
      case "scalar":
        size += field.tag.length + valueSize(field.kind, value);
        break;
      case "message":
        size += field.tag.length + nestedSize(field.message!, value);
        break;
      case "list": {
        if (!Array.isArray(value)) throw unsupported;
        if (value.length === 0) continue;
        if (field.message !== undefined) {
          for (const item of value) size += field.tag.length + nestedSize(field.message, item);
        } else if (field.packed) {
          const at = lengths.push(0) - 1;
          let body = 0;
          for (const item of value) body += valueSize(field.kind, item);
          lengths[at] = body;
          size += field.tag.length + varintSize(body) + body;
        } else {
          for (const item of value) size += field.tag.length + valueSize(field.kind, item);
        }
        break;
      }
      case "map": {
        if (typeof value !== "object" || value === null) throw unsupported;
        for (const key in value) {
          const at = lengths.push(0) - 1;
          let entry = 1 + valueSize(field.mapKey, mapKey(field.mapKey, key));
          const item = (value as Record<string, unknown>)[key];
          entry += 1 + (typeof field.mapValue === "number" ? valueSize(field.mapValue, item) : nestedSize(field.mapValue, item));
          lengths[at] = entry;
          size += field.tag.length + varintSize(entry) + entry;
        }
        break;
      }
    }
  }
  return size;
}

function nestedSize(plan: MessagePlan, value: unknown): number {
  if (typeof value !== "object" || value === null) throw unsupported;
  const at = lengths.push(0) - 1;
  const size = messageSize(plan, value as Record<string, unknown>);
  lengths[at] = size;
  return varintSize(size) + size;
}

/** Map keys are strings in JavaScript; numeric and boolean keys are converted back. */
function mapKey(kind: Kind, key: string): unknown {
  switch (kind) {
    case Kind.String:
      return key;
    case Kind.Bool:
      return key === "true";
    case Kind.Int64:
    case Kind.Uint64:
      return BigInt(key);
    default:
      return Number(key);
  }
}

// ---- writing ---------------------------------------------------------------

const EMPTY = Buffer.alloc(0);
let buf: Buffer = EMPTY;
let pos = 0;

function writeVarint(value: number): void {
  while (value > 0x7f) {
    buf[pos++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  buf[pos++] = value;
}

function writeBigVarint(value: bigint): void {
  while (value > 0x7fn) {
    buf[pos++] = Number(value & 0x7fn) | 0x80;
    value >>= 7n;
  }
  buf[pos++] = Number(value);
}

function writeTag(tag: number[]): void {
  for (let i = 0; i < tag.length; i++) buf[pos++] = tag[i]!;
}

function writeValue(kind: Kind, value: unknown): void {
  switch (kind) {
    case Kind.String: {
      const length = lengths[next++]!;
      writeVarint(length);
      pos += buf.write(value as string, pos, length, "utf8");
      return;
    }
    case Kind.Bytes: {
      const bytes = value as Uint8Array;
      writeVarint(bytes.length);
      buf.set(bytes, pos);
      pos += bytes.length;
      return;
    }
    case Kind.Bool:
      buf[pos++] = value ? 1 : 0;
      return;
    case Kind.Int32:
      if ((value as number) < 0) writeBigVarint(BigInt.asUintN(64, BigInt(value as number)));
      else writeVarint(value as number);
      return;
    case Kind.Uint32:
      writeVarint(value as number);
      return;
    case Kind.Int64:
    case Kind.Uint64: {
      const int = int64Value(value, kind === Kind.Uint64);
      if (typeof int === "number") writeVarint(int);
      else writeBigVarint(int);
      return;
    }
    case Kind.Double:
      pos = buf.writeDoubleLE(value as number, pos);
  }
}

function writeMessage(plan: MessagePlan, message: Record<string, unknown>): void {
  for (const field of plan) {
    const value = writtenValue(field, message);
    if (value === undefined) continue;
    switch (field.shape) {
      case "scalar":
        writeTag(field.tag);
        writeValue(field.kind, value);
        break;
      case "message":
        writeTag(field.tag);
        writeNested(field.message!, value);
        break;
      case "list": {
        const list = value as unknown[];
        if (list.length === 0) continue;
        if (field.message !== undefined) {
          for (const item of list) {
            writeTag(field.tag);
            writeNested(field.message, item);
          }
        } else if (field.packed) {
          writeTag(field.tag);
          writeVarint(lengths[next++]!);
          for (const item of list) writeValue(field.kind, item);
        } else {
          for (const item of list) {
            writeTag(field.tag);
            writeValue(field.kind, item);
          }
        }
        break;
      }
      case "map": {
        for (const key in value as Record<string, unknown>) {
          writeTag(field.tag);
          writeVarint(lengths[next++]!);
          buf[pos++] = (1 << 3) | wireTypeOf(field.mapKey);
          writeValue(field.mapKey, mapKey(field.mapKey, key));
          const item = (value as Record<string, unknown>)[key];
          if (typeof field.mapValue === "number") {
            buf[pos++] = (2 << 3) | wireTypeOf(field.mapValue);
            writeValue(field.mapValue, item);
          } else {
            buf[pos++] = (2 << 3) | 2;
            writeNested(field.mapValue, item);
          }
        }
        break;
      }
    }
  }
}

function writeNested(plan: MessagePlan, value: unknown): void {
  writeVarint(lengths[next++]!);
  writeMessage(plan, value as Record<string, unknown>);
}

/** Whether messages of `schema` are encoded here rather than handed to toBinary. */
export function encoderCovers(schema: DescMessage): boolean {
  return planOf(schema) !== null;
}

/**
 * Encodes `message` (a message of `schema`, or an init object of its shape)
 * exactly as toBinary(schema, create(schema, message)) would.
 */
export function encodeMessage<D extends DescMessage>(schema: D, message: MessageShape<D> | MessageInitShape<D>): Buffer {
  const plan = planOf(schema);
  if (plan !== null) {
    lengths.length = 0;
    try {
      const size = messageSize(plan, message as unknown as Record<string, unknown>);
      buf = Buffer.allocUnsafe(size);
      pos = 0;
      next = 0;
      writeMessage(plan, message as unknown as Record<string, unknown>);
      if (pos !== size) throw new Error(`${schema.typeName}: encoded ${pos} bytes, measured ${size}`);
      return buf;
    } catch (error) {
      if (!(error instanceof Unsupported)) throw error;
    } finally {
      buf = EMPTY;
    }
  }
  const bytes = toBinary(schema, isMessage(message, schema) ? message : create(schema, message as MessageInitShape<D>));
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

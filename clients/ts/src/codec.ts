// How arguments and results become Payload bytes. JSON by default; any codec
// that round-trips its own values can replace it, on both sides.

export interface Codec {
  /** The media type written into Payload.content_type, e.g. "application/json". */
  readonly contentType: string;
  encode(value: unknown): Uint8Array;
  /** `contentType` is the payload's own, so a codec can refuse what it cannot read. */
  decode(data: Uint8Array, contentType: string): unknown;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * JSON, as UTF-8. `undefined` (a handler that returns nothing) encodes as empty
 * bytes and decodes back to `undefined`, because JSON has no text for it.
 */
export const jsonCodec: Codec = {
  contentType: "application/json",
  encode(value) {
    const text = JSON.stringify(value);
    return text === undefined ? new Uint8Array() : encoder.encode(text);
  },
  decode(data) {
    return data.length === 0 ? undefined : (JSON.parse(decoder.decode(data)) as unknown);
  },
};

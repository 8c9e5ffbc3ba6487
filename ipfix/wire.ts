// The IPFIX message format (RFC 7011 §3) as both directions need it: the
// header and set constants the encoder writes and the decoder reads, and the
// big-endian writes of the encoder's message packer and record writers.

export const IPFIX_VERSION = 10;
export const MESSAGE_HEADER_BYTES = 16;
export const SET_HEADER_BYTES = 4;
/** Set ids (RFC 7011 §3.3.2); data sets carry their template's id, 256 and above. */
export const SetId = { TEMPLATE: 2, OPTIONS_TEMPLATE: 3 } as const;
export const FIRST_DATA_SET_ID = 256;
/**
 * The largest message the header's 16-bit length can say. A stream (TCP,
 * TLS, a file) carries messages of any size up to it; UDP's limit is its
 * own (DEFAULT_UDP_MAX_MESSAGE_BYTES in transport-udp.ts: the path MTU).
 */
export const MAX_MESSAGE_BYTES = 65_535;

/** Export time and sequence numbers are unsigned 32-bit and wrap (RFC 7011 §3.1). */
export const TWO_32 = 4294967296;

export function writeU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >> 8;
  b[o + 1] = v;
}

export function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/** A non-negative integer below 2^53 as a big-endian unsigned of `length` bytes. */
export function writeUnsigned(b: Uint8Array, o: number, length: number, v: number): void {
  let x = v;
  for (let i = length - 1; i >= 0; i--) {
    b[o + i] = x % 256;
    x = Math.floor(x / 256);
  }
}

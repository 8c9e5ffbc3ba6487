// Reads shared by the application-layer readers: big-endian integers at an
// offset and bytes as text, with no DataView or TextDecoder per call.

export function u16(buf: Uint8Array, at: number): number {
  return (buf[at]! << 8) | buf[at + 1]!;
}

export function u32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

/** buf[from, to) as Latin-1 text: every byte is one character, nothing can fail. Callers bound the length. */
export function latin1(buf: Uint8Array, from: number, to: number): string {
  return from >= to ? '' : String.fromCharCode.apply(null, buf.subarray(from, to) as unknown as number[]);
}

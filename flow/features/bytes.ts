// Reads shared by the application-layer readers: a big-endian u16 at an
// offset (a u32: flow/records.ts readU32BE) and bytes as text, with no
// DataView or TextDecoder per call.

export function u16(buf: Uint8Array, at: number): number {
  return (buf[at]! << 8) | buf[at + 1]!;
}

/** buf[from, to) as Latin-1 text: every byte is one character, nothing can fail. Callers bound the length. */
export function latin1(buf: Uint8Array, from: number, to: number): string {
  return from >= to ? '' : String.fromCharCode.apply(null, buf.subarray(from, to) as unknown as number[]);
}

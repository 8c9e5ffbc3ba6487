// A classic pcap file (little-endian, microseconds) of the given frames, for
// tests that let an independent reader (tshark) judge podflow's decoding.
import { concat } from './packets.ts';

/** The file's bytes: the 24-byte header for linkType, then one record per frame, a millisecond apart. */
export function pcapFile(linkType: number, frames: Uint8Array[], startSeconds = 1_700_000_000): Uint8Array {
  const header = new DataView(new ArrayBuffer(24));
  header.setUint32(0, 0xa1b2c3d4, true);
  header.setUint16(4, 2, true);
  header.setUint16(6, 4, true);
  header.setUint32(16, 65535, true);
  header.setUint32(20, linkType, true);
  const records = frames.map((frame, i) => {
    const r = new DataView(new ArrayBuffer(16));
    r.setUint32(0, startSeconds, true);
    r.setUint32(4, i * 1000, true);
    r.setUint32(8, frame.length, true);
    r.setUint32(12, frame.length, true);
    return concat(new Uint8Array(r.buffer), frame);
  });
  return concat(new Uint8Array(header.buffer), ...records);
}

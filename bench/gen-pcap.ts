// Writes a synthetic capture for the benchmarks: a classic little-endian pcap
// (Ethernet) of N packets spread over F bidirectional TCP and UDP flows between
// 198.18.0.0/15 addresses, interleaved, sizes from 64 to 1514 bytes, all within
// a window shorter than the idle timeout so every tool sees the same F flows.
// Deterministic (fixed-seed PRNG), so runs compare like with like.
import { openSync, writeSync, closeSync } from 'node:fs';
import { parseArgs } from 'node:util';

export interface GenerateOptions {
  path: string;
  packets: number;
  flows: number;
  /** Capture length of each packet; the wire length is kept in the record. */
  snaplen?: number;
  durationSeconds?: number;
}

function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

export function generatePcap(opts: GenerateOptions): void {
  const { path, packets, flows } = opts;
  const snaplen = opts.snaplen ?? 128;
  const durationUs = Math.round((opts.durationSeconds ?? 10) * 1e6);
  const random = xorshift32(0x9e3779b9);
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(1 << 20);
  let used = 0;
  const flush = () => {
    writeSync(fd, chunk, 0, used);
    used = 0;
  };

  chunk.writeUInt32LE(0xa1b2c3d4, 0);
  chunk.writeUInt16LE(2, 4);
  chunk.writeUInt16LE(4, 6);
  chunk.writeUInt32LE(0, 8);
  chunk.writeUInt32LE(0, 12);
  chunk.writeUInt32LE(65535, 16);
  chunk.writeUInt32LE(1, 20); // LINKTYPE_ETHERNET
  used = 24;

  const baseSeconds = 1_764_000_000;
  for (let i = 0; i < packets; i++) {
    const flow = random() % flows;
    const reverse = (random() & 3) === 0; // a quarter of packets are replies
    const tcp = flow % 5 !== 0;
    const wireLength = 64 + (random() % 1451);
    const captured = Math.min(wireLength, snaplen);
    if (used + 16 + captured > chunk.length) flush();
    const tsUs = Math.floor((i / packets) * durationUs);
    chunk.writeUInt32LE(baseSeconds + Math.floor(tsUs / 1e6), used);
    chunk.writeUInt32LE(tsUs % 1e6, used + 4);
    chunk.writeUInt32LE(captured, used + 8);
    chunk.writeUInt32LE(wireLength, used + 12);
    const frame = used + 16;
    chunk.fill(0, frame, frame + captured);
    // Ethernet: locally administered MACs, IPv4 ethertype.
    chunk.writeUInt16BE(0x0200, frame);
    chunk.writeUInt32BE(reverse ? 2 : 1, frame + 2);
    chunk.writeUInt16BE(0x0200, frame + 6);
    chunk.writeUInt32BE(reverse ? 1 : 2, frame + 8);
    chunk.writeUInt16BE(0x0800, frame + 12);
    const ip = frame + 14;
    const client = (198 << 24) | (18 << 16) | (flow >>> 8);
    const server = (198 << 24) | (19 << 16) | (flow & 0xff);
    chunk[ip] = 0x45;
    chunk.writeUInt16BE(wireLength - 14, ip + 2);
    chunk.writeUInt16BE(i & 0xffff, ip + 4);
    chunk[ip + 8] = 64;
    chunk[ip + 9] = tcp ? 6 : 17;
    chunk.writeUInt32BE((reverse ? server : client) >>> 0, ip + 12);
    chunk.writeUInt32BE((reverse ? client : server) >>> 0, ip + 16);
    const l4 = ip + 20;
    const clientPort = 1024 + (flow % 60000);
    const serverPort = tcp ? 443 : 53;
    chunk.writeUInt16BE(reverse ? serverPort : clientPort, l4);
    chunk.writeUInt16BE(reverse ? clientPort : serverPort, l4 + 2);
    if (tcp) {
      chunk[l4 + 12] = 0x50;
      chunk[l4 + 13] = 0x18; // PSH|ACK: mid-connection data, no SYN/FIN
    } else {
      chunk.writeUInt16BE(wireLength - 34, l4 + 4);
    }
    used += 16 + captured;
  }
  flush();
  closeSync(fd);
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      packets: { type: 'string', default: '1000000' },
      flows: { type: 'string', default: '10000' },
      snaplen: { type: 'string', default: '128' },
    },
  });
  if (!values.out) throw new Error('usage: gen-pcap.ts --out FILE [--packets N] [--flows N] [--snaplen N]');
  generatePcap({ path: values.out, packets: Number(values.packets), flows: Number(values.flows), snaplen: Number(values.snaplen) });
}

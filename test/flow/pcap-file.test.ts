import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hasRecordLayout, readCapture, readCaptureHeader, type PacketSink } from '../../flow/pcap-file.ts';
import { concat } from '../helpers/packets.ts';

interface Seen {
  linkType: number;
  bytes: number[];
  wirelen: number;
  timestampMicros: number;
}

function collect(): { sink: PacketSink; seen: Seen[] } {
  const seen: Seen[] = [];
  return {
    seen,
    sink: {
      packet(linkType, buf, offset, caplen, wirelen, timestampMicros) {
        seen.push({ linkType, bytes: [...buf.subarray(offset, offset + caplen)], wirelen, timestampMicros });
      },
    },
  };
}

/** A little writer of fixed-width fields in either byte order. */
class Writer {
  readonly #parts: number[] = [];
  readonly #le: boolean;
  constructor(le: boolean) {
    this.#le = le;
  }
  u16(n: number): this {
    const b = [(n >> 8) & 0xff, n & 0xff];
    this.#parts.push(...(this.#le ? b.reverse() : b));
    return this;
  }
  u32(n: number): this {
    const b = [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
    this.#parts.push(...(this.#le ? b.reverse() : b));
    return this;
  }
  bytes(b: ArrayLike<number>): this {
    this.#parts.push(...Array.from(b));
    return this;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.#parts);
  }
}

const frameA = Uint8Array.of(1, 2, 3, 4, 5);
const frameB = Uint8Array.of(9, 8, 7);

function classicPcap(le: boolean, nanoseconds: boolean, linkType: number): Uint8Array {
  const w = new Writer(le).u32(nanoseconds ? 0xa1b23c4d : 0xa1b2c3d4).u16(2).u16(4).u32(0).u32(0).u32(65535).u32(linkType);
  w.u32(1_700_000_000).u32(nanoseconds ? 123_456_789 : 123_456).u32(frameA.length).u32(60).bytes(frameA);
  w.u32(1_700_000_001).u32(nanoseconds ? 999_999_999 : 999_999).u32(frameB.length).u32(frameB.length).bytes(frameB);
  return w.done();
}

for (const le of [true, false]) {
  for (const nanoseconds of [false, true]) {
    test(`reads classic pcap, ${le ? 'little' : 'big'}-endian, ${nanoseconds ? 'nano' : 'micro'}second timestamps`, () => {
      const file = classicPcap(le, nanoseconds, 113);
      assert.deepEqual(readCaptureHeader(file), { format: 'pcap', littleEndian: le, nanoseconds, linkType: 113 });
      const { sink, seen } = collect();
      const stats = readCapture(file, sink);
      assert.deepEqual(stats, { format: 'pcap', packets: 2, truncated: 0, corruptBlocks: 0, unknownInterface: 0, skippedBlocks: 0 });
      assert.deepEqual(seen, [
        { linkType: 113, bytes: [...frameA], wirelen: 60, timestampMicros: 1_700_000_000_123_456 },
        { linkType: 113, bytes: [...frameB], wirelen: 3, timestampMicros: 1_700_000_001_999_999 },
      ]);
    });
  }
}

test('offers the batch fast path only for little-endian microsecond pcap', () => {
  assert.equal(hasRecordLayout(readCaptureHeader(classicPcap(true, false, 1))!), true);
  assert.equal(hasRecordLayout(readCaptureHeader(classicPcap(false, false, 1))!), false);
  assert.equal(hasRecordLayout(readCaptureHeader(classicPcap(true, true, 1))!), false);
});

test('ignores the FCS bits above the link type in the pcap header', () => {
  const file = classicPcap(true, false, 1);
  file[23] = 0x14; // FCS present, 4 bytes
  assert.equal(readCaptureHeader(file)!.linkType, 1);
});

test('counts a classic pcap cut off inside its last record and keeps the whole ones', () => {
  const file = classicPcap(true, false, 1);
  for (const cut of [2, 10]) {
    const { sink, seen } = collect();
    const stats = readCapture(file.subarray(0, file.length - cut), sink);
    assert.deepEqual([stats.packets, stats.truncated, seen.length], [1, 1, 1]);
  }
});

/** A pcapng block: type, total length, body padded to 4, total length again. */
function block(w: () => Writer, type: number, body: Uint8Array): Uint8Array {
  const padded = concat(body, new Uint8Array((4 - (body.length % 4)) % 4));
  const length = 12 + padded.length;
  return w().u32(type).u32(length).bytes(padded).u32(length).done();
}

function pcapng(le: boolean): { file: Uint8Array; w: () => Writer } {
  const w = () => new Writer(le);
  const shb = block(w, 0x0a0d0d0a, w().u32(0x1a2b3c4d).u16(1).u16(0).u32(0xffffffff).u32(0xffffffff).done());
  // Interface 0: Ethernet, default resolution (µs). Interface 1: raw IP, if_tsresol 9 (ns), if_tsoffset 10 s.
  const idb0 = block(w, 1, w().u16(1).u16(0).u32(0).done());
  const idb1 = block(w, 1, w().u16(101).u16(0).u32(0).u16(9).u16(1).bytes([9, 0, 0, 0]).u16(14).u16(8).u32(le ? 10 : 0).u32(le ? 0 : 10).u16(0).u16(0).done());
  const epb0 = block(w, 6, w().u32(0).u32(0x0006_0a24).u32(0x1820_2240).u32(frameA.length).u32(64).bytes(frameA).done());
  const ns = 1_700_000_000_250_000_000n;
  const epb1 = block(w, 6, w().u32(1).u32(Number(ns >> 32n)).u32(Number(ns & 0xffffffffn)).u32(frameB.length).u32(3).bytes(frameB).done());
  const spb = block(w, 3, w().u32(4).bytes(frameA).done());
  const opb = block(w, 2, w().u16(1).u16(0).u32(Number(ns >> 32n)).u32(Number(ns & 0xffffffffn)).u32(frameB.length).u32(3).bytes(frameB).done());
  const statistics = block(w, 5, w().u32(0).u32(0).u32(0).done());
  return { file: concat(shb, idb0, idb1, epb0, statistics, epb1, spb, opb), w };
}

for (const le of [true, false]) {
  test(`reads pcapng, ${le ? 'little' : 'big'}-endian: per-interface link type and timestamp resolution, EPB, SPB, OPB`, () => {
    const { file } = pcapng(le);
    assert.equal(readCaptureHeader(file)!.format, 'pcapng');
    const { sink, seen } = collect();
    const stats = readCapture(file, sink);
    assert.deepEqual(stats, { format: 'pcapng', packets: 4, truncated: 0, corruptBlocks: 0, unknownInterface: 0, skippedBlocks: 1 });
    // 0x00060a24_18202240 µs = 1_700_000_000_123_456 µs.
    assert.deepEqual(seen, [
      { linkType: 1, bytes: [...frameA], wirelen: 64, timestampMicros: 1_700_000_000_123_456 },
      { linkType: 101, bytes: [...frameB], wirelen: 3, timestampMicros: 1_700_000_010_250_000 },
      // A simple packet block has no timestamp: it takes the latest one; its
      // captured length is the original length when the block holds more.
      { linkType: 1, bytes: [...frameA.subarray(0, 4)], wirelen: 4, timestampMicros: 1_700_000_010_250_000 },
      { linkType: 101, bytes: [...frameB], wirelen: 3, timestampMicros: 1_700_000_010_250_000 },
    ]);
  });
}

test('starts afresh at a second pcapng section, which may switch byte order', () => {
  const { file: little } = pcapng(true);
  const { file: big } = pcapng(false);
  const { sink, seen } = collect();
  assert.equal(readCapture(concat(little, big), sink).packets, 8);
  assert.deepEqual(seen.map((s) => s.linkType), [1, 101, 1, 101, 1, 101, 1, 101]);
});

test('skips pcapng packets of interfaces never described, and counts them', () => {
  const { w } = pcapng(true);
  const shb = block(w, 0x0a0d0d0a, w().u32(0x1a2b3c4d).u16(1).u16(0).u32(0xffffffff).u32(0xffffffff).done());
  const epb = block(w, 6, w().u32(3).u32(0).u32(0).u32(frameA.length).u32(5).bytes(frameA).done());
  const { sink, seen } = collect();
  assert.equal(readCapture(concat(shb, epb), sink).unknownInterface, 1);
  assert.equal(seen.length, 0);
});

test('counts a pcapng file cut off inside its last block and keeps the whole blocks', () => {
  const { file } = pcapng(true);
  const { sink, seen } = collect();
  const stats = readCapture(file.subarray(0, file.length - 6), sink);
  assert.deepEqual([stats.truncated, stats.packets, seen.length], [1, 3, 3]);
});

test('counts a pcapng block with an impossible length as corrupt and stops there', () => {
  const { file } = pcapng(true);
  const damaged = Uint8Array.from(file);
  const firstIdb = 28; // after the 28-byte section header block
  damaged.set([7, 0, 0, 0], firstIdb + 4); // a length not a multiple of 4
  const { sink, seen } = collect();
  assert.deepEqual([readCapture(damaged, sink).corruptBlocks, seen.length], [1, 0]);
});

test('refuses bytes that are not a capture file with PODFLOW_ERR_FLOW_NOT_A_CAPTURE', () => {
  const { sink } = collect();
  for (const bytes of [new Uint8Array(0), new TextEncoder().encode('hello, this is not a capture file')]) {
    assert.equal(readCaptureHeader(bytes), null);
    assert.throws(() => readCapture(bytes, sink), { code: 'PODFLOW_ERR_FLOW_NOT_A_CAPTURE' });
  }
});

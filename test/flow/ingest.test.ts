import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { PacketDecoder } from '../../flow/decode.ts';
import { CaptureFileIngest, PacketIngest } from '../../flow/ingest.ts';
import { FlowMeter } from '../../flow/meter.ts';
import { LinkType, RECORD_HEADER_BYTES } from '../../flow/records.ts';
import type { FlowRecord } from '../../flow/types.ts';
import { corpusDir } from '../helpers/corpus.ts';
import { concat, ethernet, ipv4, udp } from '../helpers/packets.ts';

/** One record in the batch layout: LE ts_sec, ts_usec, caplen, wirelen, then the bytes. */
function record(seconds: number, microseconds: number, frame: Uint8Array, wirelen = frame.length): Uint8Array {
  const header = new DataView(new ArrayBuffer(RECORD_HEADER_BYTES));
  header.setUint32(0, seconds, true);
  header.setUint32(4, microseconds, true);
  header.setUint32(8, frame.length, true);
  header.setUint32(12, wirelen, true);
  return concat(new Uint8Array(header.buffer), frame);
}

function setup() {
  const flows: FlowRecord[] = [];
  const meter = new FlowMeter({ onFlow: (r) => flows.push(r) });
  const ingest = new PacketIngest(new PacketDecoder(), meter);
  return { flows, meter, ingest };
}

const query = ethernet(0x0800, ipv4({ protocol: 17, source: '198.18.0.1', destination: '198.18.0.2', payload: udp(5353, 53, 20) }));
const answer = ethernet(0x0800, ipv4({ protocol: 17, source: '198.18.0.2', destination: '198.18.0.1', payload: udp(53, 5353, 60) }));
const arp = ethernet(0x0806, new Uint8Array(28));

test('decodes and meters every record of a batch, with timestamps in milliseconds', () => {
  const { flows, meter, ingest } = setup();
  const batch = concat(record(1_700_000_000, 1_500, query), record(1_700_000_000, 2_999, answer, 200), record(1_700_000_001, 0, arp));
  assert.equal(ingest.ingest(7, LinkType.ETHERNET, batch, 0, batch.length), 3);
  assert.deepEqual(ingest.stats, { buffers: 3, packets: 3, bytes: query.length + 200 + arp.length, metered: 2, truncatedRecords: 0 });
  meter.flush();
  assert.equal(flows.length, 1);
  const r = flows[0]!;
  assert.deepEqual(
    [r.observationPointId, r.packetDeltaCount, r.reversePacketDeltaCount, r.octetDeltaCount, r.reverseOctetDeltaCount],
    [7, 1, 1, 48, 88],
  );
  assert.deepEqual([r.flowStartMilliseconds, r.flowEndMilliseconds], [1_700_000_000_001, 1_700_000_000_002]);
});

test('reads only the records between start and end', () => {
  const { ingest } = setup();
  const first = record(1, 0, query);
  const batch = concat(new Uint8Array(5), first, record(2, 0, answer));
  assert.equal(ingest.ingest(1, LinkType.ETHERNET, batch, 5, 5 + first.length), 1);
  assert.equal(ingest.stats.packets, 1);
});

test('counts a record cut short at the end of a batch and returns the whole records consumed', () => {
  const whole = record(1, 0, query);
  for (const cut of [3, RECORD_HEADER_BYTES + 4]) {
    const { ingest } = setup();
    const batch = concat(whole, record(2, 0, answer)).subarray(0, whole.length + cut);
    assert.equal(ingest.ingest(1, LinkType.ETHERNET, batch, 0, batch.length), 1);
    assert.deepEqual([ingest.stats.packets, ingest.stats.truncatedRecords], [1, 1]);
  }
});

test('ingests a classic little-endian pcap file through the batch path, others record by record, alike', () => {
  const records = concat(record(1_700_000_000, 1_000, query), record(1_700_000_000, 5_000, answer));
  const fileHeader = new DataView(new ArrayBuffer(24));
  fileHeader.setUint32(0, 0xa1b2c3d4, true);
  fileHeader.setUint32(20, LinkType.ETHERNET, true);
  const little = concat(new Uint8Array(fileHeader.buffer), records);
  // The same packets as a big-endian file.
  const big = Uint8Array.from(little);
  const swap = (at: number) => big.set(little.slice(at, at + 4).reverse(), at);
  swap(0);
  swap(20);
  for (let at = 24; at < big.length; at += RECORD_HEADER_BYTES + new DataView(little.buffer).getUint32(at + 8, true)) {
    for (let i = 0; i < 16; i += 4) swap(at + i);
  }
  const results = [little, big].map((file) => {
    const { flows, meter, ingest } = setup();
    const stats = ingest.ingestCapture(1, file);
    meter.flush();
    return { stats, flows };
  });
  assert.deepEqual(results[0], results[1]);
  assert.equal(results[0]!.stats.packets, 2);
  assert.equal(results[0]!.flows.length, 1);
});

test('meters a capture read in small chunks exactly as one read whole', () => {
  const files = [
    'ipfixprobe/tests/functional/inputs/mixed.pcap', // classic little-endian: the batch path
    'ipfixprobe/tests/functional/inputs/wg.pcap', // pcapng
    'nDPI/tests/cfgs/default/pcap/fuzz-2021-10-13.pcap', // nanosecond pcap cut off in its last record
  ];
  for (const path of files) {
    const bytes = readFileSync(corpusDir + path);
    const whole = setup();
    const wholeStats = whole.ingest.ingestCapture(1, bytes);
    whole.meter.flush();
    for (const chunkBytes of [24, 100, 1500]) {
      const chunked = setup();
      const file = new CaptureFileIngest(chunked.ingest, 1);
      // The replay command's loop: append a chunk, read, keep the rest.
      let pending: Uint8Array = new Uint8Array(0);
      for (let at = 0; at < bytes.length; at += chunkBytes) {
        pending = concat(pending, bytes.subarray(at, at + chunkBytes));
        pending = pending.slice(file.read(pending, 0, pending.length));
      }
      const stats = file.finish(pending.length);
      chunked.meter.flush();
      assert.deepEqual(stats, wholeStats, `${path} in ${chunkBytes}-byte chunks`);
      assert.deepEqual(chunked.flows, whole.flows, `${path} in ${chunkBytes}-byte chunks`);
    }
  }
});

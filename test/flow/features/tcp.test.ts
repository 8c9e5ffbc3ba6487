// The TCP tracker's rules (flow/features/tcp.ts, docs/tcp.md) on hand-built
// segments, through the real decoder. End to end against the kernel's own
// counters: test/netns/tcp-performance.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PacketDecoder } from '../../../flow/decode.ts';
import { MAX_HOLES, TcpTracker } from '../../../flow/features/tcp.ts';
import { LinkType, VNET_HEADER, VNET_HEADER_BYTES } from '../../../flow/records.ts';
import { concat, ethernet, ipv4, ipv6, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, tcpSegment, type TcpSegmentOptions } from '../../helpers/packets.ts';

const MSS_1460 = [2, 4, 0x05, 0xb4];
const SACK_PERMITTED = [4, 2];
const TIMESTAMPS = [8, 10, 0, 0, 0, 1, 0, 0, 0, 0];
const NOP = 1;

const GSO_TCPV4 = 1;

interface Send extends Omit<TcpSegmentOptions, 'sourcePort' | 'destinationPort'> {
  /** Microseconds. */
  at?: number;
  ttl?: number;
  /** Send as a GSO super-packet of this gso_size (payloadBytes is the whole). */
  gsoSize?: number;
  /** Cut the captured frame to this many bytes. */
  snaplen?: number;
}

/** One flow (slot 0) between a client 198.18.0.1:40000 (forward) and a server 198.18.0.2:80. */
function flow() {
  const decoder = new PacketDecoder();
  const tracker = new TcpTracker(4);
  const send = (direction: 0 | 1, s: Send) => {
    const [source, destination] = direction === 0 ? ['198.18.0.1', '198.18.0.2'] : ['198.18.0.2', '198.18.0.1'];
    const [sourcePort, destinationPort] = direction === 0 ? [40000, 80] : [80, 40000];
    const frame = ethernet(0x0800, ipv4({ protocol: 6, source, destination, ttl: s.ttl ?? 64, payload: tcpSegment({ ...s, sourcePort, destinationPort }) }));
    const header = new Uint8Array(VNET_HEADER_BYTES);
    if (s.gsoSize !== undefined) {
      header[1] = GSO_TCPV4;
      header[4] = s.gsoSize & 0xff;
      header[5] = s.gsoSize >> 8;
    }
    const data = concat(header, frame.subarray(0, s.snaplen ?? 256));
    assert.ok(decoder.decode(LinkType.ETHERNET | VNET_HEADER, data, 0, data.length, frame.length));
    decoder.packet.timestampMicros = s.at ?? 0;
    tracker.packet(0, direction, decoder.packet);
  };
  return { tracker, send, fields: () => tracker.fields(0) };
}

/** A handshake at t = 0 with the client's ISN 1000 and the server's 5000; data follows at seq 1001 and 5001. */
function connected() {
  const f = flow();
  f.send(0, { flags: TCP_SYN, seq: 1000 });
  f.send(1, { flags: TCP_SYN | TCP_ACK, seq: 5000, ack: 1001 });
  f.send(0, { flags: TCP_ACK, seq: 1001, ack: 5001 });
  return f;
}

test('the handshake is split at the observation point: SYN to SYN/ACK, SYN/ACK to ACK', () => {
  const f = flow();
  f.send(0, { flags: TCP_SYN, seq: 1000, at: 1_000_000, options: [...MSS_1460, ...SACK_PERMITTED, ...TIMESTAMPS, NOP, 3, 3, 7] });
  f.send(1, { flags: TCP_SYN | TCP_ACK, seq: 5000, ack: 1001, at: 1_020_250, options: [2, 4, 0x05, 0x78, NOP, 3, 3, 9] });
  // An ACK of something else is not the handshake's.
  f.send(0, { flags: TCP_ACK, seq: 1001, ack: 4000, at: 1_020_300 });
  f.send(0, { flags: TCP_ACK, seq: 1001, ack: 5001, at: 1_020_340 });
  const t = f.fields();
  assert.equal(t.synToSynAckMicros, 20_250);
  assert.equal(t.synAckToAckMicros, 90);
  assert.equal(t.clientDirection, 'forward');
  assert.deepEqual([t.forward.maximumSegmentSize, t.forward.windowScale], [1460, 7]);
  assert.deepEqual([t.reverse.maximumSegmentSize, t.reverse.windowScale], [1400, 9]);
  assert.deepEqual(t.forward.optionKinds, [1, 2, 3, 4, 8]);
  assert.deepEqual(t.reverse.optionKinds, [1, 2, 3]);
  // A bare SYN first: its IP length (20 + 20 + 20 bytes of options), as ipfixprobe's TCP_SYN_SIZE.
  assert.equal(t.synSize, 60);
});

test('a retransmitted SYN restarts the handshake clock and counts as a retransmitted segment', () => {
  const f = flow();
  f.send(0, { flags: TCP_SYN, seq: 1000, at: 0 });
  f.send(0, { flags: TCP_SYN, seq: 1000, at: 1_000_000 });
  f.send(1, { flags: TCP_SYN | TCP_ACK, seq: 5000, ack: 1001, at: 1_020_000 });
  f.send(1, { flags: TCP_SYN | TCP_ACK, seq: 5000, ack: 1001, at: 1_030_000 });
  f.send(0, { flags: TCP_ACK, seq: 1001, ack: 5001, at: 1_030_500 });
  const t = f.fields();
  assert.equal(t.synToSynAckMicros, 20_000);
  assert.equal(t.synAckToAckMicros, 500);
  assert.deepEqual([t.forward.retransmittedSegments, t.forward.retransmittedBytes, t.forward.segments], [1, 0, 2]);
  assert.deepEqual([t.reverse.retransmittedSegments, t.reverse.segments], [1, 2]);
});

test('a flow seen from its middle has no handshake, and its first segment sets where its sequence starts', () => {
  const f = flow();
  f.send(0, { flags: TCP_ACK | TCP_PSH, seq: 7000, ack: 1, payloadBytes: 100 });
  f.send(0, { flags: TCP_ACK | TCP_PSH, seq: 6900, ack: 1, payloadBytes: 100 });
  const t = f.fields();
  assert.deepEqual([t.synToSynAckMicros, t.synAckToAckMicros, t.clientDirection, t.synSize], [undefined, undefined, undefined, 0]);
  // Below the first segment seen is nothing this point saw sent: counted as a retransmission (it could be one).
  assert.equal(t.forward.retransmittedSegments, 1);
});

test('segments that repeat bytes already sent are retransmissions; payload-less ACKs are not counted at all', () => {
  const f = connected();
  f.send(0, { flags: TCP_ACK, seq: 1001, ack: 5001, payloadBytes: 1000 });
  f.send(0, { flags: TCP_ACK, seq: 2001, ack: 5001, payloadBytes: 1000 });
  f.send(0, { flags: TCP_ACK, seq: 1001, ack: 5001, payloadBytes: 1000 }); // the first again
  f.send(0, { flags: TCP_ACK, seq: 2501, ack: 5001, payloadBytes: 1000 }); // half old, half new
  f.send(1, { flags: TCP_ACK, seq: 5001, ack: 2501 });
  f.send(1, { flags: TCP_ACK, seq: 5001, ack: 3501 }); // a duplicate ACK: no sequence space
  f.send(0, { flags: TCP_FIN | TCP_ACK, seq: 3501, ack: 5001 });
  f.send(0, { flags: TCP_FIN | TCP_ACK, seq: 3501, ack: 5001 }); // a retransmitted FIN
  const t = f.fields().forward;
  assert.deepEqual(
    [t.segments, t.retransmittedSegments, t.retransmittedBytes, t.outOfOrderSegments],
    [1 + 4 + 2, 1 + 1 + 1, 1000 + 500, 0],
  );
  assert.equal(f.fields().reverse.segments, 1);
});

test('a segment that fills a gap below the highest sequence seen is out of order, not a retransmission', () => {
  const f = connected();
  f.send(0, { flags: TCP_ACK, seq: 1001, payloadBytes: 100 });
  f.send(0, { flags: TCP_ACK, seq: 1301, payloadBytes: 100 }); // 1101-1301 not seen (yet)
  f.send(0, { flags: TCP_ACK, seq: 1101, payloadBytes: 100 }); // fills half the gap
  f.send(0, { flags: TCP_ACK, seq: 1101, payloadBytes: 100 }); // that half again: a retransmission
  f.send(0, { flags: TCP_ACK, seq: 1201, payloadBytes: 100 }); // the other half
  f.send(0, { flags: TCP_ACK, seq: 1201, payloadBytes: 100 });
  const t = f.fields().forward;
  assert.deepEqual([t.outOfOrderSegments, t.retransmittedSegments, t.retransmittedBytes], [2, 2, 200]);
});

test('at most MAX_HOLES gaps are remembered per direction; the oldest is forgotten, counted', () => {
  const f = connected();
  let seq = 1001;
  for (let i = 0; i <= MAX_HOLES; i++) {
    f.send(0, { flags: TCP_ACK, seq, payloadBytes: 10 });
    seq += 20; // 10 bytes sent, 10 missed
  }
  f.send(0, { flags: TCP_ACK, seq, payloadBytes: 10 }); // the end of the last gap
  // The first gap (1011-1021) was forgotten: its fill counts as a retransmission; the second (1031-1041) is still known.
  f.send(0, { flags: TCP_ACK, seq: 1011, payloadBytes: 10 });
  f.send(0, { flags: TCP_ACK, seq: 1031, payloadBytes: 10 });
  const t = f.fields().forward;
  assert.deepEqual([t.retransmittedSegments, t.outOfOrderSegments], [1, 1]);
  assert.equal(f.tracker.stats.gapsForgotten, 1);
});

test('a super-packet counts the wire segments it repeats, gso_size bytes each', () => {
  const f = connected();
  f.send(0, { flags: TCP_ACK, seq: 1001, payloadBytes: 10 * 1000, gsoSize: 1000 });
  // Three whole segments again, in one super-packet.
  f.send(0, { flags: TCP_ACK, seq: 3001, payloadBytes: 3 * 1000, gsoSize: 1000 });
  // 1500 bytes old and 2500 new: the old ones were in two of its segments.
  f.send(0, { flags: TCP_ACK, seq: 11001 - 1500, payloadBytes: 4000, gsoSize: 1000 });
  const t = f.fields().forward;
  assert.deepEqual([t.segments, t.retransmittedSegments, t.retransmittedBytes], [1 + 10 + 3 + 4, 3 + 2, 3000 + 1500]);
});

test('zero windows and resets are counted per direction; sequence numbers wrap', () => {
  const f = flow();
  f.send(0, { flags: TCP_SYN, seq: 0xffff_fff0 });
  f.send(1, { flags: TCP_SYN | TCP_ACK, seq: 5000, ack: 0xffff_fff1, window: 0 }); // a SYN's window is not advertised flow control
  f.send(0, { flags: TCP_ACK, seq: 0xffff_fff1, ack: 5001, payloadBytes: 100 }); // wraps past 2^32
  f.send(1, { flags: TCP_ACK, seq: 5001, ack: 0x55, window: 0 });
  f.send(1, { flags: TCP_ACK, seq: 5001, ack: 0x55, window: 0 });
  f.send(0, { flags: TCP_ACK, seq: 0x55, ack: 5001, payloadBytes: 10 }); // in order after the wrap
  f.send(0, { flags: TCP_ACK, seq: 0xffff_fff1, ack: 5001, payloadBytes: 100 }); // before the wrap: repeated
  f.send(1, { flags: TCP_RST, seq: 5001, window: 0 });
  const t = f.fields();
  assert.deepEqual([t.reverse.zeroWindowSegments, t.reverse.resets, t.forward.resets], [2, 1, 0]);
  assert.deepEqual([t.forward.retransmittedSegments, t.forward.outOfOrderSegments], [1, 0]);
  assert.equal(t.reverse.initialWindow, 0);
  assert.equal(t.forward.initialWindow, 65535);
});

test('TTL: first, last, lowest and highest per direction', () => {
  const f = connected();
  for (const ttl of [61, 60, 63, 62]) f.send(1, { flags: TCP_ACK, seq: 5001, ack: 1001, ttl });
  const t = f.fields();
  assert.deepEqual([t.reverse.ttlFirst, t.reverse.ttlLast, t.reverse.ttlMinimum, t.reverse.ttlMaximum], [64, 62, 60, 64]);
  assert.deepEqual([t.forward.ttlFirst, t.forward.ttlLast, t.forward.ttlMinimum, t.forward.ttlMaximum], [64, 64, 64, 64]);
});

test('IPv6 gives its hop limit and the same sequence rules', () => {
  const decoder = new PacketDecoder();
  const tracker = new TcpTracker(1);
  for (const seq of [100, 100]) {
    const frame = ethernet(0x86dd, ipv6({ next: 6, source: 'fd00::1', destination: 'fd00::2', payload: tcpSegment({ flags: TCP_ACK, seq, payloadBytes: 50 }) }));
    assert.ok(decoder.decode(LinkType.ETHERNET, frame, 0, frame.length));
    tracker.packet(0, 0, decoder.packet);
  }
  const t = tracker.fields(0).forward;
  assert.deepEqual([t.ttlFirst, t.retransmittedSegments, t.retransmittedBytes], [64, 1, 50]);
});

test("a flow's end hands over its fields and leaves its slot as new", () => {
  const f = connected();
  f.send(0, { flags: TCP_ACK, seq: 1001, payloadBytes: 10 });
  f.send(0, { flags: TCP_ACK, seq: 1001, payloadBytes: 10 });
  assert.equal(f.tracker.end(0).forward.retransmittedSegments, 1);
  const t = f.tracker.fields(0);
  assert.deepEqual([t.forward.retransmittedSegments, t.forward.segments, t.synToSynAckMicros, t.forward.ttlFirst, t.forward.optionKinds], [0, 0, undefined, undefined, []]);
});

test('options cut by the capture are read as far as they go; options that overrun their header are counted as malformed', () => {
  const f = flow();
  // snaplen ends inside the MSS option's value: the kind is noted, the value not read.
  f.send(0, { flags: TCP_SYN, seq: 1, options: [...SACK_PERMITTED, ...MSS_1460], snaplen: 14 + 20 + 20 + 2 + 2 });
  assert.equal(f.tracker.stats.malformedOptions, 0);
  assert.deepEqual([f.fields().forward.optionKinds, f.fields().forward.maximumSegmentSize], [[2, 4], undefined]);
  f.send(1, { flags: TCP_SYN | TCP_ACK, seq: 1, ack: 2, options: [NOP, NOP, 8, 40] });
  f.send(1, { flags: TCP_ACK, seq: 2, ack: 2, options: [NOP, 5, 0] });
  assert.equal(f.tracker.stats.malformedOptions, 2);
  // A header the capture cut before its 20 bytes is not read at all.
  f.send(0, { flags: TCP_ACK, seq: 2, payloadBytes: 10, snaplen: 14 + 20 + 14 });
  assert.equal(f.tracker.stats.truncatedHeaders, 1);
});

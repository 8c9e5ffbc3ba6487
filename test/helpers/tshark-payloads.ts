// The transport payloads of a capture's packets as tshark reads them: an
// independent reader hands the application-layer parsers their bytes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

export interface PayloadPacket {
  frame: number;
  /** Capture time, microseconds since the epoch. */
  timeMicros: number;
  src: string;
  dst: string;
  protocol: 'tcp' | 'udp';
  srcPort: number;
  dstPort: number;
  /** TCP: the absolute sequence number of the payload's first byte. */
  seq: number;
  payload: Buffer;
  /** The values tshark gives the frame for each of the `extra` fields asked for (every occurrence, in order). */
  extra: Record<string, string[]>;
}

/**
 * The packets of `path` that carry a TCP or UDP payload (the outermost IP
 * header's addresses), with what tshark reads in them for the `extra`
 * fields: one tshark run serves as payload source and reference (tshark still
 * reassembles TCP for its dissectors; each frame's payload is its own).
 */
export function tsharkPayloads(path: string, extra: readonly string[] = []): PayloadPacket[] {
  const fields = ['frame.number', 'frame.time_epoch', 'ip.src', 'ip.dst', 'ipv6.src', 'ipv6.dst', 'tcp.srcport', 'tcp.dstport', 'tcp.seq_raw', 'tcp.payload', 'udp.srcport', 'udp.dstport', 'udp.payload', ...extra];
  const run = spawnSync(
    'tshark',
    ['-r', path, '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=\u0001', '-E', 'separator=\t', ...fields.flatMap((f) => ['-e', f])],
    { encoding: 'utf8', maxBuffer: 1 << 28 },
  );
  if (run.error) throw new Error(`tshark could not run (./run installs it): ${run.error.message}`);
  assert.equal(run.status, 0, run.stderr);
  const packets: PayloadPacket[] = [];
  for (const line of run.stdout.split('\n')) {
    if (line === '') continue;
    const values = line.split('\t').map((v) => v.split('\u0001'));
    const [frame, time, ip4src, ip4dst, ip6src, ip6dst, tcpSrc, tcpDst, seq, tcpPayload, udpSrc, udpDst, udpPayload] = values.map((v) => v[0]!);
    const tcp = tcpSrc !== '';
    const hex = (tcp ? tcpPayload : udpPayload)!.replaceAll(':', '');
    if (hex === '' || (!tcp && udpSrc === '')) continue;
    const [seconds, fraction = ''] = time!.split('.');
    packets.push({
      frame: Number(frame),
      timeMicros: Number(seconds) * 1e6 + Number(fraction.padEnd(6, '0').slice(0, 6)),
      src: ip4src || ip6src!,
      dst: ip4dst || ip6dst!,
      protocol: tcp ? 'tcp' : 'udp',
      srcPort: Number(tcp ? tcpSrc : udpSrc),
      dstPort: Number(tcp ? tcpDst : udpDst),
      seq: tcp ? Number(seq) : 0,
      payload: Buffer.from(hex, 'hex'),
      extra: Object.fromEntries(extra.map((name, i) => [name, values[13 + i]!.filter((v) => v !== '')])),
    });
  }
  return packets;
}

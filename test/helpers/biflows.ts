// Packets grouped into bidirectional 5-tuples, for feeding per-flow feature
// state the way the meter would: forward is the direction of a flow's first
// packet.
import type { PayloadPacket } from './tshark-payloads.ts';

export interface Biflow {
  /** Endpoints of the first packet: "src/port -> dst/port". */
  key: string;
  packets: { forward: boolean; packet: PayloadPacket }[];
}

/** The key of one direction of a tuple, as ipfixprobe's SRC_IP/SRC_PORT/DST_IP/DST_PORT name it. */
export function directionKey(protocol: string, src: string, srcPort: number | string, dst: string, dstPort: number | string): string {
  return `${protocol} ${src}/${srcPort} -> ${dst}/${dstPort}`;
}

/** The packets of each 5-tuple in capture order, in the order the tuples first appear. */
export function biflows(packets: PayloadPacket[]): Biflow[] {
  const byTuple = new Map<string, Biflow>();
  for (const packet of packets) {
    const there = directionKey(packet.protocol, packet.src, packet.srcPort, packet.dst, packet.dstPort);
    const back = directionKey(packet.protocol, packet.dst, packet.dstPort, packet.src, packet.srcPort);
    const flow = byTuple.get(there) ?? byTuple.get(back);
    if (flow) flow.packets.push({ forward: flow.key === there, packet });
    else byTuple.set(there, { key: there, packets: [{ forward: true, packet }] });
  }
  return [...byTuple.values()];
}

/** A flow by either direction's key. */
export function findBiflow(flows: Biflow[], protocol: string, src: string, srcPort: number | string, dst: string, dstPort: number | string): Biflow | undefined {
  const there = directionKey(protocol, src, srcPort, dst, dstPort);
  const back = directionKey(protocol, dst, dstPort, src, srcPort);
  return flows.find((f) => f.key === there || f.key === back);
}

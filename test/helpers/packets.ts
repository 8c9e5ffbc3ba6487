// Hand-built frames for decoder, meter and capture file tests. Each builder
// returns bytes; they nest: ethernet(0x0800, ipv4({ ... payload: tcp(...) })).

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function u16(n: number): number[] {
  return [(n >> 8) & 0xff, n & 0xff];
}

function u32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

/** "10.0.0.1" → 4 bytes. */
export function v4(text: string): number[] {
  return text.split('.').map(Number);
}

/** "fd00::1" → 16 bytes. */
export function v6(text: string): number[] {
  const [head, tail] = text.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.flatMap((g) => u16(parseInt(g, 16)));
}

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

export function tcp(sourcePort: number, destinationPort: number, flags: number, payloadBytes = 0): Uint8Array {
  return new Uint8Array([
    ...u16(sourcePort), ...u16(destinationPort), ...u32(1), ...u32(0), 0x50, flags, ...u16(65535), 0, 0, 0, 0,
    ...new Array<number>(payloadBytes).fill(0),
  ]);
}

export interface TcpSegmentOptions {
  sourcePort?: number;
  destinationPort?: number;
  flags: number;
  seq?: number;
  ack?: number;
  window?: number;
  /** Option bytes, padded here to a multiple of 4 with end-of-list. */
  options?: number[];
  payloadBytes?: number;
}

/** A TCP header with the given sequence numbers, window and options, then payloadBytes zero bytes. */
export function tcpSegment(o: TcpSegmentOptions): Uint8Array {
  const options = [...(o.options ?? [])];
  while (options.length % 4 !== 0) options.push(0);
  return new Uint8Array([
    ...u16(o.sourcePort ?? 40000), ...u16(o.destinationPort ?? 80), ...u32(o.seq ?? 0), ...u32(o.ack ?? 0),
    (5 + options.length / 4) << 4, o.flags, ...u16(o.window ?? 65535), 0, 0, 0, 0, ...options,
    ...new Array<number>(o.payloadBytes ?? 0).fill(0),
  ]);
}

export function udp(sourcePort: number, destinationPort: number, payloadBytes = 0): Uint8Array {
  return new Uint8Array([...u16(sourcePort), ...u16(destinationPort), ...u16(8 + payloadBytes), 0, 0, ...new Array<number>(payloadBytes).fill(0)]);
}

export function sctp(sourcePort: number, destinationPort: number): Uint8Array {
  return new Uint8Array([...u16(sourcePort), ...u16(destinationPort), ...u32(0x01020304), ...u32(0)]);
}

export function icmp(type: number, code: number): Uint8Array {
  return new Uint8Array([type, code, 0, 0, 0, 1, 0, 1]);
}

export interface Ipv4Options {
  protocol: number;
  source: string;
  destination: string;
  payload: Uint8Array;
  /** IPv4 options bytes (a multiple of 4). */
  options?: number[];
  id?: number;
  moreFragments?: boolean;
  /** In 8-byte units. */
  fragmentOffset?: number;
  /** Defaults to the real length. */
  totalLength?: number;
  /** Defaults to 64. */
  ttl?: number;
}

export function ipv4(o: Ipv4Options): Uint8Array {
  const options = o.options ?? [];
  const headerLength = 20 + options.length;
  const total = o.totalLength ?? headerLength + o.payload.length;
  const flagsAndOffset = (o.moreFragments ? 0x2000 : 0) | (o.fragmentOffset ?? 0);
  const header = [
    0x40 | (headerLength / 4), 0, ...u16(total), ...u16(o.id ?? 1), ...u16(flagsAndOffset), o.ttl ?? 64, o.protocol, 0, 0,
    ...v4(o.source), ...v4(o.destination), ...options,
  ];
  return concat(new Uint8Array(header), o.payload);
}

export interface Ipv6Options {
  /** Next header of the fixed header (the first extension header, or the transport). */
  next: number;
  source: string;
  destination: string;
  /** Extension headers and transport, already chained. */
  payload: Uint8Array;
}

export function ipv6(o: Ipv6Options): Uint8Array {
  const header = [0x60, 0, 0, 0, ...u16(o.payload.length), o.next, 64, ...v6(o.source), ...v6(o.destination)];
  return concat(new Uint8Array(header), o.payload);
}

/** An IPv6 extension header of the length-in-8-byte-units kind (hop-by-hop, routing, destination options). */
export function extension(next: number, bytes = 8): Uint8Array {
  const h = new Uint8Array(bytes);
  h[0] = next;
  h[1] = bytes / 8 - 1;
  return h;
}

/** An IPv6 authentication header (length in 4-byte units minus 2). */
export function authenticationHeader(next: number, bytes = 12): Uint8Array {
  const h = new Uint8Array(bytes);
  h[0] = next;
  h[1] = bytes / 4 - 2;
  return h;
}

export function fragmentHeader(next: number, offsetUnits: number, moreFragments: boolean, id: number): Uint8Array {
  return new Uint8Array([next, 0, ...u16((offsetUnits << 3) | (moreFragments ? 1 : 0)), ...u32(id)]);
}

/** An Ethernet frame; each VLAN tag is [tpid, vlanId], outermost first. */
export function ethernet(etherType: number, payload: Uint8Array, tags: [number, number][] = []): Uint8Array {
  const macs = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
  const tagBytes = tags.flatMap(([tpid, id]) => [...u16(tpid), ...u16(id & 0x0fff)]);
  return concat(new Uint8Array([...macs, ...tagBytes, ...u16(etherType)]), payload);
}

export function linuxSll(protocol: number, payload: Uint8Array): Uint8Array {
  return concat(new Uint8Array([0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, ...u16(protocol)]), payload);
}

export function linuxSll2(protocol: number, payload: Uint8Array): Uint8Array {
  return concat(new Uint8Array([...u16(protocol), 0, 0, ...u32(2), 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]), payload);
}

/** BSD loopback: the address family in the capturing host's byte order. */
export function bsdLoopback(family: number, littleEndian: boolean, payload: Uint8Array): Uint8Array {
  const header = littleEndian ? [family, 0, 0, 0] : u32(family);
  return concat(new Uint8Array(header), payload);
}

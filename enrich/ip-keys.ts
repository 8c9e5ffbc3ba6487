// Addresses as keys. Kubernetes gives addresses as text (in whatever form
// the writer chose), flow records as bytes; both are reduced to one key, so
// the same address is the same key whatever form it came in: IPv4 (and
// IPv4-mapped IPv6) is its uint32 value, IPv6 a string of eight UTF-16 code
// units, one per 16-bit group. The keys index the lease table
// (enrich/address-table.ts reads them as one 32-bit word or four; an IPv6
// flow address is looked up from its bytes there, no key string made) and
// the addresses of each namespace (NetnsPods), and mark the observed pod's
// side of a flow (Enricher). Display text is not made here: flow/address.ts
// formatIPv4 and formatIPv6 do that. Pure (no I/O), so ipfix/tcp-queue.ts
// parses /proc/net/tcp addresses with it too.
import { isIPv4 } from 'node:net';

export type IpKey = number | string;

/** The key of a 4- or 16-byte address in network order (as in FlowRecord). Cheap: no text, no allocation for IPv4. */
export function ipKeyOf(a: Uint8Array): IpKey {
  if (a.length === 4) return ((a[0]! << 24) | (a[1]! << 16) | (a[2]! << 8) | a[3]!) >>> 0;
  if (isIpv4Mapped(a)) return ((a[12]! << 24) | (a[13]! << 16) | (a[14]! << 8) | a[15]!) >>> 0;
  return String.fromCharCode(
    (a[0]! << 8) | a[1]!, (a[2]! << 8) | a[3]!, (a[4]! << 8) | a[5]!, (a[6]! << 8) | a[7]!,
    (a[8]! << 8) | a[9]!, (a[10]! << 8) | a[11]!, (a[12]! << 8) | a[13]!, (a[14]! << 8) | a[15]!,
  );
}

/** Whether 16 bytes are ::ffff:a.b.c.d, the IPv4 address a.b.c.d seen through an IPv6 socket (its key is the IPv4 one). */
export function isIpv4Mapped(a: Uint8Array): boolean {
  return a[10] === 0xff && a[11] === 0xff && (a[0]! | a[1]! | a[2]! | a[3]! | a[4]! | a[5]! | a[6]! | a[7]! | a[8]! | a[9]!) === 0;
}

/** The address of a key, 4 or 16 bytes in network order (ipKeyOf's inverse; an IPv4-mapped address comes back as IPv4). */
export function ipKeyBytes(key: IpKey): Uint8Array {
  if (typeof key === 'number') return Uint8Array.of(key >>> 24, (key >>> 16) & 0xff, (key >>> 8) & 0xff, key & 0xff);
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    bytes[2 * i] = key.charCodeAt(i) >> 8;
    bytes[2 * i + 1] = key.charCodeAt(i) & 0xff;
  }
  return bytes;
}

/** The key of an address in any text form ("10.0.0.1", "FD00:0::1", "::ffff:10.0.0.1"); undefined if it is not one. */
export function ipKey(text: string): IpKey | undefined {
  const bytes = parseIp(text);
  return bytes && ipKeyOf(bytes);
}

function parseIp(text: string): Uint8Array | undefined {
  if (isIPv4(text)) return Uint8Array.from(text.split('.'), Number);
  // The WHATWG URL parser validates IPv6 (and rejects zone ids) and
  // serialises it in one form: lower case, hex groups only, one "::".
  let host: string;
  try {
    host = new URL(`http://[${text}]/`).hostname.slice(1, -1);
  } catch {
    return undefined;
  }
  const [head = '', tail] = host.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = Number.parseInt(g, 16);
    bytes[2 * i] = v >> 8;
    bytes[2 * i + 1] = v & 0xff;
  });
  return bytes;
}

/** A prefix ("10.244.0.0/16", "fd00::/8") that tests keys. */
export interface IpPrefix {
  contains(key: IpKey): boolean;
}

/** Parses "address/length"; undefined if malformed. */
export function parsePrefix(text: string): IpPrefix | undefined {
  const slash = text.indexOf('/');
  const base = slash < 0 ? undefined : ipKey(text.slice(0, slash));
  const length = Number(text.slice(slash + 1));
  if (base === undefined || !Number.isInteger(length) || length < 0) return undefined;
  if (typeof base === 'number') {
    if (length > 32) return undefined;
    const mask = length === 0 ? 0 : (~0 << (32 - length)) >>> 0;
    const net = (base & mask) >>> 0;
    return { contains: (key) => typeof key === 'number' && ((key & mask) >>> 0) === net };
  }
  if (length > 128) return undefined;
  return {
    contains(key) {
      if (typeof key === 'number') return false;
      for (let i = 0, left = length; left > 0; i++, left -= 16) {
        const mask = (0xffff << (16 - Math.min(16, left))) & 0xffff;
        if ((key.charCodeAt(i) & mask) !== (base.charCodeAt(i) & mask)) return false;
      }
      return true;
    },
  };
}

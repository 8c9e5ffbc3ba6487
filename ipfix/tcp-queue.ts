// How many bytes the kernel still holds unacknowledged on a TCP connection:
// the tx_queue column of /proc/net/tcp and /proc/net/tcp6 (write_seq -
// snd_una, what SIOCOUTQ returns), which Node's sockets do not expose. Read
// once, when a collector ends its side: what it had acknowledged before its
// FIN it had read (a socket closed with unread data sends RST instead), so
// only this much of what we wrote was lost.
import { readFileSync } from 'node:fs';
import { isIPv4 } from 'node:net';
import { ipKey, ipKeyBytes } from '../enrich/ip-keys.ts';

export interface Endpoint {
  address: string;
  port: number;
}

/** The tx_queue of the connection local→remote in the calling process's network namespace, or undefined when it is not listed. */
export function unacknowledgedBytes(local: Endpoint, remote: Endpoint, read: (path: string) => string = (p) => readFileSync(p, 'utf8')): number | undefined {
  const v4 = isIPv4(local.address) && isIPv4(remote.address);
  const want = `${procAddress(local, v4)} ${procAddress(remote, v4)}`;
  let table: string;
  try {
    table = read(v4 ? '/proc/net/tcp' : '/proc/net/tcp6');
  } catch {
    return undefined;
  }
  for (const line of table.split('\n')) {
    // sl local_address rem_address st tx_queue:rx_queue ...
    const f = line.trim().split(/\s+/);
    if (`${f[1]} ${f[2]}` === want) return parseInt(f[4]!.split(':')[0]!, 16);
  }
  return undefined;
}

/** An address as /proc/net/tcp{,6} prints it: each 32-bit word as the host (little-endian) stores it, in hex, then the port. */
function procAddress({ address, port }: Endpoint, v4: boolean): string {
  const key = ipKey(address.split('%')[0]!);
  let bytes = key === undefined ? new Uint8Array(v4 ? 4 : 16) : ipKeyBytes(key);
  // An IPv4 peer of an IPv6 socket is listed in tcp6 as ::ffff:a.b.c.d.
  if (!v4 && bytes.length === 4) bytes = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...bytes);
  let hex = '';
  for (let w = 0; w < bytes.length; w += 4) {
    for (let b = 3; b >= 0; b--) hex += bytes[w + b]!.toString(16).padStart(2, '0');
  }
  return `${hex.toUpperCase()}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
}

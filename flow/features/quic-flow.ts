// A UDP flow's QUIC ClientHello: the client's Initial packets decrypted
// (flow/features/quic.ts) and their CRYPTO frames put together, bounded,
// until the ClientHello is whole. Keys come from the first Initial's
// Destination Connection ID for all of them (RFC 9001 5.2), so a second
// Initial sent to the server's new connection ID still decrypts.
import { readClientInitial, QuicStatus } from './quic.ts';
import { StreamPrefix } from './stream-prefix.ts';
import { MAX_HELLO_BYTES, parseHelloMessage, TlsStatus, type ClientHello } from './tls.ts';

/** Datagrams of the client looked at before its ClientHello is whole. */
export const MAX_INITIAL_DATAGRAMS = 8;

export interface QuicStats {
  /** Client Initials decrypted. */
  initials: number;
  clientHellos: number;
  /** Initials that did not decrypt or hold bad frames, and ClientHellos that cannot be right. */
  malformed: number;
  /** ClientHellos not whole after MAX_INITIAL_DATAGRAMS datagrams or when the flow ended. */
  incomplete: number;
}

export function emptyQuicStats(): QuicStats {
  return { initials: 0, clientHellos: 0, malformed: 0, incomplete: 0 };
}

export interface QuicFields {
  version: number;
  serverName: string;
  /** The protocols the client offered ("h3"), comma-separated. */
  clientAlpn: string;
}

export class QuicFlow {
  version = 0;
  clientHello: ClientHello | undefined;
  readonly #stats: QuicStats;
  #dcid: Uint8Array | undefined;
  #prefix: StreamPrefix | undefined;
  #datagrams = 0;
  #done = false;

  constructor(stats: QuicStats) {
    this.#stats = stats;
  }

  get wanted(): boolean {
    return !this.#done;
  }

  /** One UDP payload buf[start, end) from the flow's first sender (the client's Initials come first). */
  datagram(forward: boolean, buf: Uint8Array, start: number, end: number): void {
    if (this.#done || !forward) return;
    if (++this.#datagrams > MAX_INITIAL_DATAGRAMS) return this.#stop(true);
    const initial = readClientInitial(buf, start, end, this.#dcid);
    if (typeof initial === 'number') {
      if (initial === QuicStatus.MALFORMED || initial === QuicStatus.UNDECRYPTABLE) this.#stats.malformed++;
      // The first datagram is no long-header packet of a known version: not
      // QUIC, or a flow seen from its middle. (0-RTT packets may come before
      // the Initial; they are waited past.)
      else if (initial !== QuicStatus.OTHER_LONG_HEADER && this.#dcid === undefined) this.#stop(false);
      return;
    }
    this.#stats.initials++;
    this.version = initial.version;
    this.#dcid ??= initial.destinationConnectionId;
    this.#prefix ??= new StreamPrefix(MAX_HELLO_BYTES);
    for (const piece of initial.crypto) {
      if (!this.#prefix.add(piece.offset, piece.data, 0, piece.data.length)) return this.#stop(true);
    }
    const hello = parseHelloMessage(this.#prefix.bytes, 0, this.#prefix.contiguous);
    if (hello === TlsStatus.INCOMPLETE) return;
    if (typeof hello === 'number' || hello.kind !== 'client') {
      this.#stats.malformed++;
      return this.#stop(false);
    }
    this.clientHello = hello.hello;
    this.#stats.clientHellos++;
    this.#stop(false);
  }

  /** The flow ended: a ClientHello still being put together counts as incomplete. */
  end(): void {
    if (!this.#done && this.#prefix !== undefined) this.#stop(true);
  }

  fields(): QuicFields | undefined {
    if (this.version === 0) return undefined;
    return { version: this.version, serverName: this.clientHello?.serverName ?? '', clientAlpn: this.clientHello?.alpn.join(',') ?? '' };
  }

  #stop(incomplete: boolean): void {
    if (incomplete && this.#prefix !== undefined && this.clientHello === undefined) this.#stats.incomplete++;
    this.#done = true;
    this.#prefix = undefined;
  }
}

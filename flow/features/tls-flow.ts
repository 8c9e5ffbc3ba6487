// A TCP flow's TLS hellos: the ClientHello from one side, the ServerHello
// from the other, each read from the first handshake record that side sent
// within its first MAX_SEGMENTS segments (after a STARTTLS exchange too). A hello
// split over segments is put together by sequence number, bounded: only the
// first flight (the bytes up to the end of the hello, at most
// MAX_HELLO_BYTES), for at most MAX_SEGMENTS segments of that side.
import { StreamPrefix } from './stream-prefix.ts';
import { ja3, ja4, MAX_HELLO_BYTES, parseHelloRecords, startsTlsHandshake, TlsStatus, type ClientHello, type Hello, type ServerHello } from './tls.ts';

/** Segments of one side looked at before its first handshake record, and again while its hello is incomplete. */
export const MAX_SEGMENTS = 32;

/** Counts over every flow, by outcome (plain numbers: read at scrape time). */
export interface TlsStats {
  clientHellos: number;
  serverHellos: number;
  /** Hellos read from more than one segment. */
  reassembled: number;
  /** Hellos given up on: MAX_SEGMENTS or too many holes before the hello was whole, or the flow ended first. */
  incomplete: number;
  /** Handshake records that were no hello, or a hello that cannot be right. */
  malformed: number;
  /** Hellos longer than MAX_HELLO_BYTES. */
  tooLong: number;
}

export function emptyTlsStats(): TlsStats {
  return { clientHellos: 0, serverHellos: 0, reassembled: 0, incomplete: 0, malformed: 0, tooLong: 0 };
}

const WAITING = 0;
const ASSEMBLING = 1;
const DONE = 2;

/** One side's progress: its first payload decides whether it is TLS at all. */
interface Side {
  state: typeof WAITING | typeof ASSEMBLING | typeof DONE;
  prefix: StreamPrefix | undefined;
  /** Sequence number of the side's first payload byte. */
  baseSeq: number;
  segments: number;
}

/** What a flow record carries of TLS. */
export interface TlsFields {
  serverName: string;
  /** The protocols the client offered, comma-separated, in its order. */
  clientAlpn: string;
  /** The protocol the server chose in its ServerHello ('' with TLS 1.3, which sends it encrypted). */
  alpn: string;
  /** The version agreed on (the ServerHello's), else the ClientHello's legacy_version. */
  version: number;
  ja3: string;
  ja4: string;
}

export class TlsFlow {
  clientHello: ClientHello | undefined;
  serverHello: ServerHello | undefined;
  readonly #sides: [Side, Side] = [newSide(), newSide()];
  readonly #stats: TlsStats;

  constructor(stats: TlsStats) {
    this.#stats = stats;
  }

  /** Whether segments are still wanted: a side may still start a hello, or its hello is still coming. */
  get wanted(): boolean {
    return this.#sides[0].state !== DONE || this.#sides[1].state !== DONE;
  }

  /** One TCP segment's payload buf[start, end) with its sequence number, from the flow's first sender (forward) or the other side. */
  segment(forward: boolean, seq: number, buf: Uint8Array, start: number, end: number): void {
    if (end <= start) return;
    const side = this.#sides[forward ? 0 : 1];
    if (side.state === DONE) return;
    if (side.state === WAITING) {
      // Not TLS yet: a STARTTLS protocol (SMTP, IMAP, FTP), a proxy's
      // handshake (SOCKS, CONNECT) or plain text. Looked at for MAX_SEGMENTS
      // segments, three bytes each.
      if (!startsTlsHandshake(buf, start, end)) {
        if (++side.segments >= MAX_SEGMENTS) side.state = DONE;
        return;
      }
      side.segments = 0;
      const result = parseHelloRecords(buf, start, end);
      if (result !== TlsStatus.INCOMPLETE) return this.#finish(side, result);
      side.state = ASSEMBLING;
      side.baseSeq = seq;
      side.prefix = new StreamPrefix(MAX_HELLO_BYTES);
    }
    const prefix = side.prefix!;
    const before = prefix.contiguous;
    side.segments++;
    // Offsets wrap with the 32-bit sequence space: a segment from before the
    // first (an old retransmission) lands far past the capacity and is let go.
    const offset = (seq - side.baseSeq) >>> 0;
    if (offset < MAX_HELLO_BYTES && !prefix.add(offset, buf, start, Math.min(end, start + MAX_HELLO_BYTES - offset))) return this.#giveUp(side);
    if (prefix.contiguous > before) {
      const result = parseHelloRecords(prefix.bytes, 0, prefix.contiguous);
      if (result !== TlsStatus.INCOMPLETE) {
        if (typeof result !== 'number') this.#stats.reassembled++;
        return this.#finish(side, result);
      }
    }
    if (side.segments >= MAX_SEGMENTS) this.#giveUp(side);
  }

  /** The flow ended: hellos still being put together count as incomplete. */
  end(): void {
    for (const side of this.#sides) if (side.state === ASSEMBLING) this.#giveUp(side);
  }

  /** The record's TLS fields, or undefined when no hello was read. */
  fields(transport: 'tcp' | 'quic' = 'tcp'): TlsFields | undefined {
    const client = this.clientHello;
    const server = this.serverHello;
    if (client === undefined && server === undefined) return undefined;
    return {
      serverName: client?.serverName ?? '',
      clientAlpn: client?.alpn.join(',') ?? '',
      alpn: server?.alpn ?? '',
      version: server !== undefined ? server.selectedVersion || server.version : client!.version,
      ja3: client !== undefined ? ja3(client) : '',
      ja4: client !== undefined ? ja4(client, transport) : '',
    };
  }

  #finish(side: Side, result: Hello | TlsStatus): void {
    side.state = DONE;
    side.prefix = undefined;
    if (result === TlsStatus.TOO_LONG) this.#stats.tooLong++;
    else if (typeof result === 'number') this.#stats.malformed++;
    else if (result.kind === 'client') {
      this.clientHello ??= result.hello;
      this.#stats.clientHellos++;
    } else {
      this.serverHello ??= result.hello;
      this.#stats.serverHellos++;
    }
  }

  #giveUp(side: Side): void {
    side.state = DONE;
    side.prefix = undefined;
    this.#stats.incomplete++;
  }
}

function newSide(): Side {
  return { state: WAITING, prefix: undefined, baseSeq: 0, segments: 0 };
}

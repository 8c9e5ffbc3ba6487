// Capture file reader: classic pcap (either byte order, microsecond or
// nanosecond timestamps) and pcapng (sections in either byte order, interfaces
// with their own link type and timestamp resolution, enhanced, simple and
// obsolete packet blocks). Pure over bytes: the caller reads the file, whole
// or in chunks, and hands the bytes in. Damage inside the file is counted and
// reading stops there; only bytes that are not a capture file at all throw.
import { PodflowError } from '../common/errors.ts';
import { RECORD_HEADER_BYTES, readU32 } from './records.ts';

const PCAP_MAGIC_MICROSECONDS = 0xa1b2c3d4;
const PCAP_MAGIC_NANOSECONDS = 0xa1b23c4d;
const PCAP_FILE_HEADER_BYTES = 24;

const PCAPNG_SECTION_HEADER = 0x0a0d0d0a;
const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const PCAPNG_INTERFACE_DESCRIPTION = 1;
const PCAPNG_OBSOLETE_PACKET = 2;
const PCAPNG_SIMPLE_PACKET = 3;
const PCAPNG_ENHANCED_PACKET = 6;
const PCAPNG_OPTION_END = 0;
const PCAPNG_OPTION_IF_TSRESOL = 9;
const PCAPNG_OPTION_IF_TSOFFSET = 14;

/** Bytes needed to tell the format: a classic pcap file header is the longest. */
export const CAPTURE_HEADER_BYTES = PCAP_FILE_HEADER_BYTES;

export type CaptureFormat = 'pcap' | 'pcapng';

/** What the first bytes say about a capture file. */
export interface CaptureHeader {
  format: CaptureFormat;
  /** Byte order of the (first) header. */
  littleEndian: boolean;
  /** Classic pcap only: timestamps in nanoseconds instead of microseconds. */
  nanoseconds: boolean;
  /** Classic pcap only: the file's link type (pcapng has one per interface). */
  linkType: number;
}

/** Receives every packet of a file, in file order. */
export interface PacketSink {
  /** timestampMicros: microseconds since the epoch (a coarser file's resolution is kept, a finer one cut to µs). */
  packet(linkType: number, buf: Uint8Array, offset: number, caplen: number, wirelen: number, timestampMicros: number): void;
}

export interface CaptureReadStats {
  format: CaptureFormat;
  packets: number;
  /** The file ends inside a record or block (a cut-off capture): counted, reading stops. */
  truncated: number;
  /** A pcapng block whose length fields cannot be right: counted, reading stops. */
  corruptBlocks: number;
  /** pcapng packets naming an interface that was never described: skipped. */
  unknownInterface: number;
  /** pcapng blocks of other types (statistics, name resolution, ...): skipped. */
  skippedBlocks: number;
}

/** Recognises a capture file by its first bytes; null when it is neither pcap nor pcapng (or too short to tell). */
export function readCaptureHeader(bytes: Uint8Array): CaptureHeader | null {
  if (bytes.length < 4) return null;
  if (readU32(bytes, 0, true) === PCAPNG_SECTION_HEADER) {
    if (bytes.length < 12) return null;
    const littleEndian = readU32(bytes, 8, true) === PCAPNG_BYTE_ORDER_MAGIC;
    if (!littleEndian && readU32(bytes, 8, false) !== PCAPNG_BYTE_ORDER_MAGIC) return null;
    return { format: 'pcapng', littleEndian, nanoseconds: false, linkType: -1 };
  }
  if (bytes.length < PCAP_FILE_HEADER_BYTES) return null;
  for (const littleEndian of [true, false]) {
    const magic = readU32(bytes, 0, littleEndian);
    if (magic === PCAP_MAGIC_MICROSECONDS || magic === PCAP_MAGIC_NANOSECONDS) {
      // The upper bits of the link type field carry FCS information.
      const linkType = readU32(bytes, 20, littleEndian) & 0xffff;
      return { format: 'pcap', littleEndian, nanoseconds: magic === PCAP_MAGIC_NANOSECONDS, linkType };
    }
  }
  return null;
}

/**
 * Whether the classic pcap records after the file header are laid out exactly
 * as RECORD_HEADER_BYTES describes (little-endian, microseconds), so they can
 * go to PacketIngest in whole batches without a call per record.
 */
export function hasRecordLayout(header: CaptureHeader): boolean {
  return header.format === 'pcap' && header.littleEndian && !header.nanoseconds;
}

export const PCAP_RECORDS_START = PCAP_FILE_HEADER_BYTES;

/** One pcapng interface: link type and how to turn its timestamps into microseconds. */
interface PcapngInterface {
  linkType: number;
  snaplen: number;
  ticksPerMicro: number;
  offsetMicros: number;
}

/**
 * Reads a capture file handed in as consecutive chunks. read() consumes every
 * whole record or block and returns where the first incomplete one starts:
 * the caller keeps the bytes from there, appends more and calls again. At the
 * end of the file, finish() counts what was left over as truncated.
 */
export class CaptureReader {
  readonly stats: CaptureReadStats = {
    format: 'pcap',
    packets: 0,
    truncated: 0,
    corruptBlocks: 0,
    unknownInterface: 0,
    skippedBlocks: 0,
  };
  readonly #sink: PacketSink;
  #header: CaptureHeader | null = null;
  /** Set on damage that makes the rest unreadable: later bytes are skipped. */
  #stopped = false;
  // pcapng state: byte order of the current section, its interfaces, and the
  // latest timestamp (simple packet blocks carry none and take it).
  #littleEndian = true;
  #interfaces: PcapngInterface[] = [];
  #lastTimestampMicros = 0;

  constructor(sink: PacketSink) {
    this.#sink = sink;
  }

  /**
   * Reads buf[start, end); the first call must begin at the start of the file
   * with at least CAPTURE_HEADER_BYTES (or the whole file when shorter).
   * Throws PODFLOW_ERR_FLOW_NOT_A_CAPTURE when the file is no capture.
   */
  read(buf: Uint8Array, start: number, end: number): number {
    if (this.#stopped) return end;
    let at = start;
    if (this.#header === null) {
      const header = readCaptureHeader(buf.subarray(start, end));
      if (header === null) {
        throw new PodflowError('PODFLOW_ERR_FLOW_NOT_A_CAPTURE', 'no pcap or pcapng magic number at the start');
      }
      this.#header = header;
      this.stats.format = header.format;
      if (header.format === 'pcap') at += PCAP_FILE_HEADER_BYTES;
    }
    return this.#header.format === 'pcap' ? this.#readPcap(buf, at, end, this.#header) : this.#readPcapng(buf, at, end);
  }

  /** The file ended with `remaining` bytes not consumed by read(): a record or block cut off. */
  finish(remaining: number): CaptureReadStats {
    if (this.#header === null) {
      throw new PodflowError('PODFLOW_ERR_FLOW_NOT_A_CAPTURE', 'the file is too short to be a capture');
    }
    if (remaining > 0 && !this.#stopped) this.stats.truncated++;
    return this.stats;
  }

  /** Marks damage after which nothing can be read; returns the position that consumes everything. */
  #stop(end: number): number {
    this.#stopped = true;
    this.stats.corruptBlocks++;
    return end;
  }

  #readPcap(bytes: Uint8Array, start: number, end: number, header: CaptureHeader): number {
    const le = header.littleEndian;
    const fractionPerMicro = header.nanoseconds ? 1_000 : 1;
    let at = start;
    while (at + RECORD_HEADER_BYTES <= end) {
      const caplen = readU32(bytes, at + 8, le);
      const data = at + RECORD_HEADER_BYTES;
      if (data + caplen > end) break;
      const seconds = readU32(bytes, at, le);
      const fraction = readU32(bytes, at + 4, le);
      const wirelen = readU32(bytes, at + 12, le);
      this.stats.packets++;
      this.#sink.packet(header.linkType, bytes, data, caplen, wirelen, seconds * 1e6 + Math.floor(fraction / fractionPerMicro));
      at = data + caplen;
    }
    return at;
  }

  #readPcapng(bytes: Uint8Array, start: number, end: number): number {
    const stats = this.stats;
    let at = start;
    while (at + 12 <= end) {
      if (readU32(bytes, at, true) === PCAPNG_SECTION_HEADER) {
        // A new section may switch byte order; its interfaces start afresh.
        if (readU32(bytes, at + 8, true) === PCAPNG_BYTE_ORDER_MAGIC) this.#littleEndian = true;
        else if (readU32(bytes, at + 8, false) === PCAPNG_BYTE_ORDER_MAGIC) this.#littleEndian = false;
        else return this.#stop(end);
        this.#interfaces = [];
      }
      const le = this.#littleEndian;
      const length = readU32(bytes, at + 4, le);
      if (length < 12 || length % 4 !== 0) return this.#stop(end);
      if (at + length > end) break;
      const blockType = readU32(bytes, at, le);
      const bodyEnd = at + length - 4;
      switch (blockType) {
        case PCAPNG_SECTION_HEADER:
          break;
        case PCAPNG_INTERFACE_DESCRIPTION:
          if (at + 16 > bodyEnd) return this.#stop(end);
          this.#interfaces.push(readInterface(bytes, at, bodyEnd, le));
          break;
        case PCAPNG_ENHANCED_PACKET:
        case PCAPNG_OBSOLETE_PACKET: {
          if (at + 28 > bodyEnd) return this.#stop(end);
          const id = blockType === PCAPNG_ENHANCED_PACKET ? readU32(bytes, at + 8, le) : readU16(bytes, at + 8, le);
          const iface = this.#interfaces[id];
          if (iface === undefined) {
            stats.unknownInterface++;
            break;
          }
          const caplen = readU32(bytes, at + 20, le);
          const wirelen = readU32(bytes, at + 24, le);
          if (at + 28 + caplen > bodyEnd) return this.#stop(end);
          this.#lastTimestampMicros = ticksToMicros(readU32(bytes, at + 12, le), readU32(bytes, at + 16, le), iface);
          stats.packets++;
          this.#sink.packet(iface.linkType, bytes, at + 28, caplen, wirelen, this.#lastTimestampMicros);
          break;
        }
        case PCAPNG_SIMPLE_PACKET: {
          const iface = this.#interfaces[0];
          if (iface === undefined) {
            stats.unknownInterface++;
            break;
          }
          const wirelen = readU32(bytes, at + 8, le);
          let caplen = Math.min(wirelen, bodyEnd - (at + 12));
          if (iface.snaplen > 0) caplen = Math.min(caplen, iface.snaplen);
          stats.packets++;
          this.#sink.packet(iface.linkType, bytes, at + 12, caplen, wirelen, this.#lastTimestampMicros);
          break;
        }
        default:
          stats.skippedBlocks++;
      }
      at += length;
    }
    return at;
  }
}

/** Reads a whole capture held in memory. Throws only when `bytes` is not a capture file. */
export function readCapture(bytes: Uint8Array, sink: PacketSink): CaptureReadStats {
  const reader = new CaptureReader(sink);
  const consumed = reader.read(bytes, 0, bytes.length);
  return reader.finish(bytes.length - consumed);
}

function readInterface(bytes: Uint8Array, at: number, bodyEnd: number, le: boolean): PcapngInterface {
  const iface: PcapngInterface = {
    linkType: readU16(bytes, at + 8, le),
    snaplen: readU32(bytes, at + 12, le),
    ticksPerMicro: 1, // default resolution: microseconds
    offsetMicros: 0,
  };
  let option = at + 16;
  while (option + 4 <= bodyEnd) {
    const code = readU16(bytes, option, le);
    const length = readU16(bytes, option + 2, le);
    const value = option + 4;
    if (code === PCAPNG_OPTION_END || value + length > bodyEnd) break;
    if (code === PCAPNG_OPTION_IF_TSRESOL && length >= 1) {
      const resolution = bytes[value]!;
      const ticksPerSecond = resolution & 0x80 ? 2 ** (resolution & 0x7f) : 10 ** resolution;
      iface.ticksPerMicro = ticksPerSecond / 1e6;
    } else if (code === PCAPNG_OPTION_IF_TSOFFSET && length >= 8) {
      // A signed 64-bit count of seconds; the high word's sign is enough here.
      const high = readU32(bytes, le ? value + 4 : value, le) | 0;
      const low = readU32(bytes, le ? value : value + 4, le);
      iface.offsetMicros = (high * 4294967296 + low) * 1e6;
    }
    option = value + ((length + 3) & ~3);
  }
  return iface;
}

const TWO_TO_32 = 4294967296;

/**
 * Converts a 64-bit tick count (high and low words) to whole microseconds.
 * high * 2^32 + low as one double loses precision beyond 2^53 (nanosecond
 * timestamps are ~1.7e18), which can move a packet to the previous
 * microsecond; splitting 2^32 into a multiple of the ticks per microsecond
 * and a remainder keeps every step exact for decimal resolutions.
 */
function ticksToMicros(high: number, low: number, iface: PcapngInterface): number {
  const t = iface.ticksPerMicro;
  if (Number.isInteger(t)) {
    const remainder = TWO_TO_32 % t;
    const rest = high * remainder + low;
    if (rest <= Number.MAX_SAFE_INTEGER) {
      return high * ((TWO_TO_32 - remainder) / t) + Math.floor(rest / t) + iface.offsetMicros;
    }
  }
  return Math.floor((high * TWO_TO_32 + low) / t) + iface.offsetMicros;
}

function readU16(bytes: Uint8Array, at: number, le: boolean): number {
  return le ? bytes[at]! | (bytes[at + 1]! << 8) : (bytes[at]! << 8) | bytes[at + 1]!;
}

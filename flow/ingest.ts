// Feeds captured packets to the decoder and the meter: one entry point for a
// batch of records (live capture, classic pcap files), one per packet (pcapng
// and other record layouts), and one for a capture file read in chunks.
import type { PacketDecoder } from './decode.ts';
import type { FlowMeter } from './meter.ts';
import {
  CaptureReader,
  type CaptureReadStats,
  hasRecordLayout,
  PCAP_RECORDS_START,
  readCaptureHeader,
} from './pcap-file.ts';
import { RECORD_HEADER_BYTES, readU32LE, recordEnd } from './records.ts';

export interface IngestStats {
  /** Records seen, decodable or not: the buffers capture handed over (a GSO/GRO super-packet is one). */
  buffers: number;
  /**
   * Packets as on the wire: a metered buffer's wire segments (flow/decode.ts
   * WIRE SEGMENTS), each packet of an 802.11 A-MSDU, 1 for any other.
   */
  packets: number;
  /** Their bytes on the wire, link headers included, each segment's headers counted. */
  bytes: number;
  /** Packets the decoder accepted and the meter counted (a buffer, or one of an A-MSDU's). */
  metered: number;
  /** Batches that ended inside a record (header or data cut short). */
  truncatedRecords: number;
}

export class PacketIngest {
  readonly stats: IngestStats = { buffers: 0, packets: 0, bytes: 0, metered: 0, truncatedRecords: 0 };
  readonly #decoder: PacketDecoder;
  readonly #meter: FlowMeter;

  constructor(decoder: PacketDecoder, meter: FlowMeter) {
    this.#decoder = decoder;
    this.#meter = meter;
  }

  /**
   * Decodes and meters every record in buf[start, end), laid out as
   * RECORD_HEADER_BYTES of little-endian ts_sec, ts_usec, caplen, wirelen,
   * then caplen bytes. Returns the number of whole records consumed; a record
   * cut short at the end is counted in stats.truncatedRecords and skipped.
   */
  ingest(observationPointId: number, linkType: number, buf: Uint8Array, start: number, end: number): number {
    const before = this.stats.buffers;
    if (this.ingestWholeRecords(observationPointId, linkType, buf, start, end) < end) this.stats.truncatedRecords++;
    return this.stats.buffers - before;
  }

  /**
   * Like ingest(), for a stream read in chunks: stops quietly before a record
   * that `end` cuts and returns where it starts (end when none is cut).
   */
  ingestWholeRecords(observationPointId: number, linkType: number, buf: Uint8Array, start: number, end: number): number {
    let at = start;
    while (at + RECORD_HEADER_BYTES <= end) {
      const next = recordEnd(buf, at);
      if (next > end) break;
      const data = at + RECORD_HEADER_BYTES;
      const seconds = readU32LE(buf, at);
      const microseconds = readU32LE(buf, at + 4);
      const wirelen = readU32LE(buf, at + 12);
      this.packet(observationPointId, linkType, buf, data, next - data, wirelen, seconds * 1e6 + microseconds);
      at = next;
    }
    return at;
  }

  /** Decodes and meters one frame buf[offset, offset + caplen) captured at `timestampMicros` (µs since the epoch; the meter counts whole ms). */
  packet(
    observationPointId: number,
    linkType: number,
    buf: Uint8Array,
    offset: number,
    caplen: number,
    wirelen: number,
    timestampMicros: number,
  ): void {
    this.stats.buffers++;
    const decoder = this.#decoder;
    const timestampMs = Math.floor(timestampMicros / 1000);
    this.#count(decoder.decode(linkType, buf, offset, caplen, wirelen), observationPointId, wirelen, timestampMs, timestampMicros);
    // An 802.11 A-MSDU holds several packets; everything else one.
    while (decoder.hasNext) this.#count(decoder.decodeNext(), observationPointId, 0, timestampMs, timestampMicros);
  }

  #count(decoded: boolean, observationPointId: number, wirelen: number, timestampMs: number, timestampMicros: number): void {
    if (decoded) {
      const p = this.#decoder.packet;
      p.timestampMicros = timestampMicros;
      this.stats.metered++;
      this.stats.packets += p.packets;
      this.stats.bytes += p.wireBytes;
      this.#meter.add(observationPointId, p, timestampMs);
    } else {
      this.stats.packets++;
      this.stats.bytes += wirelen;
    }
  }

  /** Decodes and meters a whole pcap/pcapng file held in memory. Throws only when `bytes` is not a capture. */
  ingestCapture(observationPointId: number, bytes: Uint8Array): CaptureReadStats {
    const file = new CaptureFileIngest(this, observationPointId);
    const consumed = file.read(bytes, 0, bytes.length);
    return file.finish(bytes.length - consumed);
  }
}

/**
 * Meters a pcap/pcapng file handed in as consecutive chunks (see
 * CaptureReader.read for the contract). A classic little-endian microsecond
 * pcap goes straight to PacketIngest in batches: its records have the
 * live-capture layout, so no per-record call or conversion is needed.
 */
export class CaptureFileIngest {
  readonly #ingest: PacketIngest;
  readonly #observationPointId: number;
  readonly #reader: CaptureReader;
  #started = false;
  /** The file's link type when the batch path is taken, else -1. */
  #batchLinkType = -1;
  readonly #batchStats: CaptureReadStats = { format: 'pcap', packets: 0, truncated: 0, corruptBlocks: 0, unknownInterface: 0, skippedBlocks: 0 };

  constructor(ingest: PacketIngest, observationPointId: number) {
    this.#ingest = ingest;
    this.#observationPointId = observationPointId;
    this.#reader = new CaptureReader({
      packet: (linkType, buf, offset, caplen, wirelen, timestampMicros) =>
        ingest.packet(observationPointId, linkType, buf, offset, caplen, wirelen, timestampMicros),
    });
  }

  /** Meters every whole record or block in buf[start, end); returns where the first incomplete one starts. */
  read(buf: Uint8Array, start: number, end: number): number {
    let at = start;
    if (!this.#started) {
      this.#started = true;
      const header = readCaptureHeader(buf.subarray(start, end));
      if (header !== null && hasRecordLayout(header)) {
        this.#batchLinkType = header.linkType;
        at += PCAP_RECORDS_START;
      }
    }
    if (this.#batchLinkType < 0) return this.#reader.read(buf, at, end);
    const before = this.#ingest.stats.buffers;
    const stop = this.#ingest.ingestWholeRecords(this.#observationPointId, this.#batchLinkType, buf, at, end);
    this.#batchStats.packets += this.#ingest.stats.buffers - before;
    return stop;
  }

  /** The file ended with `remaining` bytes not consumed by read(): a record or block cut off. */
  finish(remaining: number): CaptureReadStats {
    if (this.#batchLinkType < 0) return this.#reader.finish(remaining);
    if (remaining > 0) this.#batchStats.truncated++;
    return this.#batchStats;
  }
}

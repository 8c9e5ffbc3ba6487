// QUIC client Initial reader: removes the Initial packet protection, which
// anyone can (its keys come from the packet's Destination Connection ID and a
// salt the version fixes: RFC 9001 5.2, RFC 9369 3.3.1), and collects the
// CRYPTO frames that carry the ClientHello, so flow/features/tls.ts can read
// its server name.
//
// With node:crypto (HMAC-SHA256 for HKDF, AES-128-ECB for the header mask,
// AES-128-GCM for the payload): no npm package does Initial decryption, and
// the three primitives are all it takes. It never throws: a packet that is
// not an Initial, or does not decrypt, gives a status.
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import { readU32BE } from '../records.ts';

/** Why no CRYPTO data came out of a datagram. */
export const QuicStatus = {
  OK: 0,
  /** Not a long-header packet of a QUIC version (a short header, another protocol). */
  NOT_INITIAL: 1,
  /** Long-header packets of a version below, none of them an Initial (0-RTT, Handshake). */
  OTHER_LONG_HEADER: 5,
  /** A version whose Initial salt is not known here. */
  UNKNOWN_VERSION: 2,
  /** The header or a frame ends early or has a length that cannot be right. */
  MALFORMED: 3,
  /** The payload fails its authentication tag: not the client's Initial (a server's, a corrupted or cut packet). */
  UNDECRYPTABLE: 4,
} as const;
export type QuicStatus = (typeof QuicStatus)[keyof typeof QuicStatus];

interface VersionKeys {
  salt: Buffer;
  /** HKDF label prefix: "quic" (v1 and drafts), "quicv2" (RFC 9369). */
  labels: 'quic' | 'quicv2';
  /** The long-header packet type bits of an Initial: 0 (v1), 1 (v2). */
  initialType: number;
}

const SALT_V1 = Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex');
const SALT_V2 = Buffer.from('0dede3def700a6db819381be6e269dcbf9bd2ed9', 'hex');
const SALT_DRAFT_29 = Buffer.from('afbfec289993d24c9e9786f19c6111e04390a899', 'hex');
const SALT_DRAFT_23 = Buffer.from('c3eef712c72ebb5a11a7d2432bb46365bef9f502', 'hex');
const SALT_DRAFT_21 = Buffer.from('7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a', 'hex');

/**
 * The versions whose Initials are read: QUIC v1 and v2, IETF drafts 21-34,
 * and Facebook mvfst's versions (which use the salts of the drafts they
 * follow: draft-21 for faceb001, draft-23 for the later ones, v1 for faceb003).
 */
export function initialKeysOf(version: number): VersionKeys | undefined {
  const v1: VersionKeys = { salt: SALT_V1, labels: 'quic', initialType: 0 };
  if (version === 0x00000001 || version === 0xfaceb003) return v1;
  if (version === 0x6b3343cf) return { salt: SALT_V2, labels: 'quicv2', initialType: 1 };
  if (version >= 0xff000021 && version <= 0xff000022) return v1;
  if (version >= 0xff00001d && version <= 0xff000020) return { ...v1, salt: SALT_DRAFT_29 };
  if (version >= 0xff000017 && version <= 0xff00001c) return { ...v1, salt: SALT_DRAFT_23 };
  if ((version >= 0xff000015 && version <= 0xff000016) || version === 0xfaceb001) return { ...v1, salt: SALT_DRAFT_21 };
  if (version === 0xfaceb002 || (version >= 0xfaceb00d && version <= 0xfaceb013)) return { ...v1, salt: SALT_DRAFT_23 };
  return undefined;
}

/** What one client Initial gave. */
export interface QuicInitial {
  version: number;
  /** The Destination Connection ID the keys came from. */
  destinationConnectionId: Uint8Array;
  /** CRYPTO frames: (offset in the handshake stream, bytes), in packet order. */
  crypto: { offset: number; data: Uint8Array }[];
}

/**
 * Reads the client Initial packets of one UDP datagram buf[start, end)
 * (coalesced packets are walked; 0-RTT and others skipped). Keys come from
 * `originalDcid` when given (a client's later Initials carry the server's
 * connection ID, the keys stay those of its first), else from each packet's
 * Destination Connection ID.
 */
export function readClientInitial(buf: Uint8Array, start: number, end: number, originalDcid?: Uint8Array): QuicInitial | QuicStatus {
  let result: QuicInitial | undefined;
  let firstFault: QuicStatus = QuicStatus.NOT_INITIAL;
  let longHeaders = 0;
  for (let at = start; at < end; ) {
    const first = buf[at]!;
    if ((first & 0x80) === 0 || at + 7 > end) break; // a short header packet ends the datagram's long ones
    const version = readU32BE(buf, at + 1);
    const keys = initialKeysOf(version);
    if (keys === undefined) return result ?? (version === 0 ? QuicStatus.NOT_INITIAL : QuicStatus.UNKNOWN_VERSION);
    const dcidLength = buf[at + 5]!;
    if (dcidLength > 20 || at + 6 + dcidLength + 1 > end) return result ?? QuicStatus.MALFORMED;
    const dcid = buf.subarray(at + 6, at + 6 + dcidLength);
    const scidAt = at + 6 + dcidLength;
    const scidLength = buf[scidAt]!;
    let p = scidAt + 1 + scidLength;
    if (scidLength > 20 || p > end) return result ?? QuicStatus.MALFORMED;
    longHeaders++;
    const type = (first >> 4) & 0x03;
    if (type === keys.initialType) {
      const token = varint(buf, p, end);
      if (token < 0) return result ?? QuicStatus.MALFORMED;
      p = varintEnd + token;
    }
    const length = varint(buf, p, end);
    if (length < 0) return result ?? QuicStatus.MALFORMED;
    const pnAt = varintEnd;
    const packetEnd = pnAt + length;
    if (packetEnd > end) return result ?? QuicStatus.MALFORMED;
    if (type === keys.initialType) {
      const frames = decryptInitial(buf, at, pnAt, packetEnd, keys, originalDcid ?? dcid);
      if (typeof frames === 'number') {
        if (firstFault === QuicStatus.NOT_INITIAL) firstFault = frames;
      } else {
        const crypto = cryptoFrames(frames);
        if (typeof crypto === 'number') {
          if (firstFault === QuicStatus.NOT_INITIAL) firstFault = crypto;
        } else {
          result ??= { version, destinationConnectionId: new Uint8Array(originalDcid ?? dcid), crypto: [] };
          result.crypto.push(...crypto);
        }
      }
    }
    at = packetEnd;
  }
  return result ?? (firstFault === QuicStatus.NOT_INITIAL && longHeaders > 0 ? QuicStatus.OTHER_LONG_HEADER : firstFault);
}

/** Removes header protection and decrypts one Initial (RFC 9001 5.3-5.4); the plaintext frames, or a status. */
function decryptInitial(buf: Uint8Array, packetStart: number, pnAt: number, packetEnd: number, keys: VersionKeys, dcid: Uint8Array): Uint8Array | QuicStatus {
  // The header-protection sample starts 4 bytes after the packet number's first byte, whatever its length.
  if (pnAt + 4 + 16 > packetEnd) return QuicStatus.MALFORMED;
  const secret = hkdfExpandLabel(hkdfExtract(keys.salt, dcid), 'client in', 32);
  const key = hkdfExpandLabel(secret, `${keys.labels} key`, 16);
  const iv = hkdfExpandLabel(secret, `${keys.labels} iv`, 12);
  const hp = hkdfExpandLabel(secret, `${keys.labels} hp`, 16);
  const mask = createCipheriv('aes-128-ecb', hp, null).update(buf.subarray(pnAt + 4, pnAt + 20));
  const first = buf[packetStart]! ^ (mask[0]! & 0x0f);
  const pnLength = (first & 0x03) + 1;
  const header = Buffer.from(buf.subarray(packetStart, pnAt + pnLength));
  header[0] = first;
  let packetNumber = 0;
  for (let i = 0; i < pnLength; i++) {
    const byte = buf[pnAt + i]! ^ mask[1 + i]!;
    header[header.length - pnLength + i] = byte;
    packetNumber = packetNumber * 256 + byte;
  }
  const cipherStart = pnAt + pnLength;
  if (packetEnd - cipherStart < 16) return QuicStatus.MALFORMED;
  const nonce = Buffer.from(iv);
  for (let i = 0; i < 4; i++) nonce[11 - i]! ^= (packetNumber >>> (8 * i)) & 0xff;
  try {
    const decipher = createDecipheriv('aes-128-gcm', key, nonce);
    decipher.setAAD(header);
    decipher.setAuthTag(buf.subarray(packetEnd - 16, packetEnd));
    return Buffer.concat([decipher.update(buf.subarray(cipherStart, packetEnd - 16)), decipher.final()]);
  } catch {
    return QuicStatus.UNDECRYPTABLE;
  }
}

/** The CRYPTO frames of an Initial's plaintext (RFC 9000 17.2.2: only PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE may occur). */
function cryptoFrames(frames: Uint8Array): { offset: number; data: Uint8Array }[] | QuicStatus {
  const found: { offset: number; data: Uint8Array }[] = [];
  const end = frames.length;
  for (let p = 0; p < end; ) {
    const type = frames[p]!;
    if (type === 0x00 || type === 0x01) {
      p++;
    } else if (type === 0x06) {
      const offset = varint(frames, p + 1, end);
      if (offset < 0) return QuicStatus.MALFORMED;
      const length = varint(frames, varintEnd, end);
      if (length < 0 || varintEnd + length > end) return QuicStatus.MALFORMED;
      found.push({ offset, data: frames.subarray(varintEnd, varintEnd + length) });
      p = varintEnd + length;
    } else if (type === 0x02 || type === 0x03) {
      // largest, delay, range count, first range; then (gap, length) per range; ECN counts for 0x03.
      let q = p + 1;
      const fields: number[] = [];
      for (let i = 0; i < 4; i++) {
        const v = varint(frames, q, end);
        if (v < 0) return QuicStatus.MALFORMED;
        fields.push(v);
        q = varintEnd;
      }
      const more = fields[2]! * 2 + (type === 0x03 ? 3 : 0);
      if (more > end - q) return QuicStatus.MALFORMED;
      for (let i = 0; i < more; i++) {
        if (varint(frames, q, end) < 0) return QuicStatus.MALFORMED;
        q = varintEnd;
      }
      p = q;
    } else if (type === 0x1c) {
      // error code, frame type, reason length, reason.
      let q = p + 1;
      for (let i = 0; i < 2; i++) {
        if (varint(frames, q, end) < 0) return QuicStatus.MALFORMED;
        q = varintEnd;
      }
      const reason = varint(frames, q, end);
      if (reason < 0 || varintEnd + reason > end) return QuicStatus.MALFORMED;
      p = varintEnd + reason;
    } else {
      return QuicStatus.MALFORMED;
    }
  }
  return found;
}

function hkdfExtract(salt: Buffer, ikm: Uint8Array): Buffer {
  return createHmac('sha256', salt).update(ikm).digest();
}

/** RFC 8446 7.1 HKDF-Expand-Label with an empty context, for lengths up to one SHA-256 block (32). */
function hkdfExpandLabel(secret: Buffer, label: string, length: number): Buffer {
  const full = `tls13 ${label}`;
  const info = Buffer.alloc(2 + 1 + full.length + 1 + 1);
  info.writeUInt16BE(length, 0);
  info[2] = full.length;
  info.write(full, 3, 'latin1');
  info[3 + full.length] = 0; // context length
  info[4 + full.length] = 1; // HKDF-Expand's block counter T(1)
  return createHmac('sha256', secret).update(info).digest().subarray(0, length);
}

/** Where the last varint read ended (module state: no allocation per read). */
let varintEnd = 0;

/** RFC 9000 16 variable-length integer at buf[at]; -1 when it runs past `end`. Values beyond 2^53 are not met here (lengths and offsets within a datagram). */
function varint(buf: Uint8Array, at: number, end: number): number {
  if (at >= end) return -1;
  const size = 1 << (buf[at]! >> 6);
  if (at + size > end) return -1;
  let v = buf[at]! & 0x3f;
  for (let i = 1; i < size; i++) v = v * 256 + buf[at + i]!;
  varintEnd = at + size;
  return v;
}

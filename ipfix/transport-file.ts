// IPFIX file (RFC 5655): the messages of one transport session written one
// after another, type information and templates first so a reader can decode
// every data set it meets. The file is created when the transport is made, so
// a bad path fails at start-up; writes go through a stream so the meter never
// waits on the disk, and a disk slower than the export holds records in the
// bounded queue (RecordQueue) rather than growing the stream's buffer.
import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import { PodflowError } from '../common/errors.ts';
import type { IpfixEncoder } from './encoder.ts';
import type { ExportRecord } from '../enrich/export-record.ts';
import {
  DEFAULT_MAX_QUEUED_RECORDS,
  type EncodedMessage,
  type ExportTransport,
  RecordQueue,
  TransportCounters,
  type TransportOptions,
  type TransportStats,
} from './transport.ts';
import { MAX_MESSAGE_BYTES } from './wire.ts';

export interface FileTransportOptions extends TransportOptions {
  /** Records held while the file's stream is backed up; default DEFAULT_MAX_QUEUED_RECORDS. */
  maxQueuedRecords?: number;
  /** Default: a write stream on the file's descriptor (tests pass a slow one). */
  createStream?: (fd: number) => WriteStream;
}

export class FileTransport implements ExportTransport {
  readonly target: string;
  readonly #counters: TransportCounters;
  readonly #queue: RecordQueue;
  readonly #encoder: IpfixEncoder;
  readonly #out: WriteStream;
  readonly #clock: TransportOptions['clock'];
  #failed = false;
  #closed = false;
  #finished: Promise<void>;

  constructor(target: string, path: string, options: FileTransportOptions) {
    this.target = target;
    this.#clock = options.clock;
    this.#counters = new TransportCounters(target, options);
    const maxQueued = options.maxQueuedRecords ?? DEFAULT_MAX_QUEUED_RECORDS;
    if (!(maxQueued > 0)) throw new PodflowError('PODFLOW_ERR_EXPORT_CONFIG', `maxQueuedRecords must be positive, got ${maxQueued}`);
    this.#queue = new RecordQueue(maxQueued, this.#counters);
    let fd: number;
    try {
      fd = openSync(path, 'w');
    } catch (err) {
      throw new PodflowError('PODFLOW_ERR_EXPORT_FILE', `${path}: ${(err as Error).message}`, { cause: err });
    }
    this.#out = (options.createStream ?? ((d) => createWriteStream('', { fd: d })))(fd);
    this.#finished = new Promise((resolve) => this.#out.once('close', resolve));
    this.#out.on('error', (err) => {
      // The stream is broken: nothing queued can be written any more.
      this.#failed = true;
      this.#counters.error(new PodflowError('PODFLOW_ERR_EXPORT_FILE', `${path}: ${err.message}`, { cause: err }));
      this.#queue.discard('sendFailed');
    });
    this.#out.on('drain', () => this.#writeQueued());
    this.#encoder = options.newEncoder(MAX_MESSAGE_BYTES);
    for (const message of this.#counters.opening(this.#encoder)) this.#write(message);
  }

  export(records: readonly ExportRecord[]): void {
    if (this.#closed) throw new PodflowError('PODFLOW_ERR_EXPORT_CLOSED', this.target);
    if (this.#failed) this.#counters.notSentRecords('sendFailed', records);
    else this.#queue.push(records);
    this.#writeQueued();
  }

  stats(): TransportStats {
    return this.#counters.snapshot(!this.#closed && !this.#failed, this.#queue.size);
  }

  /** Writes what is queued and closes the file; what is still queued after `timeoutMs` is counted as not sent. */
  async close(timeoutMs: number): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#writeQueued();
    }
    let timer;
    await Promise.race([this.#finished, new Promise<void>((resolve) => (timer = this.#clock.setTimeout(resolve, timeoutMs)))]);
    this.#clock.clearTimeout(timer!);
    this.destroy();
  }

  destroy(): void {
    this.#closed = true;
    this.#queue.discard('closed');
    this.#out.destroy();
  }

  /** Writes queued records while the stream takes them; resumes on 'drain'; ends the file once closed and empty. */
  #writeQueued(): void {
    while (!this.#failed && this.#queue.size > 0 && !this.#out.writableNeedDrain) {
      for (const message of this.#counters.encode(this.#encoder, this.#queue.shift()!)) this.#write(message);
    }
    if (this.#closed && this.#queue.size === 0 && !this.#out.writableEnded) this.#out.end();
  }

  #write(message: EncodedMessage): void {
    this.#counters.sent(message.bytes, message.records.flows);
    this.#out.write(message.bytes);
  }
}

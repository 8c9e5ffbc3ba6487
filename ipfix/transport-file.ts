// IPFIX file (RFC 5655): the messages of one transport session written one
// after another, templates (and type information) first so a reader can
// decode every data set it meets. The file is created when the transport is
// made, so a bad path fails at start-up; writes go through a stream so the
// meter never waits on the disk.
import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import { PodflowError } from '../common/errors.ts';
import { DEFAULT_STREAM_MAX_MESSAGE_BYTES } from './transport-tcp.ts';
import type { IpfixEncoder } from './encoder.ts';
import type { ExportRecord } from './types.ts';
import { type ExportTransport, TransportCounters, type TransportOptions, type TransportStats } from './transport.ts';

export class FileTransport implements ExportTransport {
  readonly target: string;
  readonly #counters: TransportCounters;
  readonly #encoder: IpfixEncoder;
  readonly #out: WriteStream;
  readonly #clock: TransportOptions['clock'];
  #closed = false;
  #finished: Promise<void>;

  constructor(target: string, path: string, options: TransportOptions) {
    this.target = target;
    this.#clock = options.clock;
    this.#counters = new TransportCounters(target, options);
    let fd: number;
    try {
      fd = openSync(path, 'w');
    } catch (err) {
      throw new PodflowError('PODFLOW_ERR_EXPORT_FILE', `${path}: ${(err as Error).message}`, { cause: err });
    }
    this.#out = createWriteStream('', { fd });
    this.#finished = new Promise((resolve) => this.#out.once('close', resolve));
    this.#out.on('error', (err) => {
      this.#counters.error(new PodflowError('PODFLOW_ERR_EXPORT_FILE', `${path}: ${err.message}`, { cause: err }));
    });
    this.#encoder = options.newEncoder(DEFAULT_STREAM_MAX_MESSAGE_BYTES);
    this.#write(this.#counters.opening(this.#encoder));
  }

  export(records: readonly ExportRecord[]): void {
    if (this.#closed) throw new PodflowError('PODFLOW_ERR_EXPORT_CLOSED', this.target);
    if (records.length === 0) return;
    this.#counters.records += records.length;
    this.#write(this.#encoder.encode(records));
  }

  stats(): TransportStats {
    return this.#counters.snapshot(!this.#closed, 0);
  }

  async close(timeoutMs: number): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#out.end();
    }
    let timer;
    await Promise.race([this.#finished, new Promise<void>((resolve) => (timer = this.#clock.setTimeout(resolve, timeoutMs)))]);
    this.#clock.clearTimeout(timer!);
  }

  destroy(): void {
    this.#closed = true;
    this.#out.destroy();
  }

  #write(messages: Uint8Array[]): void {
    for (const message of messages) {
      this.#counters.sent(message);
      this.#out.write(message);
    }
  }
}

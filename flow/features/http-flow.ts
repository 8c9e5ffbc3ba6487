// A TCP flow's first HTTP/1.x request and response: each side's first
// payload is read as a message head (flow/features/http.ts); a side whose
// first payload is no HTTP is not looked at again.
import { HttpStatus, parseHttpHead, type HttpRequest, type HttpResponse } from './http.ts';

export interface HttpStats {
  requests: number;
  responses: number;
  /** Heads cut before their empty line (a split head, the capture's snaplen): their fields are what was read. */
  incomplete: number;
}

export function emptyHttpStats(): HttpStats {
  return { requests: 0, responses: 0, incomplete: 0 };
}

/** What a flow record carries of HTTP. */
export interface HttpFields {
  method: string;
  host: string;
  target: string;
  userAgent: string;
  /** The first response's status code, 0 when none was seen. */
  statusCode: number;
}

export class HttpFlow {
  request: HttpRequest | undefined;
  response: HttpResponse | undefined;
  readonly #stats: HttpStats;
  readonly #looked = [false, false];

  constructor(stats: HttpStats) {
    this.#stats = stats;
  }

  get wanted(): boolean {
    return !this.#looked[0] || !this.#looked[1];
  }

  /** One TCP segment's payload buf[start, end), from the flow's first sender (forward) or the other side. */
  segment(forward: boolean, buf: Uint8Array, start: number, end: number): void {
    const side = forward ? 0 : 1;
    if (this.#looked[side] || end <= start) return;
    this.#looked[side] = true;
    const result = parseHttpHead(buf, start, end);
    if (result === HttpStatus.NOT_HTTP) return;
    if (result.status === HttpStatus.INCOMPLETE) this.#stats.incomplete++;
    if (result.head.kind === 'request') {
      this.request ??= result.head.request;
      this.#stats.requests++;
    } else {
      this.response ??= result.head.response;
      this.#stats.responses++;
    }
  }

  fields(): HttpFields | undefined {
    if (this.request === undefined && this.response === undefined) return undefined;
    return {
      method: this.request?.method ?? '',
      host: this.request?.host ?? '',
      target: this.request?.target ?? '',
      userAgent: this.request?.userAgent ?? '',
      statusCode: this.response?.statusCode ?? 0,
    };
  }
}

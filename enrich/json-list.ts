// A Kubernetes list's JSON ({"kind":…,"metadata":{…},"items":[{…},…]}), split
// as its bytes arrive into each item's JSON text and the list without its
// items. Pure: bytes in, each item's bytes and the rest's parsed JSON out.
//
// Why by hand: an API server answers a list at resourceVersion=0 from its
// watch cache whole, whatever the limit (k8s.io/apiserver cacher: limits are
// ignored at version zero), and 100k realistic pods are ~730 MB of JSON:
// longer than V8's longest string, so no client that reads the body as one
// text (client-node's generated API does, then deserialises every field into
// typed classes) can read it at all. Item by item, only one item's text and
// object live at a time, and the reader decodes each item as it likes
// (enrich/json-fields.ts: the kept members, then JSON.parse). A streaming
// JSON library (tokens assembled into objects in JavaScript) is several
// times slower than this byte scan plus JSON.parse per item.
//
// The scan relies on UTF-8: '"', '\\', '{', '}', '[', ']' and ':' never occur
// inside a multi-byte sequence, so bytes can be tested one at a time.

import {
  BACKSLASH,
  CLOSE_BRACE,
  CLOSE_BRACKET,
  COLON,
  keptFields,
  keptFieldsAt,
  OPEN_BRACE,
  OPEN_BRACKET,
  QUOTE,
  type FieldTree,
} from './json-fields.ts';

export interface JsonListSplitterOptions {
  /** Each item's JSON text: the kept members only, when `keep` is given. */
  onItem: (json: string) => void;
  /** An item that is not a JSON object (it was skipped; the list goes on). */
  onBadItem: (error: SyntaxError) => void;
  /** The members of each item to keep (enrich/json-fields.ts); without it, whole items. */
  keep?: FieldTree;
}

/** An item whose start is carried to the next chunk at most this long; a longer one is read byte by byte (a carried item is scanned again from its start with each chunk). */
const maxCarriedBytes = 256 * 1024;

export class JsonListSplitter {
  readonly #onItem: (json: string) => void;
  readonly #onBadItem: (error: SyntaxError) => void;
  readonly #keep: FieldTree | undefined;
  /** Open objects and arrays. */
  #depth = 0;
  #inString = false;
  #escaped = false;
  /** The string being read at depth 1 (a key, or a value such as the kind), in pieces if it spans chunks. */
  #topString: Buffer[] = [];
  /** The last string closed at depth 1, and the key whose value is being read. */
  #lastString = '';
  #member = '';
  /** Inside the items array's brackets. */
  #inItems = false;
  /**
   * The start of an item (from its '{') that its chunk ended inside: the next chunk is appended to it and
   * the item read in one piece there. Scanning it byte by byte here and again in #emitItem cost more than
   * the copy (a 100k-pod list: ~1.4 s of ~11 s of sync in push() alone).
   */
  #carried: Buffer | undefined;
  /** Pieces of the item being read byte by byte (one longer than maxCarriedBytes, or found malformed). */
  #item: Buffer[] = [];
  /** Why the item being read byte by byte is malformed, when it is. */
  #itemError: SyntaxError | undefined;
  /** Pieces of everything but the items' contents. */
  readonly #rest: Buffer[] = [];
  #items = 0;

  constructor(options: JsonListSplitterOptions) {
    this.#onItem = options.onItem;
    this.#onBadItem = options.onBadItem;
    this.#keep = options.keep;
  }

  /** Items handed to onItem or onBadItem so far. */
  get items(): number {
    return this.#items;
  }

  push(chunk: Buffer): void {
    if (this.#carried !== undefined) {
      chunk = Buffer.concat([this.#carried, chunk]);
      this.#carried = undefined;
    }
    // State in locals: the loop runs once per byte of every list (~730 MB at 100k pods).
    let depth = this.#depth;
    let inString = this.#inString;
    let escaped = this.#escaped;
    let inItems = this.#inItems;
    let itemFrom = this.#item.length > 0 ? 0 : -1;
    let restFrom = inItems && depth >= 2 ? -1 : 0;
    let topFrom = inString && depth === 1 ? 0 : -1;
    scan: for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (inString) {
        if (escaped) escaped = false;
        else if (c === BACKSLASH) escaped = true;
        else if (c === QUOTE) {
          inString = false;
          if (topFrom >= 0) {
            this.#topString.push(chunk.subarray(topFrom, i));
            this.#lastString = Buffer.concat(this.#topString).toString('utf8');
            this.#topString = [];
            topFrom = -1;
          }
        }
        continue;
      }
      switch (c) {
        case QUOTE:
          inString = true;
          if (depth === 1) topFrom = i + 1;
          break;
        case COLON:
          if (depth === 1) this.#member = this.#lastString;
          break;
        case OPEN_BRACE:
        case OPEN_BRACKET:
          depth++;
          if (depth === 2 && c === OPEN_BRACKET && this.#member === 'items') {
            inItems = true;
            // The list keeps its brackets, empty: the items go to onItem.
            this.#rest.push(chunk.subarray(restFrom, i + 1));
            restFrom = -1;
          } else if (inItems && depth === 3 && c === OPEN_BRACE) {
            // An item wholly in this chunk (most are) is read once, by the
            // kept-members scan, which also finds its end; one that runs on
            // into the next chunk or is malformed is read by this loop and
            // decoded once complete.
            if (this.#keep !== undefined) {
              let kept: { text: string; end: number } | undefined;
              try {
                kept = keptFieldsAt(chunk, i, this.#keep);
              } catch (err) {
                this.#itemError = err as SyntaxError;
              }
              if (kept !== undefined) {
                this.#items++;
                this.#onItem(kept.text);
                i = kept.end - 1;
                depth--;
                break;
              }
              if (this.#itemError === undefined && chunk.length - i <= maxCarriedBytes) {
                // The item goes on in the next chunk: read it there, whole. Nothing else is open in this one.
                this.#carried = Buffer.from(chunk.subarray(i));
                depth--;
                break scan;
              }
            }
            itemFrom = i;
          }
          break;
        case CLOSE_BRACE:
        case CLOSE_BRACKET:
          if (inItems && depth === 3 && c === CLOSE_BRACE) {
            this.#item.push(chunk.subarray(itemFrom, i + 1));
            itemFrom = -1;
            this.#emitItem();
          } else if (inItems && depth === 2) {
            inItems = false;
            restFrom = i;
          }
          depth--;
          break;
      }
    }
    // What continues in the next chunk is copied: the chunk itself is not kept.
    if (itemFrom >= 0) this.#item.push(Buffer.from(chunk.subarray(itemFrom)));
    if (restFrom >= 0) this.#rest.push(Buffer.from(chunk.subarray(restFrom)));
    if (topFrom >= 0) this.#topString.push(Buffer.from(chunk.subarray(topFrom)));
    this.#depth = depth;
    this.#inString = inString;
    this.#escaped = escaped;
    this.#inItems = inItems;
  }

  /** The list without its items' contents ("items": []), parsed. Throws a SyntaxError if the JSON was malformed or cut short. */
  end(): Record<string, unknown> {
    if (this.#depth !== 0 || this.#inString || this.#item.length > 0 || this.#carried !== undefined) throw new SyntaxError(`the list ended inside ${this.#inString ? 'a string' : 'an object or array'}`);
    const list: unknown = JSON.parse(Buffer.concat(this.#rest).toString('utf8'));
    if (typeof list !== 'object' || list === null || Array.isArray(list)) throw new SyntaxError('the list is not a JSON object');
    return list as Record<string, unknown>;
  }

  #emitItem(): void {
    const json = this.#item.length === 1 ? this.#item[0]! : Buffer.concat(this.#item);
    const error = this.#itemError;
    this.#item = [];
    this.#itemError = undefined;
    this.#items++;
    if (this.#keep === undefined) return this.#onItem(json.toString('utf8'));
    let text: string;
    try {
      if (error !== undefined) throw error;
      text = keptFields(json, this.#keep);
    } catch (err) {
      return this.#onBadItem(err as SyntaxError);
    }
    this.#onItem(text);
  }
}


// The members of a JSON object that a reader keeps, cut out of its bytes
// before parsing: an object's JSON in, the JSON text of the same object with
// only the kept members out. Pure: bytes in, a string out.
//
// Why by hand: a realistic pod is ~7.6 KiB of JSON of which podflow keeps
// ~0.5 KiB (name, uid, labels, owner, node, phase, addresses); the rest is
// managedFields, annotations, the containers' spec and status. JSON.parse of
// the whole item (native, but it builds every object and string of it, for
// the collector to free) was ~40 µs of the ~65 µs an item cost to decode;
// scanning over the members nobody reads (one test per byte, no objects) and
// parsing what is left is about half of that. A streaming JSON library hands every
// token to JavaScript, which is slower than JSON.parse of the whole item.
//
// What is kept is parsed by JSON.parse, so its strings, numbers and nesting
// are checked as ever; what is skipped is only scanned for its extent (a
// malformed number inside managedFields goes unnoticed, an unbalanced bracket
// or an unterminated string does not). Member names are compared as their
// raw bytes: the names podflow reads are plain identifiers, which no encoder
// escapes. Relies on UTF-8 as enrich/json-list.ts does: '"', '\\', and the
// brackets never occur inside a multi-byte sequence.

/** Members kept: `true` keeps the whole value, a tree keeps those of its members (when the value is an object). */
export interface FieldTree {
  readonly [member: string]: true | FieldTree;
}

/** The bytes of JSON's structure (enrich/json-list.ts reads them too). */
export const QUOTE = 0x22;
export const BACKSLASH = 0x5c;
export const OPEN_BRACE = 0x7b;
export const CLOSE_BRACE = 0x7d;
export const OPEN_BRACKET = 0x5b;
export const CLOSE_BRACKET = 0x5d;
export const COLON = 0x3a;
const COMMA = 0x2c;

/**
 * The JSON text of the object in `json` with only the members `tree` keeps
 * (an object with none of them is `{}`). Throws a SyntaxError when the bytes
 * are not one JSON object, as far as the scan sees (see above).
 */
export function keptFields(json: Buffer, tree: FieldTree): string {
  const kept = keptFieldsAt(json, skipSpace(json, 0), tree);
  if (kept === undefined) throw new SyntaxError('the object ends before its closing brace');
  if (skipSpace(json, kept.end) !== json.length) throw new SyntaxError('bytes after the object');
  return kept.text;
}

/**
 * The kept members (as keptFields) of the object that opens at `at` in
 * `bytes`, and the position after its closing brace; undefined if `bytes`
 * ends first (the rest is in the next chunk). Throws a SyntaxError for bytes
 * that are not an object.
 */
export function keptFieldsAt(bytes: Buffer, at: number, tree: FieldTree): { text: string; end: number } | undefined {
  const out: string[] = [];
  const end = keepMembers(bytes, at, tree, out);
  return end === INCOMPLETE ? undefined : { text: out.join(''), end };
}

/** Returned by the readers below when the bytes end before what they read does. */
const INCOMPLETE = -1;

/** Reads the object at `at` into `out`, kept members only; returns the position after its closing brace. */
function keepMembers(json: Buffer, at: number, tree: FieldTree, out: string[]): number {
  if (json[at] !== OPEN_BRACE) return unexpected(json, at, 'an object');
  out.push('{');
  let first = true;
  let i = skipSpace(json, at + 1);
  if (json[i] === CLOSE_BRACE) {
    out.push('}');
    return i + 1;
  }
  for (;;) {
    if (json[i] !== QUOTE) return unexpected(json, i, 'a member name');
    const nameEnd = stringEnd(json, i);
    if (nameEnd === INCOMPLETE) return INCOMPLETE;
    const name = json.toString('utf8', i + 1, nameEnd - 1);
    i = skipSpace(json, nameEnd);
    if (json[i] !== COLON) return unexpected(json, i, "':'");
    const valueAt = skipSpace(json, i + 1);
    // Own property only: a member named "constructor" is not kept by Object.prototype.
    const kept = Object.hasOwn(tree, name) ? tree[name] : undefined;
    if (kept === true) {
      i = valueEnd(json, valueAt);
      if (i === INCOMPLETE) return INCOMPLETE;
      out.push(first ? '"' : ',"', name, '":', json.toString('utf8', valueAt, i));
      first = false;
    } else if (kept !== undefined && json[valueAt] === OPEN_BRACE) {
      out.push(first ? '"' : ',"', name, '":');
      i = keepMembers(json, valueAt, kept, out);
      first = false;
    } else i = valueEnd(json, valueAt);
    if (i === INCOMPLETE) return INCOMPLETE;
    i = skipSpace(json, i);
    if (json[i] === COMMA) i = skipSpace(json, i + 1);
    else if (json[i] === CLOSE_BRACE) {
      out.push('}');
      return i + 1;
    } else return unexpected(json, i, "',' or '}'");
  }
}

/** The position after the value at `at`: a string, an object or array (brackets balanced, strings jumped), or a literal or number. */
function valueEnd(json: Buffer, at: number): number {
  const c = json[at];
  if (c === QUOTE) return stringEnd(json, at);
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    let depth = 0;
    for (let i = at; i < json.length; i++) {
      const b = json[i]!;
      if (b === QUOTE) {
        i = stringEnd(json, i) - 1;
        if (i < 0) return INCOMPLETE;
      } else if (b === OPEN_BRACE || b === OPEN_BRACKET) depth++;
      else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
        if (--depth === 0) return i + 1;
      }
    }
    return INCOMPLETE;
  }
  let i = at;
  while (i < json.length) {
    const b = json[i]!;
    if (b === COMMA || b === CLOSE_BRACE || b === CLOSE_BRACKET || b <= 0x20) break;
    i++;
  }
  // A literal or number is complete only once what follows it is in the bytes.
  if (i === json.length) return INCOMPLETE;
  if (i === at) return unexpected(json, at, 'a value');
  return i;
}

/** The position after the closing quote of the string opening at `at`. */
function stringEnd(json: Buffer, at: number): number {
  // A byte loop: a pod's ~500 strings are short, and a Buffer.indexOf call per string costs more than reading them.
  for (let i = at + 1; i < json.length; i++) {
    const b = json[i];
    if (b === BACKSLASH) i++;
    else if (b === QUOTE) return i + 1;
  }
  return INCOMPLETE;
}

function skipSpace(json: Buffer, at: number): number {
  let i = at;
  while (i < json.length && (json[i] === 0x20 || json[i] === 0x0a || json[i] === 0x0d || json[i] === 0x09)) i++;
  return i;
}

/** INCOMPLETE where the bytes ended; a SyntaxError thrown for any other byte than the one expected. */
function unexpected(json: Buffer, at: number, expected: string): number {
  if (at >= json.length) return INCOMPLETE;
  throw new SyntaxError(`expected ${expected}, found '${String.fromCharCode(json[at]!)}'`);
}

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { errorCatalog, PodflowError } from '../../common/errors.ts';

const documented = new Set(
  [...readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8').matchAll(/^- `(PODFLOW_ERR_[A-Z0-9_]+)`: \S/gm)]
    .map((m) => m[1]),
);

test('every error code in the catalog is documented in docs/errors.md', () => {
  const undocumented = Object.keys(errorCatalog).filter((code) => !documented.has(code));
  assert.deepEqual(undocumented, []);
});

test('docs/errors.md documents no code the catalog lacks', () => {
  const unknown = [...documented].filter((code) => !(code in errorCatalog));
  assert.deepEqual(unknown, []);
});

test('a PodflowError carries its code, the catalog message and the cause', () => {
  const cause = new Error('inner');
  const err = new PodflowError('PODFLOW_ERR_CLI_USAGE', 'unknown option --x', { cause });
  assert.equal(err.code, 'PODFLOW_ERR_CLI_USAGE');
  assert.match(err.message, /^invalid command line: unknown option --x$/);
  assert.equal(err.cause, cause);
});

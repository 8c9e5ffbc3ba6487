import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { rootLogger } from '../../agent/log.ts';
import { connectError } from '../../ipfix/transport-tcp.ts';

test('an error with a cause is logged with its message once and the cause nested (no "closed by the collector: closed by the collector")', () => {
  const lines: string[] = [];
  const out = new Writable({ write: (chunk, _encoding, callback) => { lines.push(String(chunk)); callback(); } });
  const log = rootLogger('info', { node: 'n1' }, out);
  const cause = Object.assign(new Error('closed by the collector'), { code: 'ECONNRESET' });
  log.warn({ err: connectError('tcp://collector:4739', cause, 'connected') }, 'export error');
  const line = JSON.parse(lines.join('')) as { node: string; err: { message: string; cause: { message: string } } };
  assert.equal(line.err.message, 'cannot connect to the collector: tcp://collector:4739: connection lost: ECONNRESET: closed by the collector');
  assert.equal(line.err.cause.message, 'closed by the collector');
  assert.equal(line.node, 'n1');
});

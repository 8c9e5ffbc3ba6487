// `podflow collect --json` against a reader that stops reading its stdout:
// the collector must slow down its input (TCP) or count what it drops (UDP),
// not buffer without bound (300k flows took it from 76 to 900 MiB).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Exporter } from '../../ipfix/exporter.ts';
import { exportRecord } from '../helpers/ipfix-records.ts';
import { waitFor } from '../helpers/wait.ts';

const CLI = new URL('../../agent/cli.ts', import.meta.url).pathname;

/** podflow collect --json whose stdout the test does not read until it says so. */
async function collectNotRead(t: TestContext, listen: string) {
  const child = spawn(process.execPath, [CLI, 'collect', '--json', '--listen', listen], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => child.once('close', resolve));
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c));
  child.stdout.pause();
  await waitFor(() => /listening on (\S+)/.test(stderr), 10_000, () => `podflow collect to listen: ${stderr}`);
  let lines = 0;
  return {
    url: /listening on (\S+)/.exec(stderr)![1]!,
    rssKiB: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]),
    /** Starts reading its stdout, counting lines. */
    read: () => {
      child.stdout.on('data', (c: Buffer) => {
        for (const b of c) if (b === 10) lines++;
      });
      child.stdout.resume();
    },
    lines: () => lines,
    /** Reads one line, then closes its end of the pipe, as `| head -1` does; resolves with how the process ended. */
    readOneLineAndClose: () => {
      const firstLine = new Promise<void>((resolve) => {
        child.stdout.on('data', (c: Buffer) => {
          if (!c.includes(10)) return;
          child.stdout.destroy();
          resolve();
        });
        child.stdout.resume();
      });
      const exit = new Promise<{ code: number | null; stderr: string }>((resolve) => child.once('close', (code) => resolve({ code, stderr })));
      return { firstLine, exit };
    },
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
      return stderr;
    },
  };
}

/** Bytes waiting unread in the receive queues of the connections accepted on 127.0.0.1:port (rx_queue of /proc/net/tcp). */
function unreadBytes(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  // sl local_address rem_address st tx_queue:rx_queue ...; st 01 = established
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1] === local && f[3] === '01').reduce((n, f) => n + parseInt(f[4]!.split(':')[1]!, 16), 0);
}

test('collect --json over TCP stops reading its connections while its stdout is full, then delivers every flow', async (t) => {
  const collect = await collectNotRead(t, 'tcp://127.0.0.1:0');
  const port = Number(new URL(collect.url).port);
  // No stall give-up within the test: the collector is slow on purpose.
  const exporter = new Exporter({ targets: [collect.url], observationDomainId: 1, tcp: { maxQueuedRecords: 1_000_000, stallTimeoutMs: 600_000 } });
  t.after(() => exporter.destroy());
  let exported = 0;
  // ~2k flows/s (~3 KB per 5 ms): a collector that reads falls 64 KiB behind only if it stops reading.
  const pump = setInterval(() => {
    exporter.export(Array.from({ length: 10 }, () => exportRecord()));
    exported += 10;
  }, 5);
  try {
    await waitFor(() => unreadBytes(port) >= 64 << 10, 60_000, () => `the collector to leave 64 KiB unread: ${unreadBytes(port)} bytes after ${exported} flows`);
  } finally {
    clearInterval(pump);
  }
  t.diagnostic(`${exported} exported, collect RSS ${Math.round(collect.rssKiB() / 1024)} MiB while its reader waits`);
  collect.read();
  await waitFor(() => collect.lines() === exported, 60_000, () => `every flow printed: ${collect.lines()} of ${exported}`);
  await exporter.close();
  assert.equal(exporter.stats()[0]!.records, exported);
  assert.match(await collect.stop(), new RegExp(`${exported} flow records`));
});

test('collect --json over UDP counts the datagrams it drops while its stdout is full', async (t) => {
  const collect = await collectNotRead(t, 'udp://127.0.0.1:0');
  const exporter = new Exporter({ targets: [collect.url], observationDomainId: 1 });
  t.after(() => exporter.destroy());
  // Enough that the output fills: a few thousand lines do, the rest is dropped.
  for (let i = 0; i < 50; i++) {
    exporter.export(Array.from({ length: 200 }, () => exportRecord()));
    await new Promise((resolve) => setImmediate(resolve));
  }
  await exporter.close();
  collect.read();
  const summary = await collect.stop();
  const dropped = Number(/UDP datagrams dropped while the output was full: (\d+)/.exec(summary)?.[1] ?? 0);
  assert.ok(dropped > 0, summary);
  assert.ok(collect.lines() < 10_000, `${collect.lines()} printed`);
});

test('collect --json whose reader goes away (| head -1) ends as on a signal, with its summary, not a write error', async (t) => {
  const collect = await collectNotRead(t, 'tcp://127.0.0.1:0');
  const exporter = new Exporter({ targets: [collect.url], observationDomainId: 1 });
  t.after(() => exporter.destroy());
  exporter.export(Array.from({ length: 10 }, () => exportRecord()));
  const ended = collect.readOneLineAndClose();
  await ended.firstLine;
  // Keep exporting: the next writes meet the closed pipe.
  const pump = setInterval(() => exporter.export([exportRecord()]), 5);
  try {
    const { code, stderr } = await ended.exit;
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, /EPIPE|Error/);
    assert.match(stderr, /flow records/);
  } finally {
    clearInterval(pump);
  }
});

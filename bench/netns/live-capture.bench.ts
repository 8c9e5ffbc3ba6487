// Live capture in a pod's network namespace: tcpreplay sends a generated
// capture (198.18.0.0/15 only) at top speed on the node end of a veth pair;
// the capture under test listens on the pod end, inside the pod namespace.
//   podflow: bench/netns/capture-worker.ts (netns capture handle → flow ingest),
//            CPU from its own process.cpuUsage(), drops from the handle's stats.
//   floors:  tcpdump -i IF -w /dev/null, and tcpdump -s 128 (same namespace),
//            CPU from /proc/<pid>/stat, drops from tcpdump's own exit report.
// Reported: CPU-seconds (user+sys) of the capturing process per million
// packets captured (target ≤ 0.5 for podflow) and kernel drops (target 0).
// The CPU window opens just before tcpreplay starts and closes once the
// capture has everything (or after a 1 s quiet period), so start-up is excluded.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generatePcap } from '../gen-pcap.ts';
import {
  type BenchResult,
  CLK_TCK,
  benchDir,
  compileC,
  formatRate,
  hasModule,
  load,
  machine,
  machineCpu,
  median,
  procCpuSeconds,
  printResult,
  removeDir,
  tempDir,
  writeResult,
} from '../lib/harness.ts';
import { type ReplayStats, type Veth, linkStats, makePod, pidAlive, replay } from './traffic.ts';
import type { WorkerReply, WorkerRequest, WorkerSample } from './capture-protocol.ts';

const { values: opts } = parseArgs({
  options: {
    packets: { type: 'string', default: '1000000' },
    flows: { type: 'string', default: '10000' },
    runs: { type: 'string', default: '3' },
    pps: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const packets = Number(opts.packets);
const flows = Number(opts.flows);
const runs = Number(opts.runs);
const pps = opts.pps ? Number(opts.pps) : undefined;
const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

/** Children this bench started: ended by PID on the way out, never by name. */
const started = new Set<ChildProcess>();
function endStarted(): void {
  for (const c of started) {
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null && pidAlive(c.pid)) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

interface RunResult {
  /** Captured buffers (records). */
  captured: number;
  /** The wire packets they stand for (podflow only: a GSO/GRO super-packet counts its segments). */
  wirePackets?: number;
  metered?: number;
  flows?: number;
  kernelDrops: number;
  /** Packets the capture's own statistics say the kernel passed to it (pcap_stats ps_recv, or tcpdump's "received by filter"). */
  received: number;
  cpuSeconds: number;
  /** user/system split, where known at µs resolution. */
  userSeconds?: number;
  /** CPU-seconds in the window by thread name (podflow only). */
  threads?: Record<string, number>;
  othersCpuSeconds: number;
  sent: ReplayStats;
  load1: number;
  podRx: number;
}

interface Capture {
  label: string;
  ours: boolean;
  command: string;
  run(veth: Veth, measureBin: string, pcap: string): Promise<RunResult>;
}

function tcpdumpCapture(label: string, extra: string[]): Capture {
  return {
    label,
    ours: false,
    command: `ip netns exec POD tcpdump -i IF ${[...extra, '-w', '/dev/null'].join(' ')}`,
    async run(veth, measureBin, pcap) {
      const child = spawn('ip', ['netns', 'exec', veth.podNs, 'tcpdump', '-i', veth.podIf, ...extra, '-w', '/dev/null'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      started.add(child);
      let err = '';
      child.stderr!.setEncoding('utf8');
      const listening = new Promise<void>((ok, fail) => {
        child.stderr!.on('data', (d: string) => {
          err += d;
          if (err.includes('listening on')) ok();
        });
        child.on('close', (code) => fail(new Error(`tcpdump ended (${code}) before listening: ${err}`)));
      });
      const closed = new Promise<void>((ok) => child.on('close', () => ok()));
      await listening;
      const pid = child.pid!; // `ip netns exec` execs tcpdump: same PID
      await sleep(200);
      const rx0 = linkStats(veth.podNs, veth.podIf).rxPackets;
      const load1 = Number(load().split(' ')[0]);
      const m0 = machineCpu();
      const c0 = procCpuSeconds(pid);
      const sent = await replay(measureBin, veth, pcap, pps);
      await sleep(1000); // tcpdump reports nothing until it ends: give it a quiet second to drain
      const c1 = procCpuSeconds(pid);
      const m1 = machineCpu();
      const podRx = linkStats(veth.podNs, veth.podIf).rxPackets - rx0;
      process.kill(pid, 'SIGINT');
      await closed;
      started.delete(child);
      const captured = Number(/(\d+) packets? captured/.exec(err)?.[1]);
      const drops = Number(/(\d+) packets? dropped by kernel/.exec(err)?.[1]);
      const received = Number(/(\d+) packets? received by filter/.exec(err)?.[1]);
      const cpu = c1.user + c1.sys - c0.user - c0.sys;
      return {
        captured,
        kernelDrops: drops,
        received,
        cpuSeconds: cpu,
        othersCpuSeconds: Math.max(0, (m1.busy - m0.busy) / CLK_TCK - cpu - sent.cpuSeconds),
        sent,
        load1,
        podRx,
      };
    },
  };
}

const workerScript = join(benchDir, 'netns/capture-worker.ts');

function ask(child: ChildProcess, req: WorkerRequest): Promise<WorkerReply> {
  return new Promise((ok, fail) => {
    const onMessage = (m: WorkerReply) => {
      child.off('exit', onExit);
      ok(m);
    };
    const onExit = (code: number | null) => {
      child.off('message', onMessage);
      fail(new Error(`capture worker exited (${code}) while asked ${req.type}`));
    };
    child.once('message', onMessage);
    child.once('exit', onExit);
    child.send(req);
  });
}

/** podflow's capture → decode → meter in a worker, with the per-flow features given ('' none). */
const podflowCapture = (label: string, features: string): Capture => ({
  label,
  ours: true,
  command: `node bench/netns/capture-worker.ts --netns POD${features ? ` --features ${features}` : ''}  # forked by the bench, driven over IPC`,
  async run(veth, measureBin, pcap) {
    const child = fork(workerScript, ['--netns', veth.podNs, '--features', features], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    started.add(child);
    try {
      const ready = await new Promise<WorkerReply>((ok, fail) => {
        child.once('message', (m: WorkerReply) => ok(m));
        child.once('exit', (code) => fail(new Error(`capture worker exited (${code}) before it was ready`)));
      });
      if (ready.type === 'error') throw new Error(`capture worker: ${ready.message}`);
      await sleep(200);
      const rx0 = linkStats(veth.podNs, veth.podIf).rxPackets;
      const load1 = Number(load().split(' ')[0]);
      const m0 = machineCpu();
      const s0 = (await ask(child, { type: 'sample' })) as WorkerSample;
      const sent = await replay(measureBin, veth, pcap, pps);
      // Wait until the capture has seen every packet sent, or has been quiet for 1 s.
      let s1 = (await ask(child, { type: 'sample' })) as WorkerSample;
      for (let quiet = 0; s1.packets - s0.packets < sent.packetsSent && quiet < 10; ) {
        await sleep(100);
        const s = (await ask(child, { type: 'sample' })) as WorkerSample;
        quiet = s.packets === s1.packets ? quiet + 1 : 0;
        s1 = s;
      }
      const m1 = machineCpu();
      const podRx = linkStats(veth.podNs, veth.podIf).rxPackets - rx0;
      const end = await ask(child, { type: 'stop' });
      if (end.type !== 'stopped') throw new Error(`capture worker: ${JSON.stringify(end)}`);
      await new Promise((ok) => (child.exitCode !== null ? ok(null) : child.once('exit', ok)));
      started.delete(child);
      const cpu = (s1.cpuMicros - s0.cpuMicros) / 1e6;
      return {
        captured: s1.packets - s0.packets,
        wirePackets: s1.wirePackets - s0.wirePackets,
        metered: s1.metered - s0.metered,
        flows: end.flows,
        kernelDrops: end.kernelDrops,
        received: end.received,
        cpuSeconds: cpu,
        userSeconds: (s1.userMicros - s0.userMicros) / 1e6,
        threads: Object.fromEntries(Object.entries(s1.threads).map(([name, t]) => [name, t - (s0.threads[name] ?? 0)])),
        othersCpuSeconds: Math.max(0, (m1.busy - m0.busy) / CLK_TCK - cpu - sent.cpuSeconds),
        sent,
        load1,
        podRx,
      };
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      started.delete(child);
    }
  },
});

/** The row the targets are judged on: the capture path alone, as measured before the features existed. */
const podflowNoFeatures = podflowCapture('podflow (netns capture → meter)', '');

async function main(): Promise<void> {
  const loadBefore = load();
  const dir = tempDir('pf-bench-live');
  let veth: Veth | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    endStarted();
    veth?.close();
    if (!opts.keep) removeDir(dir);
    process.kill(process.pid, sig);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const pcap = join(dir, 'live.pcap');
    generatePcap({ path: pcap, packets, flows });
    const measureBin = compileC('lib/measure.c', dir, 'measure');

    const notes: string[] = [];
    const missing = ['bench/netns/capture-worker.ts'].filter((m) => !hasModule(m));
    const captures: Capture[] = [];
    if (missing.length === 0) captures.push(podflowNoFeatures, podflowCapture('podflow, features dns, tcp (the agent\'s default)', 'dns,tcp'), podflowCapture('podflow, every feature (dns, tcp, tls, quic, http)', 'dns,tcp,tls,quic,http'));
    else notes.push(`podflow not measured: ${missing.join(', ')} missing`);
    captures.push(tcpdumpCapture('tcpdump -w /dev/null', []), tcpdumpCapture('tcpdump -s 128 -w /dev/null', ['-s', '128']));

    const results = new Map<Capture, RunResult[]>(captures.map((c) => [c, []]));
    const failures: string[] = [];
    for (let round = 0; round < runs; round++) {
      for (const c of captures) {
        try {
          // A fresh simulated node and pod for every run: no state carried
          // from one capture to the next, and a run whose namespace vanishes
          // (something else removed it) fails alone.
          veth = makePod();
          await sleep(500); // let the new links' own start-up packets pass before the window
          const r = await c.run(veth, measureBin, pcap);
          results.get(c)!.push(r);
          process.stderr.write(
            `  ${c.label}: ${r.captured} captured, ${r.kernelDrops} dropped, ${r.cpuSeconds.toFixed(3)} CPU-s, ` +
              `sent ${r.sent.packetsSent} at ${formatRate(r.sent.pps)} pps (load ${r.load1.toFixed(2)})\n`,
          );
        } catch (err) {
          failures.push(`${c.label}: ${(err as Error).message}`);
          process.stderr.write(`  ${c.label}: FAILED ${(err as Error).stack}\n`);
          endStarted();
        } finally {
          veth?.close();
          veth = undefined;
        }
      }
    }

    const rows = captures.map((c) => {
      const rs = results.get(c)!;
      if (rs.length === 0) return { label: c.label, ours: c.ours, cells: ['failed', '', '', '', '', '', '', '', '', '', ''] };
      const perM = rs.map((r) => (r.cpuSeconds / r.captured) * 1e6);
      const perWireM = rs.map((r) => (r.wirePackets === undefined ? undefined : (r.cpuSeconds / r.wirePackets) * 1e6));
      const med = median(perM);
      return {
        label: c.label,
        ours: c.ours,
        cells: [
          med.toFixed(3),
          perM.map((x) => x.toFixed(3)).join(' / '),
          perWireM.every((x) => x !== undefined) ? median(perWireM as number[]).toFixed(3) : '–',
          rs.map((r) => r.kernelDrops).join(' / '),
          rs.map((r) => r.captured).join(' / '),
          rs.map((r) => (r.wirePackets === undefined ? '–' : String(r.wirePackets))).join(' / '),
          rs.map((r) => (r.metered === undefined ? '–' : String(r.metered))).join(' / '),
          rs.map((r) => (r.flows === undefined ? '–' : String(r.flows))).join(' / '),
          rs.map((r) => formatRate(r.sent.pps)).join(' / '),
          rs.map((r) => r.load1.toFixed(2)).join(' / '),
          rs.map((r) => r.othersCpuSeconds.toFixed(2)).join(' / '),
        ],
      };
    });

    const targets: BenchResult['targets'] = [];
    const ours = results.get(podflowNoFeatures);
    if (ours && ours.length) {
      const perM = median(ours.map((r) => (r.cpuSeconds / r.captured) * 1e6));
      targets.push({ what: 'podflow ≤ 0.5 CPU-seconds per million captured buffers', met: perM <= 0.5, measured: perM.toFixed(3) });
      const drops = ours.reduce((a, r) => a + r.kernelDrops, 0);
      targets.push({ what: 'podflow: 0 kernel drops', met: drops === 0, measured: ours.map((r) => r.kernelDrops).join(' / ') });
      const lost = ours.map((r) => r.podRx - r.captured);
      notes.push(
        `podflow CPU-s per run, user + system: ${ours.map((r) => `${r.userSeconds!.toFixed(3)} + ${(r.cpuSeconds - r.userSeconds!).toFixed(3)}`).join(' / ')}`,
      );
      notes.push(
        `podflow CPU-s by thread in the window (10 ms ticks): ${ours
          .map((r) =>
            Object.entries(r.threads!)
              .filter(([, t]) => t > 0)
              .sort((a, b) => b[1] - a[1])
              .map(([name, t]) => `${name} ${t.toFixed(2)}`)
              .join(', '),
          )
          .join(' / ')}`,
      );
      notes.push(`podflow: packets the pod's eth0 received (kernel counter) minus packets podflow captured, per run: ${lost.join(' / ')}`);
    }
    for (const c of captures) {
      const rs = results.get(c)!;
      if (rs.length) notes.push(`${c.label}: the capture's own stats say received ${rs.map((r) => r.received).join(' / ')}, dropped ${rs.map((r) => r.kernelDrops).join(' / ')}`);
    }
    for (const f of failures) notes.push(`failed run: ${f}`);
    const anyRun = [...results.values()].flat()[0];
    if (anyRun) notes.push(`pod end of the veth received ${anyRun.podRx} packets in a run of ${anyRun.sent.packetsSent} sent`);
    notes.push(
      `traffic: tcpreplay ${pps ? `--pps=${pps}` : '--topspeed'} of ${packets} packets / ${flows} flows (frames ≤ 128 bytes: the capture is cut at 128, IP lengths keep 64–1514), ` +
        `from the simulated node's namespace (sim/simnode.ts, made anew for every run) on the node end of pod 1's veth to its eth0 in the pod's namespace; ${runs} runs each, interleaved`,
    );
    notes.push(
      "buffers vs wire packets: tcpreplay's frames are each one packet on the wire (no GSO), so here they are equal; with TSO/GRO traffic one buffer stands for up to 45 wire packets (test/netns/wire-exact.test.ts)",
    );
    notes.push('tcpdump CPU comes from /proc/<pid>/stat in 10 ms ticks (±0.01 CPU-s on ~0.05); podflow\'s from process.cpuUsage() in µs');
    notes.push("others' CPU-s = machine busy time during the window minus the capture's and tcpreplay's own CPU (kernel softirq work, other jobs)");

    const result: BenchResult = {
      name: 'netns/live-capture',
      title: `Live capture in a pod namespace: ${packets / 1e6}M packets from tcpreplay ${pps ? `at ${pps} pps` : 'at top speed'}`,
      columns: [
        'capture',
        'CPU-s per M captured buffers (median)',
        `CPU-s per M buffers (all ${runs})`,
        'CPU-s per M wire packets (median)',
        'kernel drops',
        'captured buffers',
        'wire packets',
        'metered',
        'flows',
        'sent pps',
        'load 1m',
        "others' CPU-s",
      ],
      rows,
      targets,
      commands: [
        `node bench/gen-pcap.ts --out F --packets ${packets} --flows ${flows}`,
        `ip netns exec NODE tcpreplay ${pps ? `--pps=${pps}` : '--topspeed'} -i NODE_IF F`,
        ...captures.map((c) => c.command),
      ],
      notes,
      machine: machine(),
      loadBefore,
      loadAfter: load(),
      ...(missing.length ? { skipped: `${missing.join(', ')} missing` } : {}),
    };
    printResult(result);
    writeResult(result);
    if (failures.length) process.exitCode = 1;
  } finally {
    endStarted();
    veth?.close();
    if (!opts.keep) removeDir(dir);
  }
}

await main();

// The capturing process of the live-capture bench: podflow's own path, a
// netns capture handle (podflow's packet socket and reader thread) inside the pod
// namespace feeding PacketIngest → PacketDecoder → FlowMeter, with the
// capture options podflow uses by default, and the per-flow features given
// by --features (a comma-separated list; none by default). Driven by live-capture.bench.ts
// over the IPC channel (capture-protocol.ts); its CPU time is its own
// process.cpuUsage(), so nothing else on the machine is counted.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { linkTypeOf, openCaptureAsync, type CaptureHandle } from '../../netns/capture.ts';
import { PacketDecoder } from '../../flow/decode.ts';
import { PacketIngest } from '../../flow/ingest.ts';
import { DEFAULT_MAX_FLOWS, FlowMeter } from '../../flow/meter.ts';
import { DEFAULT_FEATURES, type FeatureSwitches, FlowFeatures } from '../../flow/features/flow-features.ts';
import type { WorkerReply, WorkerRequest } from './capture-protocol.ts';

const { values } = parseArgs({
  options: {
    netns: { type: 'string' },
    features: { type: 'string', default: '' },
  },
});
if (!values.netns) throw new Error('usage: capture-worker.ts --netns NAME');

const send = (m: WorkerReply) => process.send!(m);
const nsPath = values.netns.includes('/') ? values.netns : `/var/run/netns/${values.netns}`;

let flowsEnded = 0;
const wanted = values.features.split(',').filter(Boolean);
const switches = Object.fromEntries(Object.keys(DEFAULT_FEATURES).map((name) => [name, wanted.includes(name)])) as unknown as FeatureSwitches;
const features = FlowFeatures.hooks(switches, DEFAULT_MAX_FLOWS);
const meter = new FlowMeter({ ...(features && { features }), onFlow: () => void flowsEnded++ });
const ingest = new PacketIngest(new PacketDecoder(), meter);
let handle: CaptureHandle;
try {
  const ns = statSync(nsPath);
  // The whole namespace, as the agent captures it: the pod's interface is its only traffic.
  // ownFramesOnly off: the replayed frames carry the pcap's MACs, not the pod's.
  handle = await openCaptureAsync(nsPath, { inode: ns.ino, dev: ns.dev }, (_ifindex, hatype, buf, start, end) => void ingest.ingest(1, linkTypeOf(hatype), buf, start, end), { ownFramesOnly: false });
} catch (err) {
  send({ type: 'error', message: (err as Error).stack ?? String(err) });
  process.exit(1);
}

/** CPU-seconds so far by thread name: where the process's time goes (JS thread, V8 compiler and GC threads, libuv pool). */
function threadCpu(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[name] = (out[name] ?? 0) + (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

process.on('message', (req: WorkerRequest) => {
  if (req.type === 'sample') {
    const cpu = process.cpuUsage();
    send({ type: 'sample', cpuMicros: cpu.user + cpu.system, userMicros: cpu.user, systemMicros: cpu.system, threads: threadCpu(), packets: ingest.stats.buffers, wirePackets: ingest.stats.packets, metered: ingest.stats.metered });
  } else if (req.type === 'stop') {
    const s = handle.stats();
    handle.close();
    meter.flush();
    send({ type: 'stopped', flows: flowsEnded, kernelDrops: s.dropped, received: s.received });
    process.disconnect();
  }
});
send({ type: 'ready' });

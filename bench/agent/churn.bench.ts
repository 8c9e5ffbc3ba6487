// Pod churn against the agent process: --cycles (100) times a pod is created
// (namespace, then its veth, as a runtime and its CNI plugin do; its object in
// the API server), exchanges UDP datagrams and pings with a peer pod, and is
// deleted (its processes end, then its veth and namespace, with no wait). Per
// cycle, the packets the collector received for the pod's eth0 (its flows
// end when its namespace goes) are held against the pod's interface counters
// read at its deletion: a cycle whose exported packets differ is reported
// (target: none). The agent's RSS and open fds are sampled every 10 cycles.
// Reference, in the same run: the counters themselves (offloads off, so every
// buffer is one wire packet).
//
// Needs root (SimNode). The agent runs from its .ts sources (agent/cli.ts),
// as in the tests.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { type BenchResult, load, machine, printResult, writeResult } from '../lib/harness.ts';

const { values: opts } = parseArgs({ options: { cycles: { type: 'string', default: '100' } } });
const cycles = Number(opts.cycles);
const NODE = 'bench-node';

const loadBefore = load();
const base: Omit<BenchResult, 'rows' | 'targets' | 'notes' | 'commands' | 'loadAfter'> = {
  name: 'agent/churn',
  title: `Pod churn against the agent process: ${cycles} create → traffic → delete cycles`,
  columns: ['cycles', 'cycles whose exported packets differ from the interface counters', 'packets exported / counted', 'agent RSS MiB (first → last sample)', 'agent open fds (first → last sample)'],
  machine: machine(),
  loadBefore,
};
const commands = [`node bench/agent/churn.bench.ts --cycles ${cycles}`];

if (process.getuid?.() !== 0) {
  const result: BenchResult = { ...base, loadAfter: load(), rows: [], targets: [], commands, notes: [], skipped: 'needs root (network namespaces, packet capture)' };
  printResult(result);
  writeResult(result);
} else {
  const { SimNode } = await import('../../sim/simnode.ts');
  const { KubeApiServer } = await import('../../sim/kube-apiserver.ts');
  const { Collector } = await import('../../ipfix/collector.ts');
  const { pod, replicaSet, simNodeNamespaces, startAgent } = await import('../../test/helpers/agent-process.ts');
  const dir = mkdtempSync(join(tmpdir(), 'pf-bench-churn-'));
  // Offloads off: the counters count wire packets, the ground truth.
  const sim = new SimNode(undefined, { offloads: false });
  const server = new KubeApiServer();
  const exported = new Map<string, number>();
  const collector = new Collector({
    listen: 'tcp://127.0.0.1:0',
    onRecord: (r) => {
      if (r.options || r.fields.interfaceName !== 'eth0') return;
      const egress = r.fields.flowDirection === 1;
      const observed = String(egress ? r.fields.k8sSourcePodName : r.fields.k8sDestinationPodName);
      exported.set(observed, (exported.get(observed) ?? 0) + Number(r.fields.packetDeltaCount) + Number(r.fields.reversePacketDeltaCount ?? 0));
    },
  });
  const cleanUp = () => {
    sim.destroy();
    rmSync(dir, { recursive: true, force: true });
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => (cleanUp(), process.exit(130)));
  const rows: BenchResult['rows'] = [];
  const notes: string[] = [];
  let mismatched: string[] = [];
  const rss: number[] = [];
  const fds: number[] = [];
  let sum = { exported: 0, counted: 0 };
  try {
    await server.start();
    const { port } = await collector.start();
    server.create('node', { metadata: { name: NODE }, status: { addresses: [{ type: 'InternalIP', address: '198.18.0.254' }] } });
    server.create('replicaset', replicaSet('web-5d8f', 'shop', 'web'));
    server.create('replicaset', replicaSet('peer-7c9b', 'shop', 'peer'));
    const peer = sim.addPod(1);
    server.create('pod', pod('peer-7c9b-x', 'shop', peer.ipv4, peer.ipv6, 'peer-7c9b', NODE));
    const config = join(dir, 'agent.yaml');
    writeFileSync(config, [
      `collectors: ['tcp://127.0.0.1:${port}']`,
      simNodeNamespaces(sim),
      "metrics: {listen: '127.0.0.1:0'}",
      '',
    ].join('\n'));
    const agent = await startAgent(['--config', config, '--kubeconfig', server.writeKubeconfig(join(dir, 'kubeconfig'))], { NODE_NAME: NODE });
    const handles = async () => Number(/^podflow_capture_handles (\S+)$/m.exec((await agent.get('/metrics')).text)?.[1] ?? 0);
    const until = async (done: () => Promise<boolean> | boolean, ms: number, what: string) => {
      for (const started = Date.now(); !(await done()); await sleep(10)) {
        if (Date.now() - started > ms) throw new Error(`${what}: not after ${ms} ms`);
      }
    };
    try {
      await until(async () => (await handles()) === 1, 20_000, "the peer's capture");
      for (let cycle = 0; cycle < cycles; cycle++) {
        const name = `web-5d8f-${cycle.toString(36)}`;
        // The runtime makes the namespace, the CNI plugin the veth; the API knows the pod.
        const p = sim.addPod(2, { plugged: false });
        server.create('pod', pod(name, 'shop', p.ipv4, p.ipv6, 'web-5d8f', NODE));
        await until(async () => (await handles()) === 2, 5000, `cycle ${cycle}: the pod's capture`);
        sim.plugPod(2);
        const { closed } = await sim.startSink(p.netns, ['udp-sink', '7000', '50']);
        await Promise.all([
          sim.runTraffic(peer.netns, ['udp-send', p.ipv4, '7000', '50', '200']),
          sim.runTraffic(p.netns, ['udp-send', peer.ipv4, '9', '30', '100']),
          sim.run(p.netns, 'ping', ['-q', '-c', '5', '-i', '0.01', peer.ipv4]),
        ]);
        await closed;
        // The pod's teardown: its processes have ended; the counters now are its last.
        const c = sim.counters(p.netns, 'eth0');
        const counted = c.rxPackets + c.txPackets;
        sim.removePod(2);
        server.delete('pod', name, 'shop');
        await until(() => (exported.get(name) ?? 0) >= counted, 5000, `cycle ${cycle}: the pod's flows`).catch(() => {});
        // A little longer than a tick, so a surplus would show too.
        await until(async () => (await handles()) === 1, 5000, `cycle ${cycle}: its capture closed`);
        const got = exported.get(name) ?? 0;
        sum = { exported: sum.exported + got, counted: sum.counted + counted };
        if (got !== counted) mismatched.push(`${cycle}: ${got}/${counted}`);
        if (cycle % 10 === 0 || cycle === cycles - 1) {
          rss.push(Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${agent.child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024);
          fds.push(readdirSync(`/proc/${agent.child.pid}/fd`).length);
        }
      }
    } finally {
      agent.kill();
    }
  } finally {
    await collector.close();
    await server.stop();
    cleanUp();
  }
  mismatched = mismatched.slice(0, 20);
  rows.push({
    label: 'podflow agent (exported packets of the pod\'s eth0) against its interface counters',
    ours: true,
    cells: [String(cycles), String(mismatched.length), `${sum.exported} / ${sum.counted}`, `${rss[0]!.toFixed(1)} → ${rss.at(-1)!.toFixed(1)}`, `${fds[0]} → ${fds.at(-1)}`],
  });
  notes.push(
    `RSS MiB every 10 cycles: ${rss.map((r) => r.toFixed(1)).join(', ')}`,
    `open fds every 10 cycles: ${fds.join(', ')}`,
    ...(mismatched.length ? [`cycles that differ (exported/counted): ${mismatched.join('; ')}`] : []),
    'per cycle: the namespace first (the capture opens on it), then the veth (plugPod: the pod sends from the moment its address is up), 50 datagrams in, 30 out, 5 pings; then the pod\'s processes end, its counters are read, its veth and namespace are deleted at once; flows end as FORCED_END when its capture has read the last ring block',
  );
  const result: BenchResult = {
    ...base,
    loadAfter: load(),
    rows,
    targets: [{ what: 'cycles whose exported packets differ from the interface counters', met: mismatched.length === 0, measured: String(mismatched.length) }],
    commands,
    notes,
  };
  printResult(result);
  writeResult(result);
}

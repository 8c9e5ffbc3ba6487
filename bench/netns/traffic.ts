// The live-capture bench's traffic: one pod of the simulated node
// (sim/simnode.ts: a `pf…` node namespace with a bridge, the pod's
// namespace joined to it by a veth whose pod end is eth0), and tcpreplay
// sending a generated capture (198.18.0.0/15 addresses only) on the node end
// of that veth, from inside the node namespace. Nothing touches the machine's
// own namespace; close() removes every namespace and link, also after a failure.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { SimNode } from '../../sim/simnode.ts';

export interface Veth {
  /** Namespace playing the node: tcpreplay sends from here. */
  nodeNs: string;
  nodeIf: string;
  /** Namespace playing the pod: the capture under test listens here. */
  podNs: string;
  podIf: string;
  close(): void;
}

/** A simulated node with one pod; the capture listens on the pod's eth0. */
export function makePod(): Veth {
  const node = new SimNode();
  try {
    const pod = node.addPod(1);
    // The node's bridge has IPv6 on (link-local address, router solicitations,
    // MLD reports) and would add a few packets of its own to the pod's capture.
    execFileSync('ip', ['netns', 'exec', node.nodeNetns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1'], { stdio: 'ignore' });
    return { nodeNs: node.nodeNetns, nodeIf: pod.nodeVeth, podNs: pod.netns, podIf: 'eth0', close: () => node.destroy() };
  } catch (err) {
    node.destroy();
    throw err;
  }
}

export interface ReplayStats {
  packetsSent: number;
  seconds: number;
  pps: number;
  failed: number;
  /** tcpreplay's own CPU (user+sys), from the measure helper. */
  cpuSeconds: number;
  output: string;
}

/**
 * tcpreplay `pcap` on the node end: --topspeed, or --pps=N when `pps` is given.
 * Run under the measure helper so its own CPU is known.
 */
export async function replay(measureBin: string, veth: Veth, pcap: string, pps?: number): Promise<ReplayStats> {
  const rate = pps ? [`--pps=${pps}`] : ['--topspeed'];
  const stdoutFile = `${pcap}.tcpreplay.out`;
  const argv = [measureBin, stdoutFile, 'ip', 'netns', 'exec', veth.nodeNs, 'tcpreplay', ...rate, '-i', veth.nodeIf, pcap];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((ok) => child.on('close', ok));
  if (code !== 0) throw new Error(`tcpreplay failed (${code}): ${out}`);
  const cost = JSON.parse(out.trim().split('\n').at(-1)!) as { userSeconds: number; sysSeconds: number; exitCode: number };
  out += readFileSync(stdoutFile, 'utf8');
  if (cost.exitCode !== 0) throw new Error(`tcpreplay exited ${cost.exitCode}: ${out}`);
  const actual = /Actual: (\d+) packets .* sent in ([\d.]+) seconds/.exec(out);
  const rated = /Rated: .* ([\d.]+) pps/.exec(out);
  const failed = /Failed packets:\s+(\d+)/.exec(out);
  if (!actual || !rated) throw new Error(`cannot read tcpreplay's output: ${out}`);
  return {
    packetsSent: Number(actual[1]),
    seconds: Number(actual[2]),
    pps: Number(rated[1]),
    failed: Number(failed?.[1] ?? 0),
    cpuSeconds: cost.userSeconds + cost.sysSeconds,
    output: out,
  };
}

/** Packet counters of an interface, as the kernel keeps them. */
export function linkStats(ns: string, dev: string): { rxPackets: number; rxDropped: number } {
  const out = execFileSync('ip', ['-n', ns, '-s', '-j', 'link', 'show', dev], { encoding: 'utf8' });
  const s = (JSON.parse(out) as { stats64: { rx: { packets: number; dropped: number } } }[])[0]!.stats64.rx;
  return { rxPackets: s.packets, rxDropped: s.dropped };
}

export function pidAlive(pid: number): boolean {
  try {
    readFileSync(`/proc/${pid}/stat`);
    return true;
  } catch {
    return false;
  }
}

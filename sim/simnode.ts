// The simulated node: a "node" network namespace holding a bridge, and pod
// namespaces joined to it by veth pairs (the pod end is eth0), with addresses
// from 198.18.0.0/15 and fd00::/8. Every namespace and link name starts with
// `pf` and a per-process suffix, so parallel runs never collide, and the
// node's bridge and veth ends live inside the node namespace, not the host's.
// Needs root and iproute2; ping (iputils-ping) for ICMP; iptables and python3
// for impairIngress. Used by the tests, `podflow demo` and the benchmarks;
// the agent never imports it.
//
// Ground truth for captured octets is the interface counters read by
// `ip -s -j link` (netlink, in the namespace), turned into the sum of IP total
// lengths by ipOctets(). Those count the kernel's buffers: with segmentation
// offloads on (the kernel's default, and the node's unless made with
// `offloads: false`), veth GSO/GRO and lo's TSO make one buffer of many wire
// segments, which podflow counts as the segments (flow/decode.ts WIRE
// SEGMENTS) and the counters as one. With offloads off every buffer is one
// wire packet, and the counters are the wire's truth.
//
// To keep that exact, pods make no traffic of their own: neighbours are
// static (no ARP/ND), IPv6 has no link-local address, no DAD and no router
// solicitations, and lo is captured with only the test's traffic on it.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { NODE_BIN } from '../common/node-runtime.ts';

export const TRAFFIC_SCRIPT = fileURLToPath(new URL('./traffic.ts', import.meta.url));
/** The delay half of netem in user space (this kernel has no sch_netem): sim/nfqueue-delay.py. */
const DELAY_SCRIPT = fileURLToPath(new URL('./nfqueue-delay.py', import.meta.url));
/** The Python with the standard library's AF_NETLINK sockets (any python3 3.x). */
const PYTHON = '/usr/bin/python3';

export const ETHERNET_HEADER_BYTES = 14;

export interface SimPod {
  index: number;
  /** `ip netns` name. */
  netns: string;
  nsPath: string;
  ipv4: string;
  ipv6: string;
  mac: string;
  /** The node-side veth end (in the node namespace). */
  nodeVeth: string;
}

export interface SimNodeOptions {
  /**
   * Segmentation offloads (TSO, GSO, GRO, UDP segmentation) on the pods'
   * eth0 and lo and the node's veth ends. Default true, as the kernel makes
   * them; false: every packet crosses as itself, so interface counters count
   * wire packets (see ipOctets).
   */
  offloads?: boolean;
}

/** A pod's impaired ingress (SimNode.impairIngress). */
export interface Impairment {
  /** Ends the delay (packets still held go on), then reports how many packets it held and its latest release past their time. */
  stop(): Promise<{ packets: number; latestLateMicros: number }>;
}

export interface InterfaceCounters {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  /** Packets the interface dropped: a veth that cannot hand a packet to its peer counts no bytes for it, though capture saw it leave. */
  rxDropped: number;
  txDropped: number;
}

let instances = 0;

/**
 * A simulated node's names start with its tag: `pf`, the pid of the process
 * that made it in base 36, `-`, an instance number. The separator lets the
 * owner be read back from any of its names (removeDeadOwnersNamespaces).
 */
const TAG = /^pf([0-9a-z]+)-[0-9a-z]+/;
let deadOwnersRemoved = false;

function ip(args: string[], input?: string): string {
  return execFileSync('ip', args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** True if this process may create namespaces (tests skip otherwise, saying why). */
export function canRunSimNode(): { ok: true } | { ok: false; reason: string } {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'needs root (network namespaces, veth, packet capture)' };
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return { ok: false, reason: 'needs iproute2 (ip)' };
  }
  return { ok: true };
}

export class SimNode {
  /** `pf` + pid in base 36 + instance number: unique per process and instance. */
  readonly tag: string;
  readonly nodeNetns: string;
  readonly bridge: string;
  readonly pods = new Map<number, SimPod>();
  readonly offloads: boolean;
  readonly #children = new Set<ChildProcess>();
  /** Pods with their veth (plugPod). */
  readonly #plugged = new Set<number>();
  #destroyed = false;
  readonly #onExit = () => this.destroy();

  /** Creates the node namespace and bridge; with t, destroy() runs after the test even if it fails. */
  constructor(t?: TestContext, options: SimNodeOptions = {}) {
    this.offloads = options.offloads ?? true;
    this.tag = `pf${process.pid.toString(36)}-${(instances++).toString(36)}`;
    this.nodeNetns = `${this.tag}n`;
    this.bridge = `${this.tag}br`;
    if (!deadOwnersRemoved) {
      deadOwnersRemoved = true;
      removeDeadOwnersNamespaces();
    }
    // Registered before creating anything so a half-made node is removed too.
    t?.after(() => this.destroy());
    process.once('exit', this.#onExit);
    ip(['netns', 'add', this.nodeNetns]);
    // The node's bridge and veth ends would otherwise send IPv6 DAD, MLD and
    // router solicitations, and the bridge an IGMP report (from 0.0.0.0)
    // whenever a new port changed its MAC address, flooded to every pod: the
    // node stays silent (no IPv6 here, a fixed bridge MAC, no multicast).
    execFileSync('ip', ['netns', 'exec', this.nodeNetns, 'sysctl', '-qw',
      'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { stdio: 'ignore' });
    ip(['-n', this.nodeNetns, '-b', '-'], [`link set lo up`, `link add ${this.bridge} address 02:70:66:00:00:fe type bridge mcast_snooping 0`, `link set ${this.bridge} multicast off up`, ''].join('\n'));
  }

  /**
   * Makes pod `index` (1..254): namespace, veth to the bridge, addresses,
   * static neighbours both ways. With `plugged: false` only the namespace, as
   * a container runtime makes it before the CNI plugin runs: plugPod() adds
   * the rest later.
   */
  addPod(index: number, options: { plugged?: boolean } = {}): SimPod {
    const pod: SimPod = {
      index,
      netns: `${this.tag}p${index}`,
      nsPath: `/run/netns/${this.tag}p${index}`,
      ipv4: `198.18.0.${index}`,
      ipv6: `fd00::${index.toString(16)}`,
      mac: `02:70:66:00:00:${index.toString(16).padStart(2, '0')}`,
      nodeVeth: `${this.tag}v${index}`,
    };
    ip(['netns', 'add', pod.netns]);
    this.pods.set(index, pod);
    // Before eth0 exists, so it inherits them: no link-local address, no DAD,
    // no router solicitations: a pod makes no IPv6 traffic of its own.
    execFileSync('ip', ['netns', 'exec', pod.netns, 'sysctl', '-qw',
      'net.ipv6.conf.default.addr_gen_mode=1', 'net.ipv6.conf.default.accept_dad=0',
      'net.ipv6.conf.default.router_solicitations=0', 'net.ipv6.conf.all.accept_dad=0'], { stdio: 'ignore' });
    ip(['-n', pod.netns, 'link', 'set', 'lo', 'up']);
    if (options.plugged ?? true) this.plugPod(index);
    return pod;
  }

  /**
   * The CNI plugin's part for pod `index`: its veth to the bridge (eth0),
   * then the static neighbours, then its addresses last, so the pod can send
   * from the moment its address (and with it its route) is there.
   */
  plugPod(index: number): void {
    const pod = this.pods.get(index)!;
    ip(['-n', this.nodeNetns, '-b', '-'], [
      `link add ${pod.nodeVeth} type veth peer name eth0 netns ${pod.netns}`,
      `link set ${pod.nodeVeth} multicast off master ${this.bridge} up`,
      '',
    ].join('\n'));
    // A static forwarding entry: the bridge never floods this pod's unicast to
    // other pods (it would while learning, as pods here send nothing unasked),
    // so each pod's interface counters hold only its own traffic.
    execFileSync('bridge', ['-n', this.nodeNetns, 'fdb', 'replace', pod.mac, 'dev', pod.nodeVeth, 'master', 'static'], { stdio: 'ignore' });
    if (!this.offloads) {
      this.setOffloads(pod.netns, 'eth0', false);
      this.setOffloads(pod.netns, 'lo', false);
      this.setOffloads(this.nodeNetns, pod.nodeVeth, false);
    }
    const neighbours = [...this.pods.values()].filter((p) => p !== pod && this.#plugged.has(p.index));
    this.#plugged.add(index);
    ip(['-n', pod.netns, '-b', '-'], [
      `link set eth0 address ${pod.mac} arp off up`,
      ...neighbours.flatMap((n) => [
        `neigh replace ${n.ipv4} lladdr ${n.mac} dev eth0 nud permanent`,
        `neigh replace ${n.ipv6} lladdr ${n.mac} dev eth0 nud permanent`,
      ]),
      `addr add ${pod.ipv4}/24 dev eth0`,
      `addr add ${pod.ipv6}/64 dev eth0 nodad`,
      '',
    ].join('\n'));
    for (const n of neighbours) {
      ip(['-n', n.netns, '-b', '-'], [
        `neigh replace ${pod.ipv4} lladdr ${pod.mac} dev eth0 nud permanent`,
        `neigh replace ${pod.ipv6} lladdr ${pod.mac} dev eth0 nud permanent`,
        '',
      ].join('\n'));
    }
  }

  /**
   * Turns an interface's segmentation offloads (TSO, GSO, GRO, UDP
   * segmentation) on or off. A bridge port with them off makes the kernel
   * cut every super-packet it sends into wire segments in software, so its
   * counters count what the wire carries.
   */
  setOffloads(netns: string, ifname: string, on: boolean): void {
    const v = on ? 'on' : 'off';
    execFileSync('ip', ['netns', 'exec', netns, 'ethtool', '-K', ifname, 'tso', v, 'gso', v, 'gro', v, 'tx-udp-segmentation', v], { stdio: 'ignore' });
  }

  /** Removes a pod like a CNI DEL: its veth first (eth0 vanishes under a capture), then its namespace. */
  removePod(index: number): void {
    const pod = this.pods.get(index);
    if (!pod) return;
    this.pods.delete(index);
    this.#plugged.delete(index);
    tryRun('ip', ['-n', this.nodeNetns, 'link', 'del', pod.nodeVeth]);
    tryRun('ip', ['netns', 'del', pod.netns]);
  }

  /**
   * What `tc qdisc add dev eth0 root netem delay D loss L` on the pod's
   * veth would do to the TCP it receives, for kernels built without
   * sch_netem (this machine's): in the pod's namespace, ahead of its stack
   * and after its capture (packet taps come first), iptables drops a random
   * `lossRatio` of the TCP packets arriving on eth0 and queues the rest to
   * sim/nfqueue-delay.py, which lets each go after `delayMs` (at a real-time
   * priority, so a busy machine delays it little more). IPv4 only
   * (iptables). Resolves once the delay holds its queue.
   */
  async impairIngress(index: number, delayMs: number, lossRatio: number, timeoutMs = 5000): Promise<Impairment> {
    const pod = this.pods.get(index)!;
    const queue = String(index);
    const child = this.spawn(pod.netns, PYTHON, [DELAY_SCRIPT, queue, String(delayMs)]);
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d));
    let errors = '';
    child.stderr!.on('data', (d: Buffer) => (errors += d));
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the delay in ${pod.netns} did not bind its queue in ${timeoutMs} ms: ${errors}`)), timeoutMs);
      const check = () => {
        if (!output.includes('bound')) return;
        clearTimeout(timer);
        resolve();
      };
      child.stdout!.on('data', check);
      void closed.then(() => {
        clearTimeout(timer);
        reject(new Error(`the delay in ${pod.netns} exited before binding its queue: ${errors}`));
      });
    });
    const rule = ['-t', 'raw', '-A', 'PREROUTING', '-i', 'eth0', '-p', 'tcp'];
    this.exec(pod.netns, 'iptables', [...rule, '-m', 'statistic', '--mode', 'random', '--probability', String(lossRatio), '-j', 'DROP']);
    this.exec(pod.netns, 'iptables', [...rule, '-j', 'NFQUEUE', '--queue-num', queue]);
    return {
      stop: async () => {
        this.exec(pod.netns, 'iptables', ['-t', 'raw', '-F', 'PREROUTING']);
        child.kill('SIGTERM');
        await closed;
        return JSON.parse(output.trim().split('\n').at(-1)!) as { packets: number; latestLateMicros: number };
      },
    };
  }

  /** Runs a command inside a namespace and returns its stdout. */
  exec(netns: string, command: string, args: string[], timeoutMs = 60_000): string {
    return execFileSync('ip', ['netns', 'exec', netns, command, ...args], { encoding: 'utf8', timeout: timeoutMs });
  }

  /** Runs sim/traffic.ts inside a namespace (see that file for modes) and returns its stdout. */
  traffic(netns: string, args: string[], timeoutMs = 60_000): string {
    return this.exec(netns, NODE_BIN, [TRAFFIC_SCRIPT, ...args], timeoutMs);
  }

  /** Starts a long-running command inside a namespace; destroy() ends it by PID. */
  spawn(netns: string, command: string, args: string[]): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', netns, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }

  /** Starts traffic.ts inside a namespace in the background. */
  spawnTraffic(netns: string, args: string[]): ChildProcess {
    return this.spawn(netns, NODE_BIN, [TRAFFIC_SCRIPT, ...args]);
  }

  /**
   * Starts a traffic.ts sink (tcp-sink, udp-sink) in a namespace and resolves
   * once it listens; `closed` resolves with its exit code and output when it
   * ends. A sink that exits before it listens fails at once, not by timeout.
   */
  async startSink(netns: string, args: string[], timeoutMs = 5000): Promise<{ child: ChildProcess; closed: Promise<{ code: number | null; output: string }> }> {
    const child = this.spawnTraffic(netns, args);
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d));
    const closed = new Promise<{ code: number | null; output: string }>((resolve) => child.once('close', (code) => resolve({ code, output })));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${args.join(' ')} in ${netns}: not listening after ${timeoutMs} ms`)), timeoutMs);
      const check = () => {
        if (!output.includes('listening')) return;
        clearTimeout(timer);
        child.stdout!.off('data', check);
        resolve();
      };
      child.stdout!.on('data', check);
      void closed.then(({ code }) => {
        clearTimeout(timer);
        reject(new Error(`${args.join(' ')} in ${netns}: exited (${code}) before listening`));
      });
    });
    return { child, closed };
  }

  /** Runs traffic.ts inside a namespace without blocking the event loop (captures keep draining); resolves with its stdout. */
  runTraffic(netns: string, args: string[], timeoutMs = 60_000): Promise<string> {
    const child = this.spawnTraffic(netns, args);
    return new Promise((resolve, reject) => {
      let out = '';
      let err = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.stdout!.on('data', (d: Buffer) => (out += d));
      child.stderr!.on('data', (d: Buffer) => (err += d));
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve(out);
        else reject(new Error(`traffic ${args.join(' ')} in ${netns}: exit ${code ?? signal}: ${err}`));
      });
    });
  }

  /** Runs a command inside a namespace without blocking the event loop; resolves with its stdout. */
  run(netns: string, command: string, args: string[], timeoutMs = 60_000): Promise<string> {
    const child = this.spawn(netns, command, args);
    return new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.stdout!.on('data', (d: Buffer) => (out += d));
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve(out);
        else reject(new Error(`${command} ${args.join(' ')} in ${netns}: exit ${code ?? signal}`));
      });
    });
  }

  /**
   * Resolves once every TCP connection in these namespaces has settled: each
   * one listens, is in TIME-WAIT, or is established with nothing queued
   * either way (all it sent acknowledged, all it received read). The
   * interface counters count a packet as it is sent, and a generator may exit
   * before its last ACKs and FINs are: only once settled are they the final
   * truth (until a process sends again). Rejects after timeoutMs naming the
   * connections that had not.
   */
  async tcpSettled(netnsNames: string[], timeoutMs = 10_000): Promise<void> {
    const started = Date.now();
    for (;;) {
      const unsettled: string[] = [];
      for (const netns of netnsNames) {
        // State, Recv-Q, Send-Q, local and peer address.
        for (const line of (await this.run(netns, 'ss', ['-Htan'])).split('\n')) {
          const [state, recvQ, sendQ] = line.trim().split(/\s+/);
          if (!state || state === 'LISTEN' || state === 'TIME-WAIT' || (state === 'ESTAB' && recvQ === '0' && sendQ === '0')) continue;
          unsettled.push(`${netns}: ${line.trim()}`);
        }
      }
      if (unsettled.length === 0) return;
      if (Date.now() - started > timeoutMs) throw new Error(`TCP not settled after ${timeoutMs} ms:\n${unsettled.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Interface counters read by iproute2 over netlink inside the namespace (independent of podflow). */
  counters(netns: string, ifname: string): InterfaceCounters {
    const [link] = JSON.parse(ip(['-n', netns, '-s', '-j', 'link', 'show', 'dev', ifname])) as Array<{
      stats64: { rx: { bytes: number; packets: number; dropped: number }; tx: { bytes: number; packets: number; dropped: number } };
    }>;
    return {
      rxBytes: link.stats64.rx.bytes,
      txBytes: link.stats64.tx.bytes,
      rxPackets: link.stats64.rx.packets,
      txPackets: link.stats64.tx.packets,
      rxDropped: link.stats64.rx.dropped,
      txDropped: link.stats64.tx.dropped,
    };
  }

  /** Removes every namespace and link it made and ends its processes. Idempotent; also runs at process exit. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    process.off('exit', this.#onExit);
    for (const child of this.#children) {
      if (child.pid !== undefined) tryKill(child.pid);
    }
    this.#children.clear();
    for (const index of [...this.pods.keys()]) this.removePod(index);
    tryRun('ip', ['netns', 'del', this.nodeNetns]);
  }
}

/**
 * IP octets (sum of IP total lengths) from interface counter deltas. veth
 * counts whole Ethernet frames (bytes - 14 * packets is IP); lo counts bytes
 * after loopback_xmit has pulled the Ethernet header (bytes is IP already:
 * measured on this kernel), and counts each packet once as tx and once as rx.
 * The wire's octets only on a node made with `offloads: false` (the counters
 * count buffers, without the headers each further segment repeats).
 */
export function ipOctets(ifname: string, before: InterfaceCounters, after: InterfaceCounters): number {
  if (ifname === 'lo') return after.txBytes - before.txBytes;
  const frames = after.txPackets - before.txPackets + after.rxPackets - before.rxPackets;
  return after.txBytes - before.txBytes + after.rxBytes - before.rxBytes - ETHERNET_HEADER_BYTES * frames;
}

/**
 * Packets a capture of the interface delivers for the traffic between two
 * counter readings: a veth's frames both ways; on lo each packet once (lo
 * counts it as sent and as received, and the capture drops the leaving copy).
 */
export function capturedPackets(ifname: string, before: InterfaceCounters, after: InterfaceCounters): number {
  if (ifname === 'lo') return after.txPackets - before.txPackets;
  return after.txPackets - before.txPackets + after.rxPackets - before.rxPackets;
}

/** Names of leftover `pf` namespaces and host links (for tests that check hygiene). */
export function leftovers(tag: string): string[] {
  const links = ip(['-o', 'link']).split('\n').map((l) => l.split(': ')[1]?.split('@')[0] ?? '');
  return [...netnsNames(), ...links].filter((n) => n.startsWith(tag));
}

function netnsNames(): string[] {
  return ip(['netns', 'list']).split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n !== '');
}

/**
 * Removes the namespaces (and with them the bridge and veths inside) of
 * simulated nodes whose process is gone. A process killed by a signal or
 * crashing in native code runs neither t.after nor its 'exit' hook, so its
 * namespaces outlive it (a test process that died of SIGSEGV left five);
 * the first simulated node of the next process clears them. Namespaces of
 * live processes are left alone, and so are processes still running in the
 * removed ones (not ours to end).
 */
export function removeDeadOwnersNamespaces(): string[] {
  const removed: string[] = [];
  for (const name of netnsNames()) {
    const owner = TAG.exec(name)?.[1];
    if (owner === undefined) continue;
    const pid = Number.parseInt(owner, 36);
    if (pid === process.pid || existsSync(`/proc/${pid}`)) continue;
    tryRun('ip', ['netns', 'del', name]);
    removed.push(name);
  }
  return removed;
}

function tryRun(command: string, args: string[]): void {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
  } catch {
    // Already gone: removal is idempotent.
  }
}

function tryKill(pid: number): void {
  try {
    // `ip netns exec` execs the command, so this PID is the generator itself.
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already exited.
  }
}

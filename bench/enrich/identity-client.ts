// The measured process of bench/enrich/identity-scale.bench.ts, one per case.
// The bench strips its types (node:module stripTypeScriptTypes) into a .mjs
// file, so it runs as JavaScript like the image's agent, without the
// resident type stripper; it imports nothing of podflow statically.
//
//   --impl podflow  KubeCaches + Naming from --dist (a scripts/build-dist.sh
//                   output), wired as agent/daemonset.ts wires them
//   --impl client-node  the reference: one client-node makeInformer per
//                   resource, holding the objects as client-node does
//   --impl floor    Node with @kubernetes/client-node imported, nothing else
//
// Talks to the bench over the IPC channel: it reports 'synced', then answers
// each command ('memory', 'lookups', 'relist', 'storm-start', 'storm-peek',
// 'storm-end', 'exit') with one message.
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { constants, monitorEventLoopDelay, performance, PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
import type * as k8s from '@kubernetes/client-node';
import type { NamingNamespaceEvents } from '../../enrich/naming.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const { values: opts } = parseArgs({
  options: {
    impl: { type: 'string' },
    dist: { type: 'string' },
    kubeconfig: { type: 'string' },
    node: { type: 'string', default: 'bench-node' },
    /** A directory to write CPU profiles of the sync and of the storm to (sync-client.cpuprofile, storm-client.cpuprofile), for chrome://inspect or speedscope. */
    'profile-storm': { type: 'string' },
  },
});

type Send = (message: object) => void;
const send: Send = (message) => process.send!(message);
const gc = (globalThis as { gc?: () => void }).gc!;
const epochMs = (): number => performance.timeOrigin + performance.now();
const cpuSeconds = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
};

/** The longest the agent's return of free memory (a full GC and malloc_trim) has held the main thread. */
let longestReturnMs = 0;

/** Collects twice with a pause between, so V8 has released what it will (its memory reducer runs after a GC). */
async function memory(): Promise<object> {
  gc();
  await sleep(1000);
  gc();
  const m = process.memoryUsage();
  const h = getHeapStatistics();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers, returnPauseMs: longestReturnMs, physical: h.total_physical_size, resident: residentKinds(), spaces: heapSpaces() };
}

/** Each V8 heap space's bytes in use and resident: where the heap's committed-but-free pages are. */
function heapSpaces(): Record<string, { used: number; physical: number }> {
  return Object.fromEntries(getHeapSpaceStatistics().map((space) => [space.space_name, { used: space.space_used_size, physical: space.physical_space_size }]));
}

/**
 * Resident bytes by kind of mapping (/proc/self/smaps): what the RSS beyond
 * the V8 heap is. 'brk' is malloc's main arena ([heap]); 'anonymous' holds
 * V8's pages (its physical size) and large or per-thread malloc arenas;
 * 'file' the node binary's and libraries' pages.
 */
function residentKinds(): { brk: number; anonymous: number; file: number; stack: number } {
  const kinds = { brk: 0, anonymous: 0, file: 0, stack: 0 };
  let kind: keyof typeof kinds = 'anonymous';
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (mapping) {
      const path = mapping[1]!;
      kind = path === '[heap]' ? 'brk' : path.startsWith('[stack') ? 'stack' : path === '' || path.startsWith('[') ? 'anonymous' : 'file';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) kinds[kind] += Number(rss[1]) * 1024;
  }
  return kinds;
}

interface Subject {
  /** Resolves once every resource's first list is applied. */
  synced(): Promise<void>;
  /** Relists completed so far, over all resources. */
  relists(): number;
  /** Per resource: its watches' restarts after an error, relists and errors so far. */
  restarts?(): Record<string, { restarts: number; relists: number; errors: number }>;
  pods(): number;
  /** Lookups per second of this thread's CPU; readAnswer: each answer's type read too, as every caller does. */
  lookups?(count: number, hot: boolean, readAnswer: boolean): { perSecond: number; answered: Record<string, number> };
}

/** GC pauses (PerformanceObserver 'gc' entries) between start() and stop(), by kind: which collections the lag waited for. */
class GcPauses {
  #pauses: Array<{ kind: number; at: number; ms: number }> = [];
  readonly #observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) this.#pauses.push({ kind: (entry as PerformanceEntry & { detail: { kind: number } }).detail.kind, at: performance.timeOrigin + entry.startTime, ms: entry.duration });
  });

  start(): void {
    this.#pauses = [];
    this.#observer.observe({ entryTypes: ['gc'] });
  }

  /**
   * Count, total and longest pause (ms) of the scavenges (young generation) and of the rest (mark-compact,
   * incremental marking steps, weak callbacks), and every pause as [start (epoch ms), ms, major or not].
   */
  stop(): { minor: { count: number; totalMs: number; maxMs: number }; major: { count: number; totalMs: number; maxMs: number }; pauses: Array<[number, number, boolean]> } {
    this.#observer.disconnect();
    const sum = (pauses: Array<{ ms: number }>) => ({ count: pauses.length, totalMs: pauses.reduce((t, p) => t + p.ms, 0), maxMs: Math.max(0, ...pauses.map((p) => p.ms)) });
    const minor = (p: { kind: number }) => p.kind === constants.NODE_PERFORMANCE_GC_MINOR;
    return {
      minor: sum(this.#pauses.filter(minor)),
      major: sum(this.#pauses.filter((p) => !minor(p))),
      pauses: this.#pauses.map((p) => [p.at, p.ms, !minor(p)]),
    };
  }
}

/** This process's event-loop delay during a storm: how much of the lag is its own. */
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
/** This process's GC pauses during a storm. */
const gcPauses = new GcPauses();
/** The informers' restarts and relists when the storm began. */
let restartsBefore: ReturnType<NonNullable<Subject['restarts']>> | undefined;
/** Restarts, relists and errors between two counts, for the resources that had any: a storm should cause none. */
function restartsDuring(before: typeof restartsBefore, after: typeof restartsBefore): string {
  if (!before || !after) return '';
  return Object.entries(after)
    .map(([resource, a]) => [resource, a.restarts - before[resource]!.restarts, a.relists - before[resource]!.relists, a.errors - before[resource]!.errors] as const)
    .filter(([, restarts, relists, errors]) => restarts + relists + errors > 0)
    .map(([resource, restarts, relists, errors]) => `${resource}: ${restarts} restarts, ${relists} relists, ${errors} errors`)
    .join('; ');
}
/** The storm's CPU profile, when asked for. */
let profiler: Session | undefined;

/** Events by `${type} ${namespace}/${name}` → first time seen (epoch ms), recorded during a storm. */
let storm: Map<string, number> | undefined;
const seen = (type: string, namespace: string, name: string): void => {
  if (storm === undefined) return;
  const key = `${type} ${namespace}/${name}`;
  if (!storm.has(key)) storm.set(key, epochMs());
};

async function podflow(dist: string, kubeconfig: string): Promise<Subject> {
  const { KubeCaches } = (await import(`${dist}/enrich/kube-caches.js`)) as typeof import('../../enrich/kube-caches.ts');
  // A dist built from a commit before Naming (--before) has it as Identity in enrich/identity.js, which
  // builds its NetnsPods from nodeName and procRoot instead of being given `namespaces`: both are passed.
  const { Naming } = (await import(`${dist}/enrich/naming.js`).catch(async () => ({
    Naming: ((await import(`${dist}/enrich/identity.js`)) as { Identity: unknown }).Identity,
  }))) as typeof import('../../enrich/naming.ts');
  const { NetnsPods } = (await import(`${dist}/enrich/netns-pods.js`)) as typeof import('../../enrich/netns-pods.ts');
  const { DEFAULT_CONFIG } = (await import(`${dist}/agent/config.js`)) as typeof import('../../agent/config.ts');
  const caches = new KubeCaches({ kubeconfig, labelKeys: DEFAULT_CONFIG.labelKeys });
  const capture = { on: () => capture, off: () => capture };
  const options = {
    caches,
    capture,
    // No namespace is attached: the capture here emits nothing.
    namespaces: (events: NamingNamespaceEvents) => new NetnsPods({ nodeName: opts.node!, procRoot: null, listAddresses: () => [], ...events }),
    nodeName: opts.node!,
    procRoot: null,
    clusterName: 'bench',
    leases: { graceMs: DEFAULT_CONFIG.kubernetes.leaseGraceSeconds * 1000, clusterCidrs: DEFAULT_CONFIG.clusterCidrs },
    onRecord: () => {},
  };
  const naming = new Naming(options);
  caches.on('pod', (type, pod) => seen(type, pod.namespace, pod.name));
  caches.start();
  naming.start();
  // The agent gives back what V8 and malloc keep after the lists (agent/freed-memory.ts), looking every 10 s; here
  // every 100 ms, so what is measured after sync and after a relist is what an agent holds once it has looked.
  // A dist from before it (--before) has none.
  const freed = (await import(`${dist}/agent/freed-memory.js`).catch(() => undefined)) as typeof import('../../agent/freed-memory.ts') | undefined;
  if (freed) {
    const { addon } = (await import(`${dist}/netns/addon.js`)) as typeof import('../../netns/addon.ts');
    const { systemClock } = (await import(`${dist}/common/clock.js`)) as typeof import('../../common/clock.ts');
    const returnFreeMemory = (): void => {
      const t0 = performance.now();
      addon.returnFreeMemory();
      longestReturnMs = Math.max(longestReturnMs, performance.now() - t0);
    };
    new freed.FreedMemoryReturn({ lists: () => freed.listsOf(caches.status()), returnFreeMemory, clock: systemClock, checkMs: 100 }).start();
  }
  return {
    synced: async () => {
      while (!caches.synced()) await sleep(5);
    },
    relists: () => Object.values(caches.status()).reduce((n, s) => n + s.relists, 0),
    restarts: () => Object.fromEntries(Object.entries(caches.status()).map(([resource, s]) => [resource, { restarts: s.restarts, relists: s.relists, errors: s.errors }])),
    pods: () => caches.status().pod.objects,
    lookups(count, hot, readAnswer) {
      // The keys the enricher looks up (enrich/ip-keys.ts: IPv4 as its uint32), side by side in one
      // array: an address array per lookup, scattered over the heap, would be measured instead.
      const keys: number[] = [];
      for (const pod of caches.pods()) {
        for (const ip of pod.podIPs) {
          if (ip.includes(':')) continue;
          const [a = 0, b = 0, c = 0, d = 0] = ip.split('.').map(Number);
          keys.push(((a << 24) | (b << 16) | (c << 8) | d) >>> 0);
        }
      }
      // Random order (a fixed seed), so consecutive lookups touch unrelated entries.
      let seed = 1;
      const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
      for (let i = keys.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [keys[i], keys[j]] = [keys[j]!, keys[i]!];
      }
      const set = Float64Array.from(hot ? keys.slice(0, 256) : keys);
      const now = Date.now();
      const answered: Record<string, number> = {};
      const leases = naming.leases;
      for (let i = 0; i < Math.min(count, 100_000); i++) leases.lookupKey(set[i % set.length]!, now); // warm-up
      // This thread's CPU time: on a loaded machine, wall time would count other processes' turns.
      const t0 = process.threadCpuUsage();
      if (readAnswer) {
        // The answer object is elsewhere on the heap: reading it is a load the lookup itself does not make.
        let pods = 0;
        for (let i = 0; i < count; i++) if (leases.lookupKey(set[i % set.length]!, now).type === 'pod') pods++;
        answered.pod = pods;
      } else {
        for (let i = 0; i < count; i++) {
          const answer = leases.lookupKey(set[i % set.length]!, now);
          if (i < set.length) answered[answer.type] = (answered[answer.type] ?? 0) + 1;
        }
      }
      const used = process.threadCpuUsage(t0);
      return { perSecond: count / ((used.user + used.system) / 1e6), answered };
    },
  };
}

async function clientNode(kubeconfig: string): Promise<Subject> {
  const client = await import('@kubernetes/client-node');
  const kc = new client.KubeConfig();
  kc.loadFromFile(kubeconfig);
  const core = kc.makeApiClient(client.CoreV1Api);
  const apps = kc.makeApiClient(client.AppsV1Api);
  const batch = kc.makeApiClient(client.BatchV1Api);
  let relists = 0;
  const informers: Array<k8s.Informer<k8s.KubernetesObject> & k8s.ObjectCache<k8s.KubernetesObject>> = [];
  const listed: Array<Promise<void>> = [];
  const make = <T extends k8s.KubernetesObject>(path: string, list: () => Promise<k8s.KubernetesListObject<T>>): void => {
    let lists = 0;
    const informer = client.makeInformer(kc, path, async () => {
      const result = await list();
      // The informer applies the list as soon as this resolves; a relist is counted just after.
      if (lists++ > 0) setImmediate(() => relists++);
      return result;
    });
    informers.push(informer as never);
    listed.push(informer.start());
  };
  make('/api/v1/pods', () => core.listPodForAllNamespaces());
  make('/api/v1/services', () => core.listServiceForAllNamespaces());
  make('/api/v1/nodes', () => core.listNode());
  make('/apis/apps/v1/replicasets', () => apps.listReplicaSetForAllNamespaces());
  make('/apis/batch/v1/jobs', () => batch.listJobForAllNamespaces());
  const pods = informers[0]!;
  for (const verb of ['add', 'update', 'delete'] as const) pods.on(verb, (o: k8s.KubernetesObject) => seen(verb, o.metadata?.namespace ?? '', o.metadata?.name ?? ''));
  for (const informer of informers) informer.on('error', (err: unknown) => send({ error: `client-node informer: ${String((err as Error)?.message ?? err)}` }));
  return {
    synced: async () => {
      await Promise.all(listed);
    },
    relists: () => relists,
    pods: () => pods.list().length,
  };
}

// The sync's CPU profile, when asked for (sync-client.cpuprofile beside the storm's).
const syncProfiler = opts['profile-storm'] ? new Session() : undefined;
if (syncProfiler) {
  syncProfiler.connect();
  await syncProfiler.post('Profiler.enable');
  await syncProfiler.post('Profiler.start');
}
const t0 = performance.now();
const c0 = cpuSeconds();
let subject: Subject | undefined;
if (opts.impl === 'podflow') subject = await podflow(opts.dist!, opts.kubeconfig!);
else if (opts.impl === 'client-node') subject = await clientNode(opts.kubeconfig!);
else await import('@kubernetes/client-node');
if (subject) await subject.synced();
if (syncProfiler) {
  const { profile } = await syncProfiler.post('Profiler.stop');
  writeFileSync(join(opts['profile-storm']!, 'sync-client.cpuprofile'), JSON.stringify(profile));
  syncProfiler.disconnect();
}
send({ synced: { seconds: (performance.now() - t0) / 1000, sinceProcessStart: performance.now() / 1000, cpuSeconds: cpuSeconds() - c0, pods: subject?.pods() ?? 0 } });

process.on('message', async (command: { do: string; count?: number; hot?: boolean; readAnswer?: boolean; relists?: number }) => {
  switch (command.do) {
    case 'memory':
      send({ memory: await memory() });
      break;
    case 'lookups':
      send({ lookups: subject?.lookups?.(command.count!, command.hot === true, command.readAnswer === true) ?? null });
      break;
    case 'relist': {
      // The bench has made every watch end with 410 Gone: wait until each resource has relisted.
      const c = cpuSeconds();
      const start = subject!.relists();
      // What the RSS is made of at its highest, sampled between the list's chunks (the bench reads the exact peak from VmHWM).
      let atPeak = process.memoryUsage();
      const sampler = setInterval(() => {
        const m = process.memoryUsage();
        if (m.rss > atPeak.rss) atPeak = m;
      }, 20);
      while (subject!.relists() < start + command.relists!) await sleep(5);
      clearInterval(sampler);
      send({ relisted: { cpuSeconds: cpuSeconds() - c, pods: subject!.pods(), atPeak } });
      break;
    }
    case 'storm-start':
      storm = new Map();
      restartsBefore = subject?.restarts?.();
      loopDelay.reset();
      loopDelay.enable();
      gcPauses.start();
      if (opts['profile-storm']) {
        profiler = new Session();
        profiler.connect();
        await profiler.post('Profiler.enable');
        await profiler.post('Profiler.start');
      }
      send({ stormStarted: { cpuSeconds: cpuSeconds() } });
      break;
    case 'storm-peek':
      send({ storm: { cpuSeconds: cpuSeconds(), seen: storm?.size ?? 0 } });
      break;
    case 'storm-end':
      loopDelay.disable();
      if (profiler) {
        const { profile } = await profiler.post('Profiler.stop');
        writeFileSync(join(opts['profile-storm']!, 'storm-client.cpuprofile'), JSON.stringify(profile));
        profiler.disconnect();
        profiler = undefined;
      }
      send({
        storm: {
          seen: [...(storm ?? [])],
          loopDelayMs: { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
          gc: gcPauses.stop(),
          restarts: restartsDuring(restartsBefore, subject?.restarts?.()),
        },
      });
      storm = undefined;
      break;
    case 'exit':
      process.exit(0);
  }
});

// Lease lookups by address bytes, as the enricher makes them for every flow
// (LeaseTable.lookup(address, atMs)), on a dual-stack cluster: --pods pods
// each with an IPv4 and an IPv6 address, looked up in a shuffled order, per
// family. identity-scale.bench.ts measures lookups by key on the IPv4
// addresses of a synced agent; this one the IPv6 path too, where a key is a
// string. Each case runs in its own process (the image's V8 flags) on the
// lease table of the working tree, and with --before REV on that commit's.
// The address is copied into one reused buffer before each lookup, as a
// flow's own (fresh, in cache) address would be, so what is measured is the
// lookup, not reaching an address object somewhere in the heap.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { type BenchResult, load, machine, node, printResult, removeDir, repoRoot, tempDir, writeResult } from '../lib/harness.ts';
import { NODE_FLAGS } from '../../common/node-runtime.ts';

const { values: opts } = parseArgs({
  options: {
    pods: { type: 'string', default: '100000' },
    /** Per family; fewer than ~20M measure the JIT's tiers as much as the lookups (5M gave 3.3-6.8 M/s for the same IPv6 code). */
    lookups: { type: 'string', default: '20000000' },
    before: { type: 'string' },
    /** Internal: measure the lease table at this path and print the figures as JSON. */
    measure: { type: 'string' },
  },
});
const pods = Number(opts.pods);
const lookupCount = Number(opts.lookups);

interface Figures {
  family: 'IPv4' | 'IPv6';
  perSecond: number;
  scavenges: number;
  pods: number;
}

/** One process: a table of `pods` dual-stack pods, then timed lookups of each family. */
async function measure(leasesPath: string): Promise<Figures[]> {
  const { LeaseTable } = (await import(leasesPath)) as typeof import('../../enrich/leases.ts');
  const table = new LeaseTable();
  const now = Date.now();
  const v4 = new Uint8Array(pods * 4);
  const v6 = new Uint8Array(pods * 16);
  for (let i = 0; i < pods; i++) {
    const [a, b, c] = [(i >> 16) & 255, (i >> 8) & 255, i & 255];
    v4.set([10, a, b, c], 4 * i);
    v6.set([0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, a, b, c], 16 * i);
    const podIPs = [`10.${a}.${b}.${c}`, `fd00:10::${a.toString(16)}:${((b << 8) | c).toString(16)}`];
    table.applyPod('add', { uid: `uid-${i}`, namespace: 'bench', name: `pod-${i}`, nodeName: 'node', hostNetwork: false, phase: 'Running', podIPs, owner: undefined, labels: [], deletingSinceMs: undefined }, now - 60_000);
  }
  // A shuffled order (a fixed seed), so consecutive lookups touch unrelated entries.
  const order = Uint32Array.from({ length: pods }, (_, i) => i);
  let seed = 1;
  for (let i = pods - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  let scavenges = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if ((entry as PerformanceEntry & { detail: { kind: number } }).detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) scavenges++;
  });
  const figures: Figures[] = [];
  for (const [family, width, packed] of [['IPv4', 4, v4], ['IPv6', 16, v6]] as const) {
    const address = new Uint8Array(width);
    let named = 0;
    const run = (count: number): void => {
      for (let i = 0; i < count; i++) {
        const at = order[i % pods]! * width;
        for (let b = 0; b < width; b++) address[b] = packed[at + b]!;
        const answer = table.lookup(address, now);
        // The first pass checks the answers; the rest does not read them (identity-scale measures that read).
        if (i < pods && answer.type === 'pod') named++;
      }
    };
    run(Math.min(lookupCount, 200_000)); // warm-up
    named = 0;
    observer.observe({ entryTypes: ['gc'] });
    scavenges = 0;
    // This thread's CPU time: on a loaded machine, wall time would count other processes' turns.
    const t0 = process.threadCpuUsage();
    run(lookupCount);
    const used = process.threadCpuUsage(t0);
    // The observer hears of the last collections on a later turn.
    await new Promise((resolve) => setImmediate(resolve));
    observer.disconnect();
    if (named !== Math.min(pods, lookupCount)) throw new Error(`${family}: ${named} of the first ${Math.min(pods, lookupCount)} lookups named a pod`);
    figures.push({ family, perSecond: lookupCount / ((used.user + used.system) / 1e6), scavenges, pods });
  }
  return figures;
}

if (opts.measure) {
  process.stdout.write(JSON.stringify(await measure(opts.measure)));
  process.exit(0);
}

const loadBefore = load();
const work = tempDir('bench-lease-lookups');
const cases: Array<{ label: string; ours: boolean; leases: string }> = [{ label: 'podflow LeaseTable.lookup', ours: true, leases: join(repoRoot, 'enrich/leases.ts') }];
try {
  if (opts.before) {
    const src = join(work, 'before');
    mkdirSync(src);
    execFileSync('bash', ['-c', `git -C ${repoRoot} archive ${opts.before} enrich common | tar -x -C ${src}`]);
    cases.push({ label: `podflow LeaseTable.lookup at ${opts.before}`, ours: false, leases: join(src, 'enrich/leases.ts') });
  }
  const rows: BenchResult['rows'] = [];
  const measured = new Map<string, Figures[]>();
  for (const c of cases) {
    const out = execFileSync(node, [...NODE_FLAGS, import.meta.filename, '--pods', String(pods), '--lookups', String(lookupCount), '--measure', c.leases], { encoding: 'utf8', cwd: repoRoot });
    const figures = JSON.parse(out) as Figures[];
    measured.set(c.label, figures);
    for (const f of figures) rows.push({ label: `${c.label} (${f.family})`, ours: c.ours, cells: [String(f.pods), `${(f.perSecond / 1e6).toFixed(2)} M`, String(f.scavenges)] });
  }
  const ours = measured.get(cases[0]!.label)!;
  const result: BenchResult = {
    name: 'enrich/lease-lookups',
    title: `Lease lookups by address bytes: ${pods} dual-stack pods, ${lookupCount} lookups per family in a shuffled order`,
    columns: ['lookup', 'pods', 'lookups/s (thread CPU)', 'scavenges while timed'],
    rows,
    targets: ours.map((f) => ({ what: `${f.pods} pods, ${f.family}: ≥ 10M lookups/s on random pod addresses`, met: f.perSecond >= 10e6, measured: `${(f.perSecond / 1e6).toFixed(2)} M/s` })),
    commands: [
      `node bench/enrich/lease-lookups.bench.ts --pods ${pods} --lookups ${lookupCount}${opts.before ? ` --before ${opts.before}` : ''}`,
      `node ${NODE_FLAGS.join(' ')} bench/enrich/lease-lookups.bench.ts --measure LEASES_TS   # one process per case`,
    ],
    notes: [
      'each pod: one IPv4 (10.0.0.0/8) and one IPv6 (fd00:10::/64) address, both open leases; every lookup names a pod (checked on the first pass)',
      'scavenges while timed: young-generation collections during the timed lookups, i.e. what the lookups allocate (with the image\'s 1 MiB semi-space)',
    ],
    machine: machine(),
    loadBefore,
    loadAfter: load(),
  };
  printResult(result);
  writeResult(result);
} finally {
  removeDir(work);
}

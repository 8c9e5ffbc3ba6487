// Run by capabilities.test.ts under `setpriv` with a chosen capability set:
// does each privileged step of the agent work? Prints one JSON object,
// step -> "ok" or the error code. argv: NETNS_PATH PID_IN_NAMESPACE
import { openSync, closeSync, statSync } from 'node:fs';
import { addon } from '../../netns/addon.ts';
import { openCaptureAsync } from '../../netns/capture.ts';

const [nsPath, pid] = process.argv.slice(2);
const result: Record<string, string> = {};
const step = async (name: string, fn: () => unknown) => {
  try {
    await fn();
    result[name] = "ok";
    if (process.env.PROBE_TRACE) process.stderr.write(`${name} ok\n`);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
    result[name] = e.cause?.code ?? e.code ?? String(e.message);
  }
};
// Discovery: stat() of another process's namespace link (netns/discovery.ts).
await step('procNamespace', () => closeSync(openSync(`/proc/${pid}/ns/net`, 'r')));
// Discovery: a CNI namespace file.
await step('netnsFile', () => statSync(nsPath));
// setns into the pod namespace and list its interfaces (netns/interfaces.ts).
await step('setns', () => addon.runInNetns(nsPath, () => addon.listInterfaceAddresses()));
// A capture handle inside the namespace, as the agent opens it (on a libuv
// pool thread that enters the namespace; no promiscuous mode).
const any = { inode: 0, dev: 0 };
await step('capture', async () => (await openCaptureAsync(nsPath, any, () => {})).close());
await step('captureViaProc', async () => (await openCaptureAsync(`/proc/${pid}/ns/net`, any, () => {})).close());
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);

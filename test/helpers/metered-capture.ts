// The capture path of the agent without the agent, for tests on a simulated
// node: namespace discovery → NodeCapture (only this node's pods) → decode →
// FlowMeter (no timeouts during a test) → onFlow. Discovery is started, the
// capture is not (callers subscribe to its events first); both close after
// the test.
import type { TestContext } from 'node:test';
import { NetnsDiscovery } from '../../netns/discovery.ts';
import { NodeCapture } from '../../netns/node-capture.ts';
import type { CaptureOptions } from '../../netns/capture.ts';
import { PacketDecoder } from '../../flow/decode.ts';
import { FlowMeter } from '../../flow/meter.ts';
import { PacketIngest } from '../../flow/ingest.ts';
import type { FlowRecord } from '../../flow/types.ts';
import type { SimNode } from '../../sim/simnode.ts';

export async function meteredCapture(
  t: TestContext,
  node: SimNode,
  options: { onFlow: (record: FlowRecord) => void; capture?: CaptureOptions; discoveryRescanMs?: number },
): Promise<{ capture: NodeCapture; discovery: NetnsDiscovery; ingest: PacketIngest }> {
  const meter = new FlowMeter({ idleTimeoutMs: 600_000, activeTimeoutMs: 600_000, maxFlows: 4096, onFlow: options.onFlow });
  const ingest = new PacketIngest(new PacketDecoder(), meter);
  const discovery = new NetnsDiscovery({ procRoot: null, rescanIntervalMs: options.discoveryRescanMs ?? 200 });
  const capture = new NodeCapture({
    discovery,
    meter,
    sink: (id, linkType, buf, start, end) => ingest.ingest(id, linkType, buf, start, end),
    namespaceFilter: (ns) => ns.paths.some((p) => p.startsWith(`/run/netns/${node.tag}p`)),
    interfaceRescanMs: 100,
    capture: options.capture ?? {},
  });
  t.after(() => {
    capture.close();
    discovery.close();
  });
  await discovery.start();
  return { capture, discovery, ingest };
}

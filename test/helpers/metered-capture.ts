// The capture path of the agent without the agent, for tests on a simulated
// node: namespace discovery → NodeCapture (only this node's pods) → decode →
// FlowMeter (no timeouts during a test) → onFlow. Discovery is started, the
// capture is not (callers subscribe to its events first); both close after
// the test. An exception in the sink or in onFlow fails the test
// (failOnThrow): NodeCapture would only count it.
import type { TestContext } from 'node:test';
import { type DiscoveredNamespace, NetnsDiscovery } from '../../netns/discovery.ts';
import { NodeCapture } from '../../netns/node-capture.ts';
import type { CaptureOptions } from '../../netns/capture.ts';
import { PacketDecoder } from '../../flow/decode.ts';
import { FlowMeter } from '../../flow/meter.ts';
import { PacketIngest } from '../../flow/ingest.ts';
import type { FlowRecord } from '../../flow/types.ts';
import type { SimNode } from '../../sim/simnode.ts';
import { failOnThrow } from './fail-on-throw.ts';

export interface MeteredCaptureOptions {
  onFlow: (record: FlowRecord) => void;
  capture?: CaptureOptions;
  discoveryRescanMs?: number;
  /** NodeCapture's; default 100 ms. */
  interfaceRescanMs?: number;
  /** Which of the node's namespaces to capture; default all its pods'. */
  namespaceFilter?: (ns: DiscoveredNamespace) => boolean;
}

export async function meteredCapture(
  t: TestContext,
  node: SimNode,
  options: MeteredCaptureOptions,
): Promise<{ capture: NodeCapture; discovery: NetnsDiscovery; ingest: PacketIngest; meter: FlowMeter }> {
  const meter = new FlowMeter({ idleTimeoutMs: 600_000, activeTimeoutMs: 600_000, maxFlows: 4096, onFlow: failOnThrow(options.onFlow) });
  const ingest = new PacketIngest(new PacketDecoder(), meter);
  const discovery = new NetnsDiscovery({ procRoot: null, rescanIntervalMs: options.discoveryRescanMs ?? 200 });
  const capture = new NodeCapture({
    discovery,
    meter,
    sink: failOnThrow((id, linkType, buf, start, end) => void ingest.ingest(id, linkType, buf, start, end)),
    namespaceFilter: options.namespaceFilter ?? ((ns) => ns.paths.some((p) => p.startsWith(`/run/netns/${node.tag}p`))),
    interfaceRescanMs: options.interfaceRescanMs ?? 100,
    capture: options.capture ?? {},
  });
  t.after(() => {
    capture.close();
    discovery.close();
  });
  await discovery.start();
  return { capture, discovery, ingest, meter };
}

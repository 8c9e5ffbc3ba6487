// The capture path of the agent without the agent, for tests on a simulated
// node: namespace discovery → NodeCapture (only this node's pods) → decode →
// FlowMeter (no timeouts during a test; a closed point's flows end with
// FORCED_END) → onFlow. Discovery is started, the
// capture is not (callers subscribe to its events first); both close after
// the test.
import type { TestContext } from 'node:test';
import { type DiscoveredNamespace, NetnsDiscovery } from '../../netns/discovery.ts';
import { NodeCapture } from '../../netns/node-capture.ts';
import type { CaptureHandle, CaptureOptions, ObservationPoint } from '../../netns/capture.ts';
import { PacketDecoder } from '../../flow/decode.ts';
import { FlowMeter } from '../../flow/meter.ts';
import { FlowFeatures, type FeatureSwitches } from '../../flow/features/flow-features.ts';
import { PacketIngest } from '../../flow/ingest.ts';
import { EndReason, type FlowRecord } from '../../flow/types.ts';
import type { SimNode, SimPod } from '../../sim/simnode.ts';
import { failOnThrow } from './fail-on-throw.ts';

export interface MeteredCaptureOptions {
  onFlow: (record: FlowRecord) => void;
  /** Per-flow features the meter runs (flow/features/flow-features.ts); none by default. */
  features?: FeatureSwitches;
  capture?: CaptureOptions;
  discoveryRescanMs?: number;
  /** Which of the node's namespaces to capture; default all its pods'. */
  namespaceFilter?: (ns: DiscoveredNamespace) => boolean;
}

export interface MeteredCapture {
  capture: NodeCapture;
  discovery: NetnsDiscovery;
  ingest: PacketIngest;
  meter: FlowMeter;
  /** Every observation point the capture has reported (at an interface's first packet), also after it closed. */
  points: ObservationPoint[];
  /** The id of a pod interface's point; undefined until its first packet. */
  pointOf(pod: SimPod, ifname: string): number | undefined;
}

export async function meteredCapture(t: TestContext, node: SimNode, options: MeteredCaptureOptions): Promise<MeteredCapture> {
  const maxFlows = 4096;
  const features = options.features && FlowFeatures.hooks(options.features, maxFlows);
  const meter = new FlowMeter({ idleTimeoutMs: 600_000, activeTimeoutMs: 600_000, maxFlows, onFlow: failOnThrow(options.onFlow), ...(features && { features }) });
  const ingest = new PacketIngest(new PacketDecoder(), meter);
  const discovery = new NetnsDiscovery({ procRoot: null, rescanIntervalMs: options.discoveryRescanMs ?? 200 });
  const capture = new NodeCapture({
    discovery,
    sink: failOnThrow((id, linkType, buf, start, end) => void ingest.ingest(id, linkType, buf, start, end)),
    namespaceFilter: options.namespaceFilter ?? ((ns) => ns.paths.some((p) => p.startsWith(`/run/netns/${node.tag}p`))),
    // The agent's default is eth0 only; these tests hold lo's traffic to account too.
    captureLoopback: true,
    // 4 MiB rings: with offloads off (the tests' ground truth) a full-speed
    // transfer is ~100k packets/s per pod on two busy cores, more than the
    // default ring holds while the reader thread waits for a core; ring sizes
    // are bench/netns/burst-onset's question, not these tests'.
    capture: { bufferBytes: 4 << 20, ...options.capture },
  });
  const points: ObservationPoint[] = [];
  const paths = new Map<string, string[]>();
  capture.on('event', (e) => {
    if (e.type === 'attached') paths.set(e.ns.key, e.ns.paths);
    if (e.type === 'opened') points.push(e.point);
    // As the agent does: a closed point's flows end at once.
    if (e.type === 'closed') meter.endObservationPoint(e.point.id, EndReason.FORCED_END);
  });
  t.after(() => {
    capture.close();
    discovery.close();
  });
  await discovery.start();
  const pointOf = (pod: SimPod, ifname: string) =>
    points.findLast((p) => p.interfaceName === ifname && paths.get(`${p.netnsDev}:${p.netnsInode}`)?.includes(pod.nsPath))?.id;
  return { capture, discovery, ingest, meter, points, pointOf };
}

/** The capture has delivered every packet its kernel rings took; throws if one was lost (the counts would be wrong for that, not for counting). */
export function caughtUp(handles: CaptureHandle[]): boolean {
  return handles.every((h) => {
    const s = h.stats();
    if (s.dropped + s.queueDropped > 0) throw new Error(`${h.nsPath}: packets lost before metering: ${JSON.stringify(s)}`);
    return s.packets === s.received;
  });
}

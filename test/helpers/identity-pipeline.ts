// The identity path of the agent without the agent, for tests on a simulated
// node: the test API server → KubeCaches (client-node) → Naming, and the
// node's namespaces → meteredCapture (discovery, NodeCapture, decode,
// FlowMeter) → Naming.enrich, with the meter's flows split where a lease
// closes, as the agent wires it. Naming and the caches are started, the
// capture is not (callers start it when the scene is set); all close after
// the test.
import type { TestContext } from 'node:test';
import { join } from 'node:path';
import { Naming } from '../../enrich/naming.ts';
import { KubeCaches } from '../../enrich/kube-caches.ts';
import { NetnsPods } from '../../enrich/netns-pods.ts';
import type { NodeCaptureEvent } from '../../netns/node-capture.ts';
import { listAddresses } from '../../netns/interfaces.ts';
import type { ExportRecord } from '../../enrich/export-record.ts';
import type { SimNode } from '../../sim/simnode.ts';
import type { KubeApiServer, KubeObject } from '../../sim/kube-apiserver.ts';
import { meteredCapture, type MeteredCaptureOptions } from './metered-capture.ts';

/** A running pod of a node in the API server's form, in namespace shop, with its uid `uid-NAME`. */
export function podObject(name: string, ip: string, nodeName: string, metadata: object = {}): KubeObject {
  return {
    metadata: { name, namespace: 'shop', uid: `uid-${name}`, ...metadata },
    spec: { nodeName, containers: [{ name: 'c', image: 'busybox' }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
  };
}

export async function identityPipeline(
  t: TestContext,
  node: SimNode,
  server: KubeApiServer,
  options: {
    /** Where the kubeconfig is written. */
    dir: string;
    nodeName: string;
    labelKeys?: string[];
    capture?: Omit<MeteredCaptureOptions, 'onFlow'>;
  },
) {
  const caches = new KubeCaches({ kubeconfig: server.writeKubeconfig(join(options.dir, 'kubeconfig')), labelKeys: options.labelKeys });
  const records: ExportRecord[] = [];
  const { capture, discovery, meter } = await meteredCapture(t, node, { discoveryRescanMs: 100, ...options.capture, onFlow: (r) => naming.enrich(r) });
  const naming = new Naming({
    caches,
    capture,
    namespaces: (events) => new NetnsPods({ nodeName: options.nodeName, listAddresses, ...events }),
    clusterName: 'sim',
    onRecord: (r) => records.push(r),
    splitFlowsAt: (address, atMs, keep) => void meter.splitFlowsAt(address, atMs, keep),
    tickMs: 100,
  });
  const events: NodeCaptureEvent[] = [];
  capture.on('event', (e) => events.push(e));
  t.after(async () => {
    naming.close();
    await caches.close();
  });
  naming.start();
  caches.start();
  /** The discovered namespace key of a path, once discovery has it. */
  const nsKeyOf = (nsPath: string) => discovery.namespaces().find((ns) => ns.paths.includes(nsPath))?.key;
  return { caches, records, capture, discovery, meter, naming, events, nsKeyOf };
}

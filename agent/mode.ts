// What a mode of the agent is: what differs between the DaemonSet
// (agent/daemonset.ts) and the sidecar (agent/sidecar.ts), each a factory of
// an AgentMode that Agent (agent/agent.ts) is given; and what both modes'
// readiness shares (cachesNotSynced).
import type { Logger } from 'pino';
import type { AgentConfig } from './config.ts';
import type { FlowRecord } from '../flow/types.ts';
import type { DiscoveredNamespace, DiscoveryStats } from '../netns/discovery.ts';
import type { NamespaceEvents } from '../netns/node-capture.ts';
import type { NamingCapture, NamingStats } from '../enrich/naming.ts';
import { type KubeResource, type KubeResourceStatus, kubeResources } from '../enrich/kube-caches.ts';
import type { ExportRecord } from '../enrich/export-record.ts';

/** How a mode finds namespaces: NetnsDiscovery node-wide, or the one namespace the process is in. */
export interface NamespaceDiscovery extends NamespaceEvents {
  start(): Promise<void>;
  close(): void;
  /** Discovery's counters, when namespaces are discovered. */
  stats?(): DiscoveryStats;
}

/** A mode's naming: Naming (enrich/naming.ts) with the lifecycle and readiness of the Kubernetes caches behind it. */
export interface ModeNaming {
  /** FlowMeter's onFlow. */
  enrich(flow: FlowRecord): void;
  /** Starts the caches syncing and subscribes (to the caches and the capture's events); before capture starts. */
  start(): void;
  /** At stop, after the meter's FORCED_END flush: unsubscribes and releases every flow still held. */
  close(): void;
  /** Ends the Kubernetes clients. */
  closeCaches(): Promise<unknown>;
  /** Why naming is not ready (the caches have not synced, or cannot be used), or undefined. */
  notReady(): string | undefined;
  cacheStatus(): Record<KubeResource, KubeResourceStatus>;
  stats(): NamingStats;
}

/** What the naming is given of the agent. */
export interface NamingWiring {
  capture: NamingCapture;
  onRecord: (record: ExportRecord) => void;
  /** Splits the meter's open flows with this address at atMs, except at the observation points keep() spares (the address's lease closed then). */
  splitFlowsAt: (address: Uint8Array, atMs: number, keep: (observationPointId: number) => boolean) => void;
}

/** What differs between the DaemonSet and the sidecar; everything else is Agent's. */
export interface AgentMode {
  /** Extra fields on the agent's own log lines. */
  readonly logFields: object;
  readonly namespaces: NamespaceDiscovery;
  /** Which found namespaces to attach to. Default: all. */
  readonly namespaceFilter?: (ns: DiscoveredNamespace) => boolean;
  /** Builds the naming once the capture exists (its events tell the observation points). */
  naming(wiring: NamingWiring): ModeNaming;
  /** Fields of the 'agent started' line besides metrics and collectors. */
  startedFields(): object;
}

/** Builds a mode from the configuration and the root logger; may throw (before anything opens). */
export type AgentModeFactory = (config: AgentConfig, log: Logger) => AgentMode;

/** Why the caches are not ready yet, naming the first resource that has not synced and its last error; undefined once all have. */
export function cachesNotSynced(status: Record<KubeResource, KubeResourceStatus>): string | undefined {
  const pending = kubeResources.filter((r) => !status[r].synced);
  if (pending.length === 0) return undefined;
  const failing = pending.find((r) => status[r].lastError !== undefined);
  return `Kubernetes caches not synced (${pending.join(', ')})${failing ? `: ${status[failing].lastError}` : ''}`;
}


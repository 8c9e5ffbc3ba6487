// One catalog of every error podflow throws, with a stable code
// (PODFLOW_ERR_<AREA>_<WHAT>) and a message. docs/errors.md documents each
// code; test/common/errors.test.ts checks the two agree in both directions.
// Configuration and lifecycle errors throw these; bad packets and bad IPFIX
// messages never throw: they return a status and bump a counter.

export const errorCatalog = {
  // common / CLI
  PODFLOW_ERR_CLI_USAGE: 'invalid command line',
  PODFLOW_ERR_DEMO_AGENT: 'the demo could not start its agent',
  // netns: namespaces, the native addon, capture handles
  // (netns entries go here)
  PODFLOW_ERR_NETNS_ADDON_LOAD: 'the netns native addon could not be loaded',
  PODFLOW_ERR_NETNS_ENTER: 'cannot enter the network namespace',
  PODFLOW_ERR_NETNS_INTERFACES: 'cannot list the interfaces of the network namespace',
  PODFLOW_ERR_NETNS_CAPTURE_OPEN: 'cannot open a capture handle',
  PODFLOW_ERR_NETNS_CAPTURE_LOST: 'a capture handle stopped',
  PODFLOW_ERR_NETNS_CONFIG: 'invalid netns capture configuration',
  // flow: capture files, decoding and metering configuration
  PODFLOW_ERR_FLOW_CONFIG: 'invalid flow meter setting',
  PODFLOW_ERR_FLOW_FILE_READ: 'cannot read capture file',
  PODFLOW_ERR_FLOW_NOT_A_CAPTURE: 'not a pcap or pcapng capture file',
  // export and collect: IPFIX exporter transports and the collector
  PODFLOW_ERR_EXPORT_TARGET: 'invalid export target',
  PODFLOW_ERR_EXPORT_CONFIG: 'invalid exporter setting',
  PODFLOW_ERR_EXPORT_TLS_FILES: 'cannot read a TLS file of the export target',
  PODFLOW_ERR_EXPORT_CONNECT: 'cannot connect to the collector',
  PODFLOW_ERR_EXPORT_TLS: 'TLS handshake with the collector failed',
  PODFLOW_ERR_EXPORT_RESOLVE: 'cannot resolve the collector name',
  PODFLOW_ERR_EXPORT_STALLED: 'the collector stopped reading',
  PODFLOW_ERR_EXPORT_SEND: 'sending to the collector failed',
  PODFLOW_ERR_EXPORT_FILE: 'cannot write the IPFIX file',
  PODFLOW_ERR_EXPORT_CLOSED: 'the exporter is closed',
  PODFLOW_ERR_COLLECT_LISTEN_ADDRESS: 'invalid collector listen address',
  PODFLOW_ERR_COLLECT_TLS_FILES: 'cannot read a TLS file of the collector',
  PODFLOW_ERR_COLLECT_LISTEN: 'cannot listen for IPFIX',
  PODFLOW_ERR_WEB_LISTEN: 'cannot listen for the web view',
  PODFLOW_ERR_WEB_BUNDLE: 'the web view\'s page is missing',
  // ipfix: the IPFIX codec (bad IPFIX messages are counted, never thrown)
  PODFLOW_ERR_IPFIX_CONFIG: 'invalid IPFIX encoder or registry setting',
  // enrich: Kubernetes caches (API failures are counted and retried, never thrown)
  PODFLOW_ERR_KUBE_CONFIG: 'cannot use the Kubernetes client configuration',
  PODFLOW_ERR_KUBE_SETTING: 'invalid Kubernetes cache setting',
  PODFLOW_ERR_KUBE_UNAUTHORIZED: 'the Kubernetes API server rejected our credentials',
  PODFLOW_ERR_KUBE_FORBIDDEN: 'the Kubernetes API server forbids the request (RBAC)',
  PODFLOW_ERR_KUBE_UNREACHABLE: 'cannot reach the Kubernetes API server',
  PODFLOW_ERR_KUBE_API: 'the Kubernetes API server answered with an error',
  PODFLOW_ERR_KUBE_CLOSED: 'the Kubernetes caches are closed',
  PODFLOW_ERR_KUBE_BAD_OBJECT: 'a listed Kubernetes object is not valid JSON',
  PODFLOW_ERR_ENRICH_CONFIG: 'invalid identity enrichment setting',
  // agent: configuration and lifecycle of `podflow agent`
  PODFLOW_ERR_CONFIG_FILE: 'cannot read the agent configuration file',
  PODFLOW_ERR_CONFIG_INVALID: 'invalid agent configuration',
  PODFLOW_ERR_AGENT_LISTEN: 'cannot listen for metrics and health checks',
  // webhook: `podflow webhook`, the sidecar injector
  PODFLOW_ERR_WEBHOOK_CONFIG: 'invalid webhook configuration',
  PODFLOW_ERR_WEBHOOK_TLS_FILES: 'cannot use the webhook TLS certificate or key',
  PODFLOW_ERR_WEBHOOK_LISTEN: 'the webhook cannot listen',
  PODFLOW_ERR_WEBHOOK_REVIEW: 'malformed admission review',
  // sidecar: `podflow agent --mode=sidecar`
  PODFLOW_ERR_SIDECAR_IDENTITY: "cannot read the pod's identity from the downward API",
} as const satisfies Record<string, string>;

export type ErrorCode = keyof typeof errorCatalog;

export class PodflowError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, detail: string, options?: { cause?: unknown }) {
    super(`${errorCatalog[code]}: ${detail}`, options);
    this.name = 'PodflowError';
    this.code = code;
  }
}

// One catalog of every error podflow throws, with a stable code
// (PODFLOW_ERR_<AREA>_<WHAT>) and a message. docs/errors.md documents each
// code; test/common/errors.test.ts checks the two agree in both directions.
// Configuration and lifecycle errors throw these; bad packets and bad IPFIX
// messages never throw: they return a status and bump a counter.

export const errorCatalog = {
  // common / CLI
  PODFLOW_ERR_CLI_USAGE: 'invalid command line',
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

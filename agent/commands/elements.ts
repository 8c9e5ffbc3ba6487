// `podflow elements`: prints what each collector needs to name podflow's
// enterprise elements, in its own format. docs/ipfix-elements.md is the
// markdown output for the default PEN (a test keeps them equal).
import { parseArgs } from 'node:util';
import { PodflowError } from '../../common/errors.ts';
import {
  DEFAULT_ENTERPRISE_NUMBER,
  type InformationElement,
  InformationElementRegistry,
  naturalLength,
  VARIABLE_LENGTH,
} from '../../ipfix/registry.ts';
import { IpfixEncoder } from '../../ipfix/encoder.ts';
import { IPFIXPROBE_ELEMENTS } from '../../ipfix/feature-elements.ts';

export const FORMATS = ['ipfixdump-xml', 'nfacctd', 'iespec', 'markdown'] as const;
export type ElementsFormat = (typeof FORMATS)[number];

const USAGE = `usage: podflow elements --format ${FORMATS.join('|')} [--pen N]

Prints podflow's enterprise information elements for a collector:
  ipfixdump-xml  libfixbuf element file: ipfixDump --element-file FILE
  nfacctd        pmacct aggregate_primitives file (aggregate_primitives: FILE)
  iespec         python-ipfix spec lines: ipfix2csv --spec FILE
  markdown       the element and template reference (docs/ipfix-elements.md)

  --pen N   Private Enterprise Number the agent exports with (default ${DEFAULT_ENTERPRISE_NUMBER})
`;

export async function run(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        format: { type: 'string' },
        pen: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `${(err as Error).message}\n\n${USAGE}`, { cause: err });
  }
  const { values } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const format = values.format as ElementsFormat | undefined;
  if (!format || !FORMATS.includes(format)) {
    throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `--format must be one of ${FORMATS.join(', ')}\n\n${USAGE}`);
  }
  const pen = values.pen === undefined ? DEFAULT_ENTERPRISE_NUMBER : Number(values.pen);
  if (!/^\d+$/.test(values.pen ?? '1') || !Number.isInteger(pen) || pen < 1 || pen > 0xffffffff || pen === 29305) {
    throw new PodflowError('PODFLOW_ERR_CLI_USAGE', `--pen must be an integer from 1 to 4294967295 other than 29305, got ${values.pen}\n\n${USAGE}`);
  }
  process.stdout.write(renderElements(format, pen));
  return 0;
}

/** The text `podflow elements --format <format> --pen <pen>` prints. */
export function renderElements(format: ElementsFormat, pen: number = DEFAULT_ENTERPRISE_NUMBER): string {
  const elements = new InformationElementRegistry(pen).enterpriseElements;
  switch (format) {
    case 'ipfixdump-xml':
      return ipfixDumpXml(elements, pen);
    case 'nfacctd':
      return elements.map((e) => `name=${pmacctName(e)}\tfield_type=${pen}:${e.id}\t${pmacctType(e)}\n`).join('');
    case 'iespec':
      return elements.map((e) => `${e.name}(${pen}/${e.id})<${e.dataType}>[${naturalLength(e.dataType)}]\n`).join('');
    case 'markdown':
      return markdown(elements, pen);
  }
}

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** libfixbuf reads IANA's registry XML plus <cert:enterpriseId> (ipfixDump(1), --element-file). */
function ipfixDumpXml(elements: readonly InformationElement[], pen: number): string {
  const records = elements.map(
    (e) => `    <record>
      <name>${xml(e.name)}</name>
      <dataType>${e.dataType}</dataType>
      <dataTypeSemantics>${e.semantics}</dataTypeSemantics>
      <cert:enterpriseId>${pen}</cert:enterpriseId>
      <elementId>${e.id}</elementId>
      <status>current</status>
      <description>
        <paragraph>${xml(e.description)}</paragraph>
      </description>
    </record>
`,
  );
  return `<?xml version="1.0" encoding="UTF-8"?>
<registry id="podflow_ipfix" xmlns="http://www.iana.org/assignments" xmlns:cert="http://www.cert.org/ipfix">
  <title>podflow IPFIX elements (PEN ${pen})</title>
  <registry id="podflow-information-elements">
    <title>podflow Kubernetes identity elements</title>
${records.join('\n')}  </registry>
</registry>
`;
}

/** pmacct's length and semantics of an element: strings vlen/str, numbers their length as u_int. */
function pmacctType(e: InformationElement): string {
  const length = naturalLength(e.dataType);
  return length === VARIABLE_LENGTH ? 'len=vlen\tsemantics=str' : `len=${length}\tsemantics=u_int`;
}

/** pmacct primitive names: lower case with underscores, e.g. k8s_source_pod_name. */
function pmacctName(e: InformationElement): string {
  return e.name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function markdown(elements: readonly InformationElement[], pen: number): string {
  const rows = elements.map((e) => `| ${pen}/${e.id} | \`${e.name}\` | ${e.dataType} | ${e.description} |`);
  const templateRows = new IpfixEncoder({ observationDomainId: 0, enterpriseNumber: pen }).templates.map((t) => {
    const fields = t.fields.map(
      (f, i) => `${i < t.scopeCount ? '(scope) ' : ''}\`${f.element.name}\`${f.length === VARIABLE_LENGTH ? '' : ` [${f.length}]`}`,
    );
    return `| ${t.id} | ${t.name} | ${fields.join(', ')} |`;
  });
  return `# IPFIX elements

<!-- Generated by \`podflow elements --format markdown\`: do not edit by hand. -->

podflow exports flows as IPFIX (RFC 7011) with IANA elements wherever one
exists, RFC 5103 reverse elements (PEN 29305) for the reverse direction of a
biflow, the Kubernetes identity of both ends as enterprise elements, and
the fields of the per-flow features as IANA elements where they exist
(HTTP, some of TCP's) and enterprise elements where IANA has none (DNS,
TCP, TLS, QUIC). The
enterprise number below is ${pen}${pen === DEFAULT_ENTERPRISE_NUMBER ? ', reserved for documentation by RFC 5612: set your own PEN in the agent configuration and pass it as `--pen`' : ''}.
Every identity element is a variable-length UTF-8 string; an empty string
means the field does not apply to that end (see \`k8s*EndpointType\`).

A record carries a feature's fields only when the feature is on
(\`features.*\` in the configuration) and the flow had it (DNS: UDP or TCP
port 53 with a DNS message read; TLS: a hello read), at most one of DNS,
TLS, QUIC and HTTP: such a record uses the template of its IP version and
features (261 on), the flow template with the feature's fields after it.
DNS fields describe the flow's first transaction (its query, and the
response with the same ID), and count every message of the flow.

TCP fields (every TCP flow) are read from the packets at the observation
point (rules in docs/tcp.md): the handshake split there
(\`tcpSynToSynAckMicroseconds\`, \`tcpSynAckToAckMicroseconds\`), and per
direction podflow's \`tcp*\` counts (segments, retransmitted segments and
octets, out-of-order and zero-window segments, resets), the MSS and the
first and last TTL, with IANA's \`tcpWindowSize\` (of the first segment),
\`tcpWindowScale\` (from the SYN; 65535 when it had none), \`tcpOptions\`
(option kinds 0-63 seen, kind X as bit X from the most significant, as RFC
5102 draws it), \`minimumTTL\` and \`maximumTTL\`, and their RFC 5103
reverse elements.

Collectors learn names and types from RFC 5610 type records the exporter
sends before its templates (libfixbuf: \`ipfixDump --rfc5610\`); for those
that do not, \`podflow elements\` prints the configuration they need:
\`--format ipfixdump-xml\` (libfixbuf \`ipfixDump --element-file\`),
\`--format nfacctd\` (pmacct \`aggregate_primitives\`: keep the lines of
the elements you aggregate on, nfacctd 1.7.7 crashes at start with more
than 63), \`--format iespec\` (python-ipfix).

No template holds two enterprise elements with the same id: pmacct's
nfacctd 1.7.7 ignores the enterprise number among enterprise elements, so an
id equal to that of an RFC 5103 reverse element in the template (29305/1, 2,
6, 32, 139) would be read as that element. This is why the destination end
is 60-70 (it was 30-40 before: \`k8sDestinationPodName\`, then 32, was empty
in nfacctd on every IPv4 flow). Collectors configured by id with the
earlier ids need their configuration made again with \`podflow elements\`
(nfacctd \`aggregate_primitives\`, ipfixDump element files, iespec files);
those that learn from the RFC 5610 records need nothing.

## Counts: packets and octets as they crossed the wire

\`packetDeltaCount\` and \`octetDeltaCount\` (and their reverse elements)
count each direction of a flow as it crossed, or will cross, the wire, also
where the kernel handed the capture one buffer for many packets (GSO/TSO on
sending, GRO on receiving, on a pod's veth and on \`lo\`, UDP GSO, and
tunnels inside the pod such as VXLAN and Geneve):

- \`packetDeltaCount\`: packets; a super-packet counts as the segments it
  stands for, ceil((length - H) / gso_size) with H its headers from the link
  header to the innermost TCP or UDP header (gso_size from the kernel's
  virtio_net_hdr, which the capture asks for);
- \`octetDeltaCount\`: the sum of the IP total lengths (IPv6: payload length +
  40) of those packets, so each further segment adds its repeated IP and
  transport headers; where the length field is 0 (BIG TCP, an IPv6
  jumbogram) the captured wire length stands in.

Checked in the test suite against the senders' own TCP segment counters and
against the counters of a bridge port that cuts the super-packets in
software (\`test/netns/wire-exact.test.ts\`). The buffers the kernel handed
over are counted too, per node, in \`podflow_capture_buffers_total\`.
\`podflow replay\` of a capture file counts each record as one packet, as
tshark does (a file has no gso_size).

## Enterprise elements

| PEN/ID | name | type | description |
| --- | --- | --- | --- |
${rows.join('\n')}

## ipfixprobe's elements (\`featureElements: ipfixprobe\`)

With \`featureElements: ipfixprobe\` the DNS, TLS, QUIC and HTTP fields go
out in the elements CESNET's ipfixprobe (v5.7.0) exports for them, under
its enterprise numbers (CESNET 8057, Flowmon 39499), so collectors set up
for ipfixprobe (ipfixcol2 and its CESNET elements) read podflow's records;
the same templates, these fields in place of the feature's own, and RFC 5610
type records for them. Only the fields podflow reads are sent (no
\`DNS_PSIZE\`, \`DNS_DO\`, TLS extension lists, QUIC connection IDs, HTTP
referer, content type, server or cookies). \`ipfixprobeDnsRcode\` is 0 when
no response came, as ipfixprobe's. They share ids with podflow's identity
elements (8057/10 is \`DNS_ID\`): nfacctd 1.7.7, which ignores enterprise
numbers, cannot read them beside those.

TCP goes out as ipfixprobe's basicplus plugin sends it: \`ipTTL\` (the
highest TTL each way), \`tcpWindowSize\`, \`tcpOptions\` in ipfixprobe's bit
order (each byte's bits reversed, the bytes least significant first: the
same kinds, another number than IANA's), the MSS and the SYN size in
CESNET's 8057/900-902, and their reverses (no \`IP_FLG\`: podflow does not
read IP flags); then podflow's handshake and performance counts
(\`tcpSynToSynAckMicroseconds\` ... \`reverseTcpResetCount\`), for which
ipfixprobe has no element. podflow's MSS is the option's value, where
ipfixprobe reads 4 bytes from it.

| PEN/ID | name | type | description |
| --- | --- | --- | --- |
${IPFIXPROBE_ELEMENTS.map((e) => `| ${e.enterprise}/${e.id} | \`${e.name}\` | ${e.dataType} | ${e.description} |`).join('\n')}

## Templates

| id | template | fields |
| --- | --- | --- |
${templateRows.join('\n')}
`;
}

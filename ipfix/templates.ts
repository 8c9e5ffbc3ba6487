// The templates an encoder announces (RFC 7011 §3.4): their ids, their fields
// in order, and each one's template record as it goes into a template set.
// Built once per encoder, from the registry and the features it exports.
import type { FeatureEncoding } from './feature-elements.ts';
import { flowFieldNames } from './flow-template.ts';
import { type InformationElement, type InformationElementRegistry, naturalLength } from './registry.ts';

/** Template ids of this encoder (data sets carry them as set id). */
export const TemplateId = {
  FLOW_IPV4: 256,
  FLOW_IPV6: 257,
  /** RFC 7011 §4.3 Exporting Process Reliability Statistics. */
  EXPORTING_RELIABILITY: 258,
  /** RFC 7011 §4.1 Metering Process Statistics, scoped by observation domain. */
  DOMAIN_STATISTICS: 259,
  /** RFC 5610 Information Element Type Records. */
  TYPE_INFORMATION: 260,
  /**
   * The first template of a flow with per-flow features: from here on one id
   * per IP version and set of features a record can carry, in the order
   * buildTemplates() makes them (each the flow template, then the features'
   * fields).
   */
  FIRST_FEATURE: 261,
} as const;

export interface TemplateField {
  readonly element: InformationElement;
  /** Encoded length, VARIABLE_LENGTH for strings. */
  readonly length: number;
}

export interface Template {
  readonly id: number;
  /** What it is for, as docs/ipfix-elements.md lists it: FLOW_IPV4, FLOW_IPV6 + dns, ... */
  readonly name: string;
  /** Scope fields first; 0 for a data template. */
  readonly scopeCount: number;
  readonly fields: readonly TemplateField[];
}

/**
 * The sets of features one record can carry, as bit masks over `features`:
 * every non-empty subset with at most one application feature (no
 * features: the plain flow templates). Their templates follow
 * TemplateId.FIRST_FEATURE in this order, IPv4 then IPv6 for each.
 */
export function featureSets(features: readonly FeatureEncoding[]): number[] {
  const sets: number[] = [];
  for (let mask = 1; mask < 1 << features.length; mask++) {
    if (features.filter((f, i) => (mask & (1 << i)) !== 0 && f.layer === 'application').length <= 1) sets.push(mask);
  }
  return sets;
}

export function buildTemplates(registry: InformationElementRegistry, features: readonly FeatureEncoding[]): Template[] {
  const field = (name: string): TemplateField => {
    const element = registry.get(name);
    return { element, length: naturalLength(element.dataType) };
  };
  const name = (id: number) => Object.entries(TemplateId).find(([, v]) => v === id)![0];
  const t = (id: number, scopeCount: number, names: string[]): Template => ({ id, name: name(id), scopeCount, fields: names.map(field) });
  const withFeatures: Template[] = [];
  let id: number = TemplateId.FIRST_FEATURE;
  for (const mask of featureSets(features)) {
    const chosen = features.filter((_, i) => (mask & (1 << i)) !== 0);
    for (const v6 of [false, true]) {
      withFeatures.push({
        id: id++,
        name: `${v6 ? 'FLOW_IPV6' : 'FLOW_IPV4'} + ${chosen.map((f) => f.name).join(' + ')}`,
        scopeCount: 0,
        fields: [...flowFieldNames(v6), ...chosen.flatMap((f) => f.fields)].map(field),
      });
    }
  }
  return [
    t(TemplateId.FLOW_IPV4, 0, flowFieldNames(false)),
    t(TemplateId.FLOW_IPV6, 0, flowFieldNames(true)),
    t(TemplateId.EXPORTING_RELIABILITY, 1, [
      'exportingProcessId',
      'notSentFlowTotalCount',
      'notSentPacketTotalCount',
      'notSentOctetTotalCount',
      // RFC 7011 §4.3: time of the first and of the last flow not sent.
      'observationTimeMilliseconds',
      'observationTimeMilliseconds',
    ]),
    t(TemplateId.DOMAIN_STATISTICS, 1, [
      'observationDomainId',
      'exportedMessageTotalCount',
      'exportedFlowRecordTotalCount',
      'exportedOctetTotalCount',
    ]),
    // RFC 5610 §3.9: scope = (informationElementId, privateEnterpriseNumber).
    // The range is optional there, but libfixbuf takes an options template
    // for type information only when it has every field of §3.9.
    t(TemplateId.TYPE_INFORMATION, 2, [
      'informationElementId',
      'privateEnterpriseNumber',
      'informationElementDataType',
      'informationElementSemantics',
      'informationElementUnits',
      'informationElementRangeBegin',
      'informationElementRangeEnd',
      'informationElementName',
      'informationElementDescription',
    ]),
    ...withFeatures,
  ];
}

/** A template record (RFC 7011 §3.4.1 / §3.4.2.2) without set header. */
export function templateRecordBytes(t: Template): Uint8Array {
  const size = (t.scopeCount > 0 ? 6 : 4) + t.fields.reduce((n, f) => n + (f.element.enterprise ? 8 : 4), 0);
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  v.setUint16(0, t.id);
  v.setUint16(2, t.fields.length);
  let o = 4;
  if (t.scopeCount > 0) {
    v.setUint16(4, t.scopeCount);
    o = 6;
  }
  for (const { element, length } of t.fields) {
    v.setUint16(o, element.enterprise ? element.id | 0x8000 : element.id);
    v.setUint16(o + 2, length);
    o += 4;
    if (element.enterprise) {
      v.setUint32(o, element.enterprise);
      o += 4;
    }
  }
  return b;
}

// Pods as rows of columns rather than objects. Every agent holds every pod
// of the cluster (the caches' store, which the lease table answers from);
// as a slim object a pod costs its object (10 pointer fields, 104
// bytes without pointer compression, which Node is built without) and its
// podIPs array with its address string (~88 bytes) beside the strings it
// shares. As a row it costs one pointer per string-valued field, a byte for
// hostNetwork, a double for the deletion time and, for the common single
// IPv4 address, a uint32 (~70 bytes). A SlimPod is made from a row when one
// is asked for (pod()); it equals the object the row was written from.
// Pure: no I/O.
import { ipKey } from './ip-keys.ts';
import { grown, Rows } from './rows.ts';
import type { SlimOwner, SlimPod } from './types.ts';

const NO_ADDRESSES: readonly string[] = Object.freeze([]);
const NO_LABELS: SlimPod['labels'] = Object.freeze([]);

// How a row's podIPs are kept: none, one IPv4 address whose text is the
// canonical dotted quad (most pods), or as given (in #otherAddresses).
const NO_ADDRESS = 0;
const ONE_IPV4 = 1;
const AS_GIVEN = 2;

/** The one IPv4 address of podIPs as a uint32 if its text is the canonical dotted quad (so the text can be made again); else -1. */
function singleIpv4(podIPs: readonly string[]): number {
  if (podIPs.length !== 1) return -1;
  const key = ipKey(podIPs[0]!);
  return typeof key === 'number' && ipv4Text(key) === podIPs[0] ? key : -1;
}

function ipv4Text(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

export class PodTable {
  // Columns by row. Arrays of pointers for the strings and the shared owner
  // and label objects (namespace, node, phase, owner and labels are
  // interned by the slimmers: one pointer each here, no copy).
  readonly #uid: string[] = [];
  readonly #namespace: string[] = [];
  readonly #name: string[] = [];
  readonly #nodeName: string[] = [];
  readonly #phase: string[] = [];
  readonly #owner: Array<SlimOwner | undefined> = [];
  readonly #labels: Array<SlimPod['labels']> = [];
  #hostNetwork = new Uint8Array(1024);
  #addressForm = new Uint8Array(1024);
  #ipv4 = new Uint32Array(1024);
  /** metadata.deletionTimestamp as ms; NaN when not terminating. */
  #deletingSinceMs = new Float64Array(1024);
  /** podIPs of the rows not kept as one IPv4 address. */
  readonly #otherAddresses = new Map<number, readonly string[]>();
  readonly #rows = new Rows(1024);

  /** Rows in use. */
  get size(): number {
    return this.#rows.inUse;
  }

  /** A new row holding pod. */
  add(pod: SlimPod): number {
    const row = this.#rows.take((capacity) => {
      this.#hostNetwork = grown(this.#hostNetwork, capacity);
      this.#addressForm = grown(this.#addressForm, capacity);
      this.#ipv4 = grown(this.#ipv4, capacity);
      this.#deletingSinceMs = grown(this.#deletingSinceMs, capacity);
    });
    this.set(row, pod);
    return row;
  }

  /** Writes pod over the row's state. */
  set(row: number, pod: SlimPod): void {
    this.#uid[row] = pod.uid;
    this.#namespace[row] = pod.namespace;
    this.#name[row] = pod.name;
    this.#nodeName[row] = pod.nodeName;
    this.#phase[row] = pod.phase;
    this.#owner[row] = pod.owner;
    this.#labels[row] = pod.labels;
    this.#hostNetwork[row] = pod.hostNetwork ? 1 : 0;
    this.#deletingSinceMs[row] = pod.deletingSinceMs ?? NaN;
    this.#otherAddresses.delete(row);
    const ipv4 = singleIpv4(pod.podIPs);
    if (ipv4 >= 0) {
      this.#addressForm[row] = ONE_IPV4;
      this.#ipv4[row] = ipv4;
    } else if (pod.podIPs.length === 0) this.#addressForm[row] = NO_ADDRESS;
    else {
      this.#addressForm[row] = AS_GIVEN;
      this.#otherAddresses.set(row, pod.podIPs);
    }
  }

  /** Frees the row for a later add; what it referred to is no longer held. */
  release(row: number): void {
    this.#uid[row] = '';
    this.#namespace[row] = '';
    this.#name[row] = '';
    this.#nodeName[row] = '';
    this.#phase[row] = '';
    this.#owner[row] = undefined;
    this.#labels[row] = NO_LABELS;
    this.#otherAddresses.delete(row);
    this.#addressForm[row] = NO_ADDRESS;
    this.#rows.release(row);
  }

  uid(row: number): string {
    return this.#uid[row]!;
  }

  namespace(row: number): string {
    return this.#namespace[row]!;
  }

  name(row: number): string {
    return this.#name[row]!;
  }

  /** The row's pod as a new SlimPod (podIPs: a new array, or the frozen empty one). */
  pod(row: number): SlimPod {
    const deletingSinceMs = this.#deletingSinceMs[row]!;
    return {
      uid: this.#uid[row]!,
      namespace: this.#namespace[row]!,
      name: this.#name[row]!,
      nodeName: this.#nodeName[row]!,
      hostNetwork: this.#hostNetwork[row] === 1,
      phase: this.#phase[row]!,
      podIPs: this.podIPs(row),
      owner: this.#owner[row],
      labels: this.#labels[row]!,
      deletingSinceMs: Number.isNaN(deletingSinceMs) ? undefined : deletingSinceMs,
    };
  }

  podIPs(row: number): readonly string[] {
    switch (this.#addressForm[row]) {
      case ONE_IPV4:
        return [ipv4Text(this.#ipv4[row]!)];
      case AS_GIVEN:
        return this.#otherAddresses.get(row)!;
      default:
        return NO_ADDRESSES;
    }
  }

  /** Whether pod equals the row's state, field by field (label sets and owners by content). */
  same(row: number, pod: SlimPod): boolean {
    if (
      this.#uid[row] !== pod.uid ||
      this.#namespace[row] !== pod.namespace ||
      this.#name[row] !== pod.name ||
      this.#nodeName[row] !== pod.nodeName ||
      this.#phase[row] !== pod.phase ||
      (this.#hostNetwork[row] === 1) !== pod.hostNetwork ||
      !Object.is(this.#deletingSinceMs[row], pod.deletingSinceMs ?? NaN) ||
      !sameOwner(this.#owner[row], pod.owner) ||
      !sameLabels(this.#labels[row]!, pod.labels)
    ) {
      return false;
    }
    // Compared in the row's form, so no address text is made for it.
    switch (this.#addressForm[row]) {
      case ONE_IPV4:
        return singleIpv4(pod.podIPs) === this.#ipv4[row];
      case AS_GIVEN: {
        const given = this.#otherAddresses.get(row)!;
        return given.length === pod.podIPs.length && given.every((address, i) => address === pod.podIPs[i]);
      }
      default:
        return pod.podIPs.length === 0;
    }
  }
}

function sameOwner(a: SlimOwner | undefined, b: SlimOwner | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.kind === b.kind && a.name === b.name && a.uid === b.uid);
}

function sameLabels(a: SlimPod['labels'], b: SlimPod['labels']): boolean {
  return a === b || (a.length === b.length && a.every(([key, value], i) => key === b[i]![0] && value === b[i]![1]));
}

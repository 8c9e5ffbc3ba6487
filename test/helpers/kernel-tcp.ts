// The kernel's own view of a namespace's TCP, as ground truth for what
// podflow reads from the packets: its segment counters (nstat, iproute2) and
// its connections' states (ss).
import type { SimNode } from '../../sim/simnode.ts';

export interface TcpCounters {
  /** Segments the stack put on the wire: OutSegs + RetransSegs (the receiver's InSegs counts GRO buffers, so it is not used). */
  sent: number;
  /** TcpRetransSegs: segments sent again, in gso_size units for a retransmitted super-packet. */
  retransmitted: number;
}

/** The namespace's TCP segment counters, absolute (nstat -a: no history file is read or written). */
export function tcpCounters(node: SimNode, netns: string): TcpCounters {
  const values = new Map<string, number>();
  for (const line of node.exec(netns, 'nstat', ['-asz', 'TcpOutSegs', 'TcpRetransSegs']).split('\n')) {
    const [name, value] = line.trim().split(/\s+/);
    if (name !== undefined && value !== undefined) values.set(name, Number(value));
  }
  const retransmitted = values.get('TcpRetransSegs')!;
  return { sent: values.get('TcpOutSegs')! + retransmitted, retransmitted };
}

/** Every TCP exchange of the namespace is over on its side: its last segment (the ACK of the peer's FIN) is sent. */
export function inTimeWait(node: SimNode, netns: string): boolean {
  return node.exec(netns, 'ss', ['-Htan', 'state', 'time-wait']).trim() !== '';
}

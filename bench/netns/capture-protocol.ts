// Messages between live-capture.bench.ts and its capture worker (over the
// child_process IPC channel). Kept apart so the bench compiles without the
// worker's podflow imports.

export type WorkerRequest = { type: 'sample' } | { type: 'stop' };

export interface WorkerSample {
  type: 'sample';
  /** process.cpuUsage() user + system, microseconds, of the capturing process. */
  cpuMicros: number;
  userMicros: number;
  systemMicros: number;
  /** CPU-seconds (user+sys, 10 ms ticks) so far per thread name, from /proc/self/task/<tid>/stat. */
  threads: Record<string, number>;
  /** Records (captured buffers) handed to the meter's ingest, decodable or not. */
  packets: number;
  /** The wire packets they stand for (a GSO/GRO super-packet counts its segments). */
  wirePackets: number;
  /** Packets decoded and metered. */
  metered: number;
}

export type WorkerReply =
  | { type: 'ready' }
  | { type: 'error'; message: string }
  | WorkerSample
  | {
      type: 'stopped';
      /** Flows the meter held or ended. */
      flows: number;
      /** Kernel drops from the capture handle's stats (pcap_stats ps_drop + ps_ifdrop). */
      kernelDrops: number;
      /** Packets the handle's stats say it received (ps_recv). */
      received: number;
    };

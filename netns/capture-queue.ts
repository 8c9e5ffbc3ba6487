// The queue between the addon's reader thread and the JS thread, shared by
// every capture handle (netns/capture.ts): the reader thread copies each
// ring block the kernel hands over into it, and the JS thread delivers its
// records to the handles' sinks. One queue for all pods keeps the rings
// small (they hold packets only until the reader thread wakes) while a
// burst at one pod can use all of it.
import { addon } from './addon.ts';

/**
 * Bounds the queue (allocated in 256 KiB chunks only while there is a
 * backlog), and how many records one event-loop turn delivers (so capture
 * cannot starve the rest of the loop). Applies to every handle, now and later.
 */
export function configureCaptureQueue(options: { queueBytes?: number; recordsPerTurn?: number }): void {
  addon.configureCapture(options);
}

/** The queue now: its chunks in use or spare, and its bound. */
export function captureQueue(): { allocatedBytes: number; maxBytes: number } {
  return addon.captureQueue();
}

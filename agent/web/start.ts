// The browser view as `podflow collect --web` and `podflow demo` start it: a
// window of the flows and the page that shows it, with the URL, the page's
// size and, when the address is reachable from other machines, the warning
// that there is no login.
import type { CollectorStats } from '../../ipfix/collector.ts';
import { FlowWindow, type FlowWindowOptions } from './flow-window.ts';
import { WebView } from './server.ts';

export interface StartedWebView {
  window: FlowWindow;
  view: WebView;
  url: string;
}

export async function startWebView(address: string, stats: () => CollectorStats, say: (line: string) => void, windowOptions: FlowWindowOptions = {}): Promise<StartedWebView> {
  const window = new FlowWindow(windowOptions);
  const view = new WebView({
    window,
    stats: () => {
      const s = stats();
      return { sessions: s.sessions, messages: s.messages, flowRecords: s.flowRecords, badMessages: s.badMessages };
    },
  });
  const { url, exposed } = await view.listen(address);
  say(`web view on ${url} (the page is ${Math.round(view.pageBytes() / 1024)} KiB with gzip)`);
  if (exposed) {
    say(
      `WARNING: the web view listens on ${address}, reachable from other machines, and has no login: ` +
        'anyone who can reach it sees every flow. Bind 127.0.0.1 and use kubectl port-forward or an SSH tunnel instead.',
    );
  }
  return { window, view, url };
}

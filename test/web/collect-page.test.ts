// `podflow collect --web` in headless Chromium: records from two nodes over
// IPFIX, and the page shows them as the chart (a series per node, then per
// namespace), the service map (workloads in their namespaces, a Service in
// front of the workload it leads to, the outside) and the flow table, whose
// filters narrow it. Names and labels that hold markup render as text.
// The functions given to the page run in Chromium: hence the DOM types.
/// <reference lib="dom" />
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { Exporter } from '../../ipfix/exporter.ts';
import { FlowDirection, UNKNOWN_ENDPOINT } from '../../enrich/export-record.ts';
import { NODE_BIN, NODE_FLAGS } from '../../common/node-runtime.ts';
import { canRunChromium, openPage, type OpenPage, screenshot, waitForPage } from '../helpers/browser.ts';
import { exportRecord, podEnd } from '../helpers/ipfix-records.ts';
import { waitFor } from '../helpers/wait.ts';

const CLI = new URL('../../agent/cli.ts', import.meta.url).pathname;
const SCRIPT_LABEL = '<script>window.pwned=1</script>';
const IMG_POD = '<img src=x onerror="window.pwned=2">';

async function collectWeb(t: TestContext, web: string) {
  const child = spawn(NODE_BIN, [...NODE_FLAGS, CLI, 'collect', '--listen', 'tcp://127.0.0.1:0', '--web', web], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c));
  await waitFor(() => /web view on (\S+)/.test(stderr) || child.exitCode !== null, 30_000, () => `podflow collect to serve its page: ${stderr}`);
  assert.equal(child.exitCode, null, stderr);
  return { ipfix: /listening on (\S+)/.exec(stderr)![1]!, page: /web view on (\S+)/.exec(stderr)![1]!, stderr: () => stderr };
}

/** The scene: frontend (node-a) calls the cart Service, cart (node-b) serves it and asks db-0 over UDP, a pod in `lab` with markup in its names goes outside. */
function scene(now: number) {
  const frontend = podEnd('frontend-6d8f9c7b5-x2k4q', { nodeName: 'node-a' });
  const cart = podEnd('cart-5c7d9b8f6-p9r2s', { nodeName: 'node-b' });
  const db = podEnd('db-0', { namespace: 'data', workloadKind: 'StatefulSet', workloadName: 'db', nodeName: 'node-b' });
  const evil = podEnd(IMG_POD, { namespace: 'lab', workloadName: '<b>evil</b>', nodeName: 'node-a', labels: [['app', SCRIPT_LABEL]] });
  const cartService = { ...UNKNOWN_ENDPOINT, type: 'service' as const, serviceNamespace: 'shop', serviceName: 'cart', servicePortName: 'http' };
  const time = { flowStartMilliseconds: now - 8_000, flowEndMilliseconds: now - 1_000 };
  const client = { sourceAddress: Uint8Array.of(198, 18, 0, 10), sourceTransportPort: 40_001 };
  return [
    exportRecord({ source: frontend, destination: cartService }, { ...time, ...client }),
    // The same connection as the cart pod sees it: to its own address, not the Service's.
    exportRecord({ source: frontend, destination: cart, flowDirection: FlowDirection.INGRESS }, { ...time, ...client, destinationAddress: Uint8Array.of(198, 18, 0, 30) }),
    exportRecord({ source: cart, destination: db }, { ...time, protocolIdentifier: 17, sourceTransportPort: 50_000, destinationTransportPort: 5432, tcpControlBits: 0, reverseTcpControlBits: 0 }),
    exportRecord({ source: evil, destination: { ...UNKNOWN_ENDPOINT, type: 'external' } }, { ...time, destinationAddress: Uint8Array.of(203, 0, 113, 9), destinationTransportPort: 443 }),
  ];
}

/** What the page shows, for a time-out's message. */
const readPage = () => ({
  areas: [...document.querySelectorAll('#chart path.area')].map((p) => p.getAttribute('data-key')),
  entities: [...document.querySelectorAll('#map g.entity')].map((g) => g.getAttribute('data-id')),
  edges: [...document.querySelectorAll('#map path.edge')].map((e) => `${e.getAttribute('data-from')} → ${e.getAttribute('data-to')}`),
  rows: [...document.querySelectorAll('#flow-rows tr')].map((r) => r.textContent),
  details: document.querySelector('#details')?.textContent,
  status: document.querySelector('#status')?.textContent,
});

const areasAre = (keys: string[]) => {
  const shown = [...document.querySelectorAll('#chart path.area')].map((p) => p.getAttribute('data-key')).sort();
  return JSON.stringify(shown) === JSON.stringify([...keys].sort()) && document.querySelectorAll('#legend li').length === keys.length;
};
const rowCount = (n: number) => document.querySelectorAll('#flow-rows tr').length === n;
const onlyRowWith = (text: string) => {
  const rows = [...document.querySelectorAll('#flow-rows tr')];
  return rows.length === 1 && rows[0]!.textContent!.includes(text);
};

test('collect --web shows the traffic by node, the service map and the flows, filters them, and renders markup from the network as text', { skip: canRunChromium.ok ? false : canRunChromium.reason, timeout: 300_000 }, async (t) => {
  const collect = await collectWeb(t, '127.0.0.1:0');
  const exporter = new Exporter({ targets: [collect.ipfix], observationDomainId: 1 });
  t.after(() => exporter.destroy());
  exporter.export(scene(Date.now()));
  await exporter.close();

  const view: OpenPage = await openPage(t, collect.page);
  const { page } = view;
  await waitForPage(view, 'a series per node', areasAre, ['node-a', 'node-b'], readPage);
  const entities = ['w:shop/Deployment/frontend', 's:shop/cart', 'w:shop/Deployment/cart', 'w:data/StatefulSet/db', 'w:lab/Deployment/<b>evil</b>', 'x:'];
  const edges = [
    ['w:shop/Deployment/frontend', 's:shop/cart'],
    ['s:shop/cart', 'w:shop/Deployment/cart'],
    ['w:shop/Deployment/cart', 'w:data/StatefulSet/db'],
    ['w:lab/Deployment/<b>evil</b>', 'x:'],
  ];
  await waitForPage(view, 'the map: every workload, the Service in front of cart, the outside', ({ entities, edges }) =>
    entities.every((id) => [...document.querySelectorAll('#map g.entity')].some((g) => g.getAttribute('data-id') === id)) &&
    document.querySelectorAll('#map g.entity').length === entities.length &&
    edges.every(([from, to]) => [...document.querySelectorAll('#map path.edge')].some((e) => e.getAttribute('data-from') === from && e.getAttribute('data-to') === to)) &&
    document.querySelectorAll('#map path.edge').length === edges.length,
  { entities, edges }, readPage);
  await waitForPage(view, 'the namespaces as groups', () => ['shop', 'data', 'lab'].every((ns) => document.querySelector(`#map g.namespace[data-namespace="${ns}"]`)), undefined, readPage);
  await waitForPage(view, 'four flows in the table', rowCount, 4, readPage);

  // Markup from the network is text: in the table, on the map, in the filters' choices.
  const shown = await page.evaluate(() => ({
    labels: [...document.querySelectorAll('#flow-rows .labels')].map((e) => e.textContent),
    names: [...document.querySelectorAll('#flow-rows .name')].map((e) => e.textContent),
    mapNames: [...document.querySelectorAll('#map .entity .name')].map((e) => e.textContent),
    elements: document.querySelectorAll('main script, main img, main b').length,
    pwned: (window as unknown as { pwned?: number }).pwned,
  }));
  assert.ok(shown.labels.includes(`app=${SCRIPT_LABEL}`), `the label as text: ${JSON.stringify(shown.labels)}`);
  assert.ok(shown.names.some((n) => n?.startsWith(`lab/${IMG_POD}`)), `the pod name as text: ${JSON.stringify(shown.names)}`);
  assert.ok(shown.mapNames.includes('<b>evil</b>'), `the workload name as text: ${JSON.stringify(shown.mapNames)}`);
  assert.equal(shown.elements, 0, 'no element made from a name');
  assert.equal(shown.pwned, undefined, 'no script from a name ran');
  assert.deepEqual(view.problems, []);
  await screenshot(page, 'collect-page');

  // Filters narrow the table.
  await waitForPage(view, 'UDP among the protocols to filter by', () => [...document.querySelectorAll('#f-protocol option')].some((o) => (o as HTMLOptionElement).value === 'UDP'), undefined, readPage);
  await page.select('#f-protocol', 'UDP');
  await waitForPage(view, 'only the UDP flow', onlyRowWith, 'data/db-0', readPage);
  await page.click('#clear-filters');
  await waitForPage(view, 'every flow again', rowCount, 4, readPage);
  await page.type('#f-text', 'pwned');
  await waitForPage(view, 'only the flow with the label', onlyRowWith, 'window.pwned=1', readPage);
  await page.click('#clear-filters');
  await page.select('#f-namespace', 'data');
  await waitForPage(view, 'only the flow to data', onlyRowWith, 'data/db-0', readPage);
  await screenshot(page, 'collect-page-filtered');

  // The chart stacks by namespace on request; a map box tells its conversations.
  await page.click('#dimension button[value="namespace"]');
  await waitForPage(view, 'a series per observed namespace', areasAre, ['shop', 'lab'], readPage);
  await page.click('#map g.entity[data-id="s:shop/cart"]');
  await waitForPage(view, "the Service's conversations", () => {
    const peers = [...document.querySelectorAll('#details tr[data-peer]')].map((r) => r.getAttribute('data-peer')).sort();
    return JSON.stringify(peers) === JSON.stringify(['w:shop/Deployment/cart', 'w:shop/Deployment/frontend']);
  }, undefined, readPage);
  assert.deepEqual(view.problems, []);
  // Long after its address was printed: no warning for loopback.
  assert.doesNotMatch(collect.stderr(), /WARNING/);
});

test('collect --web warns when its page is reachable from other machines, and answers only to localhost or an address', { timeout: 60_000 }, async (t) => {
  const exposed = await collectWeb(t, '0.0.0.0:0');
  await waitFor(() => /WARNING/.test(exposed.stderr()), 30_000, () => `a warning: ${exposed.stderr()}`);
  assert.match(exposed.stderr(), /WARNING: the web view listens on 0\.0\.0\.0:0, reachable from other machines, and has no login/);
  const local = await collectWeb(t, '127.0.0.1:0');
  const port = Number(new URL(local.page).port);
  const status = (host: string) =>
    new Promise<number>((resolve, reject) => request({ host: '127.0.0.1', port, path: '/', headers: { host } }, (res) => resolve(res.statusCode!)).on('error', reject).end());
  assert.equal(await status(`localhost:${port}`), 200);
  assert.equal(await status(`127.0.0.1:${port}`), 200);
  // A name that resolves to 127.0.0.1 by DNS rebinding is refused.
  assert.equal(await status(`attacker.example:${port}`), 403);
});

// The demo's page in headless Chromium, fed by the real agents on the
// simulated nodes: the chart shows each node's traffic, the map the demo's
// workloads (shop/web, shop/api, the db StatefulSet behind its Service) and
// their conversations, the table its flows; a protocol filter narrows the
// table. Saves screenshots of each part (PODFLOW_SCREENSHOTS says where).
// The functions given to the page run in Chromium: hence the DOM types.
/// <reference lib="dom" />
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stripVTControlCharacters } from 'node:util';
import { canRunSimNode } from '../../sim/simnode.ts';
import { canRunChromium, openPage, screenshot, waitForPage } from '../helpers/browser.ts';
import { startDemo } from '../helpers/demo-process.ts';
import { waitFor } from '../helpers/wait.ts';

const able = canRunSimNode();
const skip = !able.ok ? able.reason : !canRunChromium.ok ? canRunChromium.reason : false;

const readPage = () => ({
  areas: [...document.querySelectorAll('#chart path.area')].map((p) => p.getAttribute('data-key')),
  entities: [...document.querySelectorAll('#map g.entity')].map((g) => g.getAttribute('data-id')),
  edges: [...document.querySelectorAll('#map path.edge')].map((e) => `${e.getAttribute('data-from')} → ${e.getAttribute('data-to')}`),
  rows: document.querySelectorAll('#flow-rows tr').length,
  status: document.querySelector('#status')?.textContent,
});

test("the demo's page shows each node's traffic, the map of its workloads and the flows", { skip, timeout: 300_000 }, async (t) => {
  const { demo, exited } = startDemo(t, ['--plain', '--web', '127.0.0.1:0']);
  let output = '';
  demo.stdout.on('data', (d: Buffer) => (output += d));
  demo.stderr.on('data', (d: Buffer) => (output += d));
  const url = () => /web view on (http:\S+)/.exec(stripVTControlCharacters(output))?.[1];
  await waitFor(() => url() !== undefined || demo.exitCode !== null, 90_000, () => `the demo to print its page's address:\n${output}`, 50);
  assert.equal(demo.exitCode, null, output);

  const view = await openPage(t, url()!);
  await waitForPage(view, "each node's traffic on the chart", () => ['demo-node-1', 'demo-node-2'].every((node) => document.querySelector(`#chart path.area[data-key="${node}"]`) !== null), undefined, readPage);
  const edges = [
    ['w:shop/Deployment/web', 'w:shop/Deployment/api'],
    ['w:shop/Deployment/api', 's:data/db'],
    ['s:data/db', 'w:data/StatefulSet/db'],
    ['w:shop/Deployment/api', 'w:data/StatefulSet/db'],
    ['w:shop/Deployment/web', 'w:data/StatefulSet/db'],
    ['w:data/StatefulSet/db', 'w:data/StatefulSet/db'],
  ];
  await waitForPage(view, 'every conversation of the demo on the map', (edges) =>
    edges.every(([from, to]) => [...document.querySelectorAll('#map path.edge')].some((e) => e.getAttribute('data-from') === from && e.getAttribute('data-to') === to)) &&
    ['shop', 'data'].every((ns) => document.querySelector(`#map g.namespace[data-namespace="${ns}"]`) !== null),
  edges, readPage);
  await waitForPage(view, 'flows of TCP, UDP and ICMP in the table', () => {
    const protocols = new Set([...document.querySelectorAll('#flow-rows tr td:nth-child(4)')].map((td) => td.textContent));
    return ['TCP', 'UDP', 'ICMP'].every((p) => protocols.has(p));
  }, undefined, readPage);
  await screenshot(view.page, 'demo-chart', '#traffic-section');
  await screenshot(view.page, 'demo-map', '#map-section');
  await screenshot(view.page, 'demo-table', '#flows-section');

  await view.page.select('#f-protocol', 'ICMP');
  await waitForPage(view, 'only the ping between web and db-0', () => {
    const rows = [...document.querySelectorAll('#flow-rows tr')];
    return rows.length > 0 && rows.every((r) => r.querySelector('td:nth-child(4)')?.textContent === 'ICMP' && r.textContent!.includes('shop/web-7d9f5-k2x8q') && r.textContent!.includes('data/db-0'));
  }, undefined, readPage);
  await view.page.click('#map g.entity[data-id="w:shop/Deployment/api"]');
  await waitForPage(view, "api's conversations in the details", () => {
    const peers = new Set([...document.querySelectorAll('#details tr[data-peer]')].map((r) => r.getAttribute('data-peer')));
    return ['w:shop/Deployment/web', 's:data/db', 'w:data/StatefulSet/db'].every((p) => peers.has(p));
  }, undefined, readPage);
  await screenshot(view.page, 'demo-page');
  assert.deepEqual(view.problems, []);

  process.kill(demo.pid!, 'SIGINT');
  assert.equal(await exited, 0, output);
});

// Headless Chromium for the web view's tests: Debian's `chromium` driven by
// puppeteer-core (no browser is downloaded), and waits on the page's DOM,
// never on time.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

export const CHROMIUM = '/usr/bin/chromium';
export const canRunChromium = existsSync(CHROMIUM) ? { ok: true as const } : { ok: false as const, reason: `needs ${CHROMIUM} (./run setup installs Debian's chromium)` };
/** Where the tests save their screenshots: PODFLOW_SCREENSHOTS, else tmp/web-screenshots. */
export const SCREENSHOTS = process.env.PODFLOW_SCREENSHOTS ?? new URL('../../tmp/web-screenshots/', import.meta.url).pathname;

export interface OpenPage {
  browser: Browser;
  page: Page;
  /** Errors the page logged (script errors, refusals by its Content-Security-Policy). */
  problems: string[];
}

export async function openPage(t: TestContext, url: string): Promise<OpenPage> {
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in a container: no user namespaces for Chromium's sandbox.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--hide-scrollbars'],
    defaultViewport: { width: 1400, height: 900 },
    // A loaded 2-core machine starts Chromium slowly; the test's own timeout bounds it.
    timeout: 120_000,
    protocolTimeout: 120_000,
  });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`page error: ${(err as Error).message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  await page.goto(url, { waitUntil: 'load', timeout: 120_000 });
  return { browser, page, problems };
}

/** Waits until `condition` holds in the page; on time-out, says what `describe` reads of the page then. */
export async function waitForPage<A>({ page, problems }: OpenPage, what: string, condition: (arg: A) => boolean, arg: A, describe: () => unknown = () => undefined, timeoutMs = 90_000): Promise<void> {
  try {
    await page.waitForFunction(condition as (arg: unknown) => boolean, { timeout: timeoutMs, polling: 100 }, arg);
  } catch (err) {
    const seen = await page.evaluate(describe).catch((e: Error) => e.message);
    throw new Error(`waiting for ${what}: ${(err as Error).message}\nthe page then: ${JSON.stringify(seen)}\n${problems.join('\n')}`, { cause: err });
  }
}

export async function screenshot(page: Page, name: string, selector?: string): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  if (selector) await (await page.$(selector))!.screenshot({ path });
  else await page.screenshot({ path, fullPage: true });
  return path;
}

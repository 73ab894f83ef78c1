// Browser tests: Debian's chromium driven by playwright-core, against a real server started by the test.
import { existsSync } from 'node:fs';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { tempDir } from '../support/server.js';

export const CHROMIUM = '/usr/bin/chromium';

/** false when chromium is there; otherwise the reason every browser test is skipped. */
export const skipBrowser: false | string = existsSync(CHROMIUM)
  ? false
  : `chromium is not installed at ${CHROMIUM} (.ci/run installs it with "apt-get install -y chromium"); browser tests skipped`;

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface Browser {
  readonly context: BrowserContext;
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

/** Headless chromium with a fresh profile (removed on close). */
export async function launchBrowser(): Promise<Browser> {
  const profile = tempDir('turboci-chromium-');
  const context = await chromium.launchPersistentContext(profile.path, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1400, height: 900 },
  });
  return {
    context,
    newPage: async () => {
      const page = await context.newPage();
      page.setDefaultTimeout(10_000);
      return page;
    },
    close: async () => {
      await context.close();
      profile.remove();
    },
  };
}

/** The graph as the page shows it: node key → state. */
export async function graphStates(page: Page): Promise<Record<string, string>> {
  return page.$$eval('#graph g.node', (els) => Object.fromEntries(els.map((e) => [e.getAttribute('data-node')!, e.getAttribute('data-state')!])));
}

/** The graph's stages as the page shows them: node key → the state of its current attempt ('' when none). */
export async function graphAttemptStates(page: Page): Promise<Record<string, string>> {
  return page.$$eval('#graph g.node.stage', (els) => Object.fromEntries(els.map((e) => [e.getAttribute('data-node')!, e.getAttribute('data-attempt-state')!])));
}

/** Timeline versions as listed (newest first). */
export async function timelineVersions(page: Page): Promise<number[]> {
  return page.$$eval('#timeline li', (els) => els.map((e) => Number(e.getAttribute('data-version'))));
}

#!/usr/bin/env node
// Drives a real browser (Debian's Chromium, through playwright-core) through
// tokenvault's signup flow: the web-frontend's start page, Connect, sign-in
// and consent at the authorization server (oidc-provider's devInteractions
// pages), and the frontend's result page. Saves a screenshot of every page.
//
// Usage:
//   node signup.mjs --url http://127.0.0.1:PORT/ --provider oidc --login alice \
//                   --screenshots DIR [--chromium /usr/bin/chromium] [--then-disconnect]
// Prints one JSON line: {"page":"connected","account":"oidc:alice","screenshots":[...]}.
// With --then-disconnect it then waits for a line on stdin, clicks the result
// page's Disconnect button, and prints {"page":"disconnected",...}.
// Exits 0; on any failure prints the reason to stderr (with a screenshot
// named failure.png) and exits 1.

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    provider: { type: 'string', default: 'oidc' },
    login: { type: 'string', default: 'alice' },
    screenshots: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    'then-disconnect': { type: 'boolean' },
  },
});
if (!args.url || !args.screenshots) {
  process.stderr.write('usage: signup.mjs --url URL --screenshots DIR [--provider P] [--login L]\n');
  process.exit(2);
}
mkdirSync(args.screenshots, { recursive: true });

// As root and without internet access Chromium needs these flags, and a
// fresh profile directory.
const profile = mkdtempSync(join(tmpdir(), 'tokenvault-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: args.chromium,
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 412, height: 915 }, // a phone
});
const page = context.pages()[0] ?? await context.newPage();
page.setDefaultTimeout(15000);
const screenshots = [];
async function shot(name) {
  const path = join(args.screenshots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  screenshots.push(path);
}

let exitCode = 0;
try {
  await page.goto(args.url);
  await page.waitForSelector('main[data-page="home"]');
  await shot('01-home');

  await page.click(`a[data-provider="${args.provider}"]`);
  await page.waitForSelector('input[name="login"]');
  await shot('02-provider-sign-in');
  await page.fill('input[name="login"]', args.login);
  await page.fill('input[name="password"]', 'any');
  await page.click('button[type="submit"]');

  await page.waitForSelector('input[name="prompt"][value="consent"]', { state: 'attached' });
  await shot('03-provider-consent');
  await page.click('button[type="submit"]');

  await page.waitForSelector('main[data-page]');
  await shot('04-result');
  const kind = await page.getAttribute('main[data-page]', 'data-page');
  const account = kind === 'connected'
    ? await page.textContent('[data-field="account"]')
    : null;
  const error = kind === 'error'
    ? await page.getAttribute('[data-error]', 'data-error')
    : null;
  process.stdout.write(`${JSON.stringify({ page: kind, account, error, screenshots })}\n`);

  if (args['then-disconnect']) {
    const lines = createInterface({ input: process.stdin });
    await new Promise((resolve) => { lines.once('line', resolve); lines.once('close', resolve); });
    lines.close();
    await page.click('form[action="/disconnect"] button[type="submit"]');
    await page.waitForSelector('main[data-page]');
    await shot('05-after-disconnect');
    const after = await page.getAttribute('main[data-page]', 'data-page');
    const afterError = after === 'error'
      ? await page.getAttribute('[data-error]', 'data-error')
      : null;
    process.stdout.write(`${JSON.stringify({ page: after, error: afterError })}\n`);
  }
} catch (err) {
  exitCode = 1;
  process.stderr.write(`browser flow failed at ${page.url()}: ${err.message}\n`);
  try { await shot('failure'); } catch { /* the page may be gone */ }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(exitCode);

// GraphiQL in a real headless Chromium: served by Convoy alone (no CDN), under its CSP, with queries
// and subscriptions working.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

let api: TestApi;
let user: TestUser;
let profile: string;
let browser: BrowserContext;
let page: Page;
// Everything the page asked for: documents, scripts, styles, workers, fetches, WebSockets.
const requested: string[] = [];
const problems: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  api = await startTestApi();
  user = await api.register();
  profile = mkdtempSync(join(tmpdir(), 'convoy-graphiql-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1400, height: 900 },
  });
  // Workers' requests are the context's, not the page's.
  browser.on('request', (request) => requested.push(request.url()));
  page = browser.pages()[0] ?? (await browser.newPage());
  page.on('websocket', (socket) => requested.push(socket.url()));
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) problems.push(`console: ${message.text()}`);
  });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => console.error(`Refused to load ${event.blockedURI} (${event.violatedDirective})`));
  });
}, 60_000);

// What the page showed when a test failed, outside the repository.
afterEach(async ({ task }) => {
  if (task.result?.state !== 'fail' || !page) return;
  const path = join(mkdtempSync(join(tmpdir(), 'convoy-graphiql-failure-')), `${task.name.replace(/\W+/g, '-')}.png`);
  await page.screenshot({ path }).catch(() => {});
  console.error(`GraphiQL screenshot: ${path}`);
});
afterAll(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await api?.close();
});

// The variables and headers editors share a place: the one shown.
const editor = (scope: string) => page.locator(`${scope} .monaco-editor`).filter({ visible: true });
// Monaco renders spaces as no-break spaces.
const textOf = async (scope: string) => (await page.locator(scope).filter({ visible: true }).innerText()).replace(/\u00a0/g, ' ');

/** Replaces an editor's text; inserted as one edit, so Monaco's auto-closing brackets stay out of it. */
async function setEditorText(scope: string, text: string) {
  await editor(scope).click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
  await expect.poll(() => textOf(`${scope} .monaco-editor`), { timeout: 3000 }).toContain(text);
}

async function openNewTab(query: string, headers: Record<string, string>) {
  await page.getByRole('button', { name: 'New tab' }).click();
  await setEditorText('.graphiql-query-editor', query);
  await page.getByRole('button', { name: 'Headers' }).click();
  await setEditorText('.graphiql-editor-tool', JSON.stringify(headers));
}

const responseText = () => textOf('.graphiql-response');

describe('GraphiQL', () => {
  it('renders from Convoy alone, with the README session as tabs', async () => {
    await page.goto(`${api.url}/graphql`);
    expect(await page.title()).toBe('Convoy GraphiQL');
    await page.locator('.graphiql-container .graphiql-query-editor .monaco-editor').waitFor({ timeout: 20_000 });
    await expect.poll(() => page.locator('#root').innerText()).not.toContain('Loading');
    const tabs = await page.locator('.graphiql-tab').allInnerTexts();
    expect(tabs.map((t) => t.trim())).toEqual(['Register', 'CreateService', 'DeployService', 'DeploymentEvents', 'ServiceEvents', 'ServiceLogs', 'Services']);
    // The schema loaded (introspection over the same origin): the docs explorer lists the root types.
    await page.getByRole('button', { name: 'Show Documentation Explorer' }).click();
    await expect.poll(() => page.locator('.graphiql-doc-explorer').innerText(), { timeout: 10_000 }).toContain('Subscription');
    await page.getByRole('button', { name: 'Hide Documentation Explorer' }).click();
  }, 30_000);

  it('runs a typed query and shows its result', async () => {
    await openNewTab('query Me { me { email name } }', { Authorization: `Bearer ${user.accessToken}` });
    await page.getByRole('button', { name: /Execute query/ }).click();
    await expect.poll(responseText, { timeout: 10_000 }).toContain(user.email);
  }, 30_000);

  it('shows the live events of a subscription, over SSE, and ends it when stopped', async () => {
    await openNewTab('subscription Events { serviceEvents { kind name } }', { Authorization: `Bearer ${user.accessToken}` });
    const listening = api.app.bus.listenerCount();
    const stream = page.waitForRequest((request) => new URL(request.url()).pathname === '/graphql' && request.headers()['accept']?.includes('text/event-stream'));
    await page.getByRole('button', { name: /Execute query/ }).click();
    await stream;
    // Subscribed once the server listens for this organization's service events.
    await expect.poll(() => api.app.bus.listenerCount(), { timeout: 10_000 }).toBe(listening + 1);
    const created = await api.gql(`mutation { createService(input: { name: "from-graphiql", source: { image: "nginx" } }) { __typename } }`, {}, { token: user.accessToken });
    expect(created.data?.createService.__typename).toBe('Service');
    await expect.poll(responseText, { timeout: 10_000 }).toContain('from-graphiql');
    expect(await responseText()).toContain('CREATED');
    await page.getByRole('button', { name: /Stop/ }).click();
    await expect.poll(() => api.app.bus.listenerCount(), { timeout: 10_000 }).toBe(listening);
  }, 30_000);

  it('asked nothing of any other origin, and nothing was refused by its CSP', () => {
    const origin = new URL(api.url);
    const foreign = requested.filter((url) => {
      if (url.startsWith('data:')) return false;
      const parsed = new URL(url);
      return parsed.host !== origin.host || !['http:', 'ws:'].includes(parsed.protocol);
    });
    expect(foreign).toEqual([]);
    // A CSP refusal is not a request: a page that needs another origin shows up here instead.
    expect(problems).toEqual([]);
    expect(requested.filter((url) => url.includes('/graphiql/')).length).toBeGreaterThanOrEqual(7);
  });
});

describe("GraphiQL's files", () => {
  it('are served compressed and revalidated, and nothing else is under their path', async () => {
    const bundle = await fetch(`${api.url}/graphiql/yoga-graphiql.js`, { headers: { 'accept-encoding': 'gzip' } });
    expect(bundle.status).toBe(200);
    expect(bundle.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(bundle.headers.get('content-encoding')).toBe('gzip');
    expect(Number(bundle.headers.get('content-length'))).toBeLessThan(2_000_000);
    expect(await bundle.text()).toContain('renderYogaGraphiQL');
    const again = await fetch(`${api.url}/graphiql/yoga-graphiql.js`, { headers: { 'if-none-match': bundle.headers.get('etag')! } });
    expect(again.status).toBe(304);
    expect((await fetch(`${api.url}/graphiql/nope.js`)).status).toBe(404);
    expect((await fetch(`${api.url}/graphiql/start.js`, { method: 'POST' })).status).toBe(404);
  });

  it('and the page are not served in production', async () => {
    const production = await startTestApi({ NODE_ENV: 'production', CONVOY_PUBLIC_URL: 'https://convoy.example.com' });
    try {
      const page = await fetch(`${production.url}/graphql`, { headers: { accept: 'text/html' } });
      expect(await page.text()).not.toContain('GraphiQL');
      expect((await fetch(`${production.url}/graphiql/yoga-graphiql.js`)).status).toBe(404);
    } finally {
      await production.close();
    }
  }, 30_000);
});

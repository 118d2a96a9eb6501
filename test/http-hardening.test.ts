// The HTTP server against hostile input and hostile pages: CORS, security headers, introspection, error
// texts, input that cannot be stored, log download parameters, and what all of that writes to the log.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { createLogger } from '../src/platform/logging/logger.js';

const CONSOLE = 'https://console.example.com';
const MAX_LOG_LINE = 8192;

function captureLog() {
  const lines: string[] = [];
  return { lines, logger: createLogger('info', {}, { write: (line: string) => void lines.push(line) }) };
}

let dev: TestApi;
let prod: TestApi;
let devUser: TestUser;
let prodUser: TestUser;
const devLog = captureLog();

beforeAll(async () => {
  dev = await startTestApi({ LOG_LEVEL: 'info' }, { log: devLog.logger });
  prod = await startTestApi({
    NODE_ENV: 'production',
    CONVOY_PUBLIC_URL: 'https://convoy.example.com',
    CONVOY_CORS_ORIGINS: `${CONSOLE},https://admin.example.com`,
    CONVOY_TRUSTED_PROXIES: '127.0.0.1',
  });
  devUser = await dev.register();
  prodUser = await prod.register();
});
afterAll(async () => {
  await dev?.close();
  await prod?.close();
});

const post = (api: TestApi, body: string, headers: Record<string, string> = {}) =>
  fetch(`${api.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

describe('CORS', () => {
  it('reflects only allowed origins, never null, with credentials', async () => {
    const query = JSON.stringify({ query: '{ __typename }' });
    const allowed = await post(prod, query, { origin: CONSOLE });
    expect(allowed.headers.get('access-control-allow-origin')).toBe(CONSOLE);
    expect(allowed.headers.get('access-control-allow-credentials')).toBe('true');
    for (const origin of ['null', 'https://evil.example', 'http://localhost:3000', `${CONSOLE}.evil.example`]) {
      const refused = await post(prod, query, { origin });
      expect(refused.headers.get('access-control-allow-origin'), origin).toBeNull();
      expect(refused.headers.get('access-control-allow-credentials'), origin).toBeNull();
    }
    const preflight = (origin: string) =>
      fetch(`${prod.url}/graphql`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
    expect((await preflight(CONSOLE)).headers.get('access-control-allow-origin')).toBe(CONSOLE);
    expect((await preflight('null')).headers.get('access-control-allow-origin')).toBeNull();
  });

  it('allows localhost origins only, outside production, when none are configured', async () => {
    const query = JSON.stringify({ query: '{ __typename }' });
    expect((await post(dev, query, { origin: 'http://localhost:5173' })).headers.get('access-control-allow-origin')).toBe('http://localhost:5173');
    expect((await post(dev, query, { origin: 'http://127.0.0.1:3000' })).headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:3000');
    for (const origin of ['null', 'https://evil.example', 'http://localhost.evil.example']) {
      expect((await post(dev, query, { origin })).headers.get('access-control-allow-origin'), origin).toBeNull();
    }
  });
});

describe('security headers', () => {
  it('sends nosniff, no framing, no referrer and a strict CSP on every kind of response', async () => {
    const responses = [
      await post(prod, JSON.stringify({ query: '{ __typename }' })),
      await fetch(`${prod.url}/healthz`),
      await fetch(`${prod.url}/api/services/abc/logs`),
    ];
    for (const response of responses) {
      expect(response.headers.get('x-content-type-options')).toBe('nosniff');
      expect(response.headers.get('x-frame-options')).toBe('DENY');
      expect(response.headers.get('referrer-policy')).toBe('no-referrer');
      expect(response.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
      expect(response.headers.get('content-security-policy')).toContain("default-src 'none'");
      // Plain HTTP, no trusted proxy saying otherwise.
      expect(response.headers.get('strict-transport-security')).toBeNull();
    }
  });

  it('sends HSTS only when a trusted proxy says the client used https', async () => {
    const behindTls = await fetch(`${prod.url}/healthz`, { headers: { 'x-forwarded-proto': 'https' } });
    expect(behindTls.headers.get('strict-transport-security')).toMatch(/^max-age=\d+/);
    // The development API trusts no proxy: anyone could send the header.
    const untrusted = await fetch(`${dev.url}/healthz`, { headers: { 'x-forwarded-proto': 'https' } });
    expect(untrusted.headers.get('strict-transport-security')).toBeNull();
  });

  it("gives GraphiQL's page a policy it can run under, still unframeable", async () => {
    const page = await fetch(`${dev.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(page.headers.get('x-frame-options')).toBe('DENY');
  });
});

describe('introspection', () => {
  const INTROSPECT = JSON.stringify({ query: '{ __schema { queryType { name } } }' });

  it('is refused to anonymous callers in production, and allowed once authenticated', async () => {
    const anonymous = await (await post(prod, INTROSPECT)).json();
    expect(anonymous.data).toBeUndefined();
    expect(anonymous.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    const typeQuery = await (await post(prod, JSON.stringify({ query: '{ __type(name: "Query") { name } }' }))).json();
    expect(typeQuery.errors[0].extensions.code).toBe('UNAUTHENTICATED');
    // __typename is not introspection.
    expect(await (await post(prod, JSON.stringify({ query: '{ __typename }' }))).json()).toEqual({ data: { __typename: 'Query' } });
    const signedIn = await (await post(prod, INTROSPECT, { authorization: `Bearer ${prodUser.accessToken}` })).json();
    expect(signedIn).toEqual({ data: { __schema: { queryType: { name: 'Query' } } } });
  });

  it('is open to anyone in development (GraphiQL needs it)', async () => {
    expect(await (await post(dev, INTROSPECT)).json()).toEqual({ data: { __schema: { queryType: { name: 'Query' } } } });
  });
});

describe('malformed requests', () => {
  it("answers malformed JSON with a fixed message, not the parser's text", async () => {
    for (const api of [prod, dev]) {
      const response = await post(api, '{"query": "{ __typename }", "secret": "hunter2"');
      expect(response.status).toBe(400);
      const text = await response.text();
      expect(JSON.parse(text).errors[0]).toMatchObject({ message: 'POST body sent invalid JSON.', extensions: { code: 'BAD_REQUEST' } });
      expect(text).not.toContain('hunter2');
      expect(text).not.toMatch(/position|SyntaxError/);
    }
  });
});

describe('input that cannot be stored or was never issued', () => {
  const SERVICES = 'query($after: String, $before: String, $first: Int, $last: Int) { services(after: $after, before: $before, first: $first, last: $last) { edges { node { id } } } }';
  const base64 = (text: string) => Buffer.from(text).toString('base64');

  it('answers malformed cursors, negative page sizes, NUL bytes and lone surrogates with BAD_USER_INPUT, logging nothing large', async () => {
    const gql = (query: string, variables: Record<string, unknown> = {}) => dev.gql(query, variables, { token: devUser.accessToken });
    const cases: [string, Promise<any>][] = [
      ['100 KB cursor', gql(SERVICES, { after: 'x'.repeat(100_000) })],
      ['cursor of another type', gql(SERVICES, { after: base64('GPC:N:5') })],
      ['cursor with a NUL', gql(SERVICES, { after: base64('GPC:S:abc\u0000') })],
      ['not base64', gql(SERVICES, { before: '%%%' })],
      ['negative first', gql(SERVICES, { first: -1 })],
      ['negative last', gql(SERVICES, { last: -5, before: base64('GPC:S:abc') })],
      ['NUL in an id variable', gql('query($id: ID!) { service(id: $id) { id } }', { id: 'abc\u0000def' })],
      ['NUL in a literal', gql('{ service(id: "abc\\u0000") { id } }')],
      ['lone surrogate in an id', gql('query($id: ID!) { service(id: $id) { id } }', { id: 'abc\ud800' })],
      ['lone surrogate in a mutation', gql('mutation($name: String!) { createOrganization(name: $name) { __typename } }', { name: 'Ada \udc00' })],
      ['NUL in a nested input', gql('mutation($input: CreateServiceInput!) { createService(input: $input) { __typename } }', { input: { name: 'web', source: { image: 'nginx' }, env: [{ name: 'A', value: 'x\u0000' }] } })],
    ];
    for (const [name, pending] of cases) {
      const result = await pending;
      expect(result.errors?.[0]?.extensions?.code, `${name}: ${JSON.stringify(result).slice(0, 300)}`).toBe('BAD_USER_INPUT');
      expect(JSON.stringify(result).length, name).toBeLessThan(1000);
    }
    // A valid-looking cursor of a missing row is simply an empty page.
    expect((await gql(SERVICES, { after: base64('GPC:S:cmnosuchservice00000000000') })).errors).toBeUndefined();
    // Nothing of it was an error worth logging, and no line came near the size of the input.
    await new Promise((r) => setTimeout(r, 100));
    const errorLines = devLog.lines.filter((line) => JSON.parse(line).level >= 50);
    expect(errorLines.map((l) => l.slice(0, 300))).toEqual([]);
    for (const line of devLog.lines) expect(line.length).toBeLessThan(MAX_LOG_LINE);
  });

  it('caps every logged string, errors and their stacks included', () => {
    const { lines, logger } = captureLog();
    const error = new Error(`Invalid cursor: ${'x'.repeat(100_000)}`);
    logger.error({ err: error, cursor: 'y'.repeat(100_000), nested: { deeper: ['z'.repeat(50_000)] } }, 'm'.repeat(50_000));
    expect(lines).toHaveLength(1);
    expect(lines[0].length).toBeLessThan(MAX_LOG_LINE + 8000);
    const entry = JSON.parse(lines[0]);
    expect(entry.err.message.length).toBeLessThan(2100);
    expect(entry.err.stack).toContain('Error: Invalid cursor');
    expect(entry.cursor).toContain('more characters');
    expect(entry.msg.length).toBeLessThan(2100);
  });
});

describe('log downloads', () => {
  it('parses parameters strictly: a clear 400 for anything else', async () => {
    const created = await dev.gql(`mutation { createService(input: { name: "logs-strict", source: { image: "nginx" } }) { ... on Service { id } } }`, {}, { token: devUser.accessToken });
    const id = created.data.createService.id;
    const download = (query: string) => fetch(`${dev.url}/api/services/${id}/logs?${query}`, { headers: { authorization: `Bearer ${devUser.accessToken}` } });
    for (const [query, field] of [
      ['limit=abc', 'limit'],
      ['limit=0', 'limit'],
      ['limit=1e3', 'limit'],
      ['limit=10001', 'limit'],
      ['format=constructor', 'format'],
      ['format=__proto__', 'format'],
      ['since=1', 'since'],
      ['until=yesterday', 'until'],
      ['format=json&format=csv', 'format'],
      ['tail=5', 'tail'],
    ]) {
      const response = await download(query);
      expect(response.status, query).toBe(400);
      expect(response.headers.get('content-type')).toBe('application/json');
      const body = await response.json();
      expect(body.error, query).toContain(field);
      expect(body.fieldErrors[0].path, query).toEqual([field]);
    }
    const ok = await download('format=json&limit=5&since=2026-01-01T00:00:00Z&search=');
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe('application/x-ndjson');
  });
});

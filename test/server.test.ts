import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { request, type ClientRequest } from 'node:http';
import { startTestApi, type TestApi } from './helpers/api.js';

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => {
  await api?.close();
});

describe('the HTTP server', () => {
  it('keeps schema/schema.graphql identical to the schema the code builds', async () => {
    // Run as CI and developers do; in-process, vitest may load a second copy of graphql.
    const check = await execa('npx', ['tsx', 'scripts/print-schema.ts', '--check'], { cwd: new URL('..', import.meta.url), reject: false });
    expect(check.stderr.replace(/npm warn.*\n?/g, '')).toBe('');
    expect(check.exitCode).toBe(0);
  });

  it('answers /healthz and reports each dependency on /readyz', async () => {
    const health = await fetch(`${api.url}/healthz`);
    expect(await health.json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${api.url}/readyz`);
    const report = await ready.json();
    expect(ready.status).toBe(200);
    expect(report).toMatchObject({ ready: true, buildSandbox: 'enforced', checks: { database: { ok: true }, redis: { ok: true }, docker: { ok: true } } });
  });

  it('serves GraphiQL to browsers outside production', async () => {
    const page = await fetch(`${api.url}/graphql`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('GraphiQL');
  });

  it('echoes a request id, or makes one, on every response', async () => {
    const given = await fetch(`${api.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'abc-123' }, body: JSON.stringify({ query: '{ __typename }' }) });
    expect(given.headers.get('x-request-id')).toBe('abc-123');
    const made = await fetch(`${api.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': 'bad id; drop table' }, body: JSON.stringify({ query: '{ __typename }' }) });
    expect(made.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('refuses queries past the depth, alias and token limits', async () => {
    const deep = `{ me { memberships { organization { members { edges { node { user { memberships { organization { members { edges { node { user { id } } } } } } } } } } } } } }`;
    const depth = await api.gql(deep);
    expect(depth.errors?.[0].message).toMatch(/depth/i);
    const aliases = `{ ${Array.from({ length: 40 }, (_, i) => `a${i}: me { id }`).join(' ')} }`;
    const aliasResult = await api.gql(aliases);
    expect(aliasResult.errors?.[0].message, JSON.stringify(aliasResult)).toMatch(/alias/i);
    const tokens = `{ ${Array.from({ length: 2100 }, () => '__typename').join(' ')} }`;
    expect((await api.gql(tokens)).errors?.[0].message).toMatch(/token/i);
  });

  it('limits request bodies to 25 MB, with a Content-Length or chunked', async () => {
    const url = new URL('/graphql', api.url);
    // Settles as soon as the server answers, whether or not the body was all sent; a connection each,
    // as the server closes one whose body it did not read.
    const post = (headers: Record<string, string | number>, write: (req: ClientRequest) => void) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
          let body = '';
          res.on('data', (chunk: Buffer) => (body += chunk.toString()));
          res.on('end', () => {
            resolve({ status: res.statusCode!, body });
            req.destroy();
          });
        });
        req.on('error', reject);
        write(req);
      });
    const query = JSON.stringify({ query: '{ __typename }' });

    const declared = await post({ 'content-length': 26_000_000 }, (req) => req.write(query));
    expect(declared.status).toBe(413);
    expect(JSON.parse(declared.body).errors[0].extensions.code).toBe('REQUEST_ENTITY_TOO_LARGE');

    const chunked = await post({ 'transfer-encoding': 'chunked' }, (req) => {
      const megabyte = Buffer.alloc(1_000_000, 0x20);
      const more = (sent: number): void => {
        if (sent === 26) return void req.end();
        if (req.write(megabyte)) more(sent + 1);
        else req.once('drain', () => more(sent + 1));
      };
      more(0);
    });
    expect(chunked.status).toBe(413);

    const small = await post({ 'transfer-encoding': 'chunked' }, (req) => {
      req.write(query.slice(0, 10));
      req.end(query.slice(10));
    });
    expect(JSON.parse(small.body)).toEqual({ data: { __typename: 'Query' } });
  });

  it('masks unexpected errors', async () => {
    const result = await api.gql('{ me { id } }', {}, { token: 'cvy_pat_' + 'x'.repeat(43) });
    expect(result.errors?.[0]).toMatchObject({ message: 'Invalid API token', extensions: { code: 'UNAUTHENTICATED' } });
  });
});

describe('readiness with a stopped dependency', () => {
  it('reports Redis as down, with the others still up, once its server stops', async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const redis = execa('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { reject: false });
    let local: TestApi | undefined;
    try {
      for (let i = 0; i < 50; i++) {
        const ping = await execa('redis-cli', ['-p', String(port), 'ping'], { reject: false });
        if (ping.stdout === 'PONG') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      local = await startTestApi({ REDIS_URL: `redis://127.0.0.1:${port}/0` });
      expect((await fetch(`${local.url}/readyz`)).status).toBe(200);
      redis.kill('SIGKILL');
      await redis;
      const down = await fetch(`${local.url}/readyz`);
      const report = await down.json();
      expect(down.status).toBe(503);
      expect(report.ready).toBe(false);
      expect(report.checks.redis.ok).toBe(false);
      expect(report.checks.database.ok).toBe(true);
      expect(report.checks.docker.ok).toBe(true);
    } finally {
      redis.kill('SIGKILL');
      await local?.close();
    }
  });

  it('reports Docker as down when the engine does not answer', async () => {
    const local = await startTestApi({ DOCKER_HOST: 'unix:///tmp/convoy-no-such-docker.sock' });
    try {
      const response = await fetch(`${local.url}/readyz`);
      const report = await response.json();
      expect(response.status).toBe(503);
      expect(report.checks.docker.ok).toBe(false);
      expect(report.checks.database.ok).toBe(true);
    } finally {
      await local.close();
    }
  });
});

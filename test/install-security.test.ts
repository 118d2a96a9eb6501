// The worker install script and join tokens against hostile clients: the API address never comes from
// the request, and clients that keep trying dead join tokens are refused for a while.
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { apiUrlFor } from '../src/modules/workers/install.js';

let api: TestApi;
let admin: TestUser;
beforeAll(async () => {
  // The test client is a trusted proxy, so X-Forwarded-For gives each test its own client addresses.
  api = await startTestApi({ CONVOY_TRUSTED_PROXIES: '127.0.0.1' });
  admin = await api.register('Admin');
});
afterAll(async () => {
  await api?.close();
});

const CREATE_TOKEN = `mutation { createWorkerJoinToken(ttlSeconds: 600) { ... on CreateWorkerJoinTokenPayload { token installCommand } } }`;
const REGISTER = `mutation($input: RegisterWorkerInput!) { registerWorker(input: $input) { __typename ... on RateLimitedError { retryAfterSeconds } } }`;

function newAddress(): string {
  const b = randomBytes(3);
  return `10.${b[0]}.${b[1]}.${b[2]}`;
}

/** node:http rather than fetch, which would not let a test send its own Host header. */
function send(path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${api.url}${path}`, { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

async function createJoinToken(headers: Record<string, string> = {}): Promise<{ token: string; installCommand: string }> {
  const response = await send('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${admin.accessToken}`, ...headers },
    body: JSON.stringify({ query: CREATE_TOKEN }),
  });
  return JSON.parse(response.body).data.createWorkerJoinToken;
}

function registration(joinToken: string) {
  return { joinToken, hostname: `node-${randomBytes(3).toString('hex')}`, cpuCores: 2, memoryMb: 4096, diskGb: 50, agentVersion: '0.1.0' };
}

const deadToken = () => `cvy_join_${randomBytes(32).toString('base64url').slice(0, 43)}`;

describe('the API address given to new nodes', () => {
  it('never comes from the Host header, in the install script or in installCommand', async () => {
    const hostile = { host: 'evil.example.com', 'x-forwarded-host': 'evil.example.com', 'x-forwarded-proto': 'https' };
    const { token, installCommand } = await createJoinToken(hostile);
    expect(installCommand).toBe(`curl -fsSL '${api.url}/install/worker.sh?token=${token}' | sudo bash`);
    const script = await send(`/install/worker.sh?token=${token}`, { headers: hostile });
    expect(script.status).toBe(200);
    expect(script.body).toContain(`CONVOY_API_URL='${api.url}'`);
    expect(script.body).not.toContain('evil.example.com');
  });

  it('is CONVOY_PUBLIC_URL, which production requires', () => {
    const base = { NODE_ENV: 'production', CONVOY_SECRET_KEY: randomBytes(32).toString('hex') };
    expect(() => loadConfig(base)).toThrow(ConfigError);
    expect(() => loadConfig(base)).toThrow(/CONVOY_PUBLIC_URL/);
    const config = loadConfig({ ...base, CONVOY_PUBLIC_URL: 'https://convoy.example.com/' });
    expect(apiUrlFor(config, 4000)).toBe('https://convoy.example.com');
    // Elsewhere, unset: this server's own address.
    expect(apiUrlFor(loadConfig({ NODE_ENV: 'development', HOST: '0.0.0.0', PORT: '4000' }))).toBe('http://localhost:4000');
    expect(() => loadConfig({ CONVOY_TRUSTED_PROXIES: '10.0.0.0/8, not-an-address' })).toThrow(/CONVOY_TRUSTED_PROXIES/);
  });
});

describe('join token guessing', () => {
  it('refuses the install script to a client after 20 dead tokens, with Retry-After, whatever token it sends next', async () => {
    const attacker = newAddress();
    for (let i = 0; i < 20; i++) {
      const response = await send(`/install/worker.sh?token=${i % 2 ? deadToken() : 'cvy_join_malformed'}`, { headers: { 'x-forwarded-for': attacker } });
      expect(response.status).toBeGreaterThanOrEqual(400);
      expect(response.status).toBeLessThan(405);
    }
    const { token } = await createJoinToken();
    const refused = await send(`/install/worker.sh?token=${token}`, { headers: { 'x-forwarded-for': attacker } });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect(refused.body).not.toContain(token);
    // The same counter covers registerWorker, and other clients are not affected.
    const viaGraphql = await api.gql(REGISTER, { input: registration(token) }, { headers: { 'x-forwarded-for': attacker } });
    expect(viaGraphql.data.registerWorker.__typename).toBe('RateLimitedError');
    expect((await send(`/install/worker.sh?token=${token}`, { headers: { 'x-forwarded-for': newAddress() } })).status).toBe(200);
  });

  it('refuses registerWorker to a client after 20 dead tokens, even with a live one', async () => {
    const attacker = newAddress();
    for (let i = 0; i < 20; i++) {
      const result = await api.gql(REGISTER, { input: registration(deadToken()) }, { headers: { 'x-forwarded-for': attacker } });
      expect(result.data.registerWorker.__typename).toBe('InvalidJoinTokenError');
    }
    const { token } = await createJoinToken();
    const refused = (await api.gql(REGISTER, { input: registration(token) }, { headers: { 'x-forwarded-for': attacker } })).data.registerWorker;
    expect(refused.__typename).toBe('RateLimitedError');
    expect(refused.retryAfterSeconds).toBeGreaterThan(0);
    // The refused attempt did not spend the token.
    expect((await api.gql(REGISTER, { input: registration(token) }, { headers: { 'x-forwarded-for': newAddress() } })).data.registerWorker.__typename).toBe('RegisterWorkerPayload');
  });
});

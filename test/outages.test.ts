// What clients see while Redis or PostgreSQL is down (issue 19, items 3 and 4): deploys and updates are
// accepted durably at once while Redis is down, what truly needs Redis answers SERVICE_UNAVAILABLE in
// bounded time, and every operation meeting a stopped PostgreSQL answers SERVICE_UNAVAILABLE (HTTP 503)
// naming it, recovering by itself once it is back. Both run against a private Redis and PostgreSQL.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createApp, type App } from '../src/app.js';
import { startServer, type RunningServer } from '../src/graphql/server.js';
import { createLogger } from '../src/platform/logging/logger.js';
import { applyPendingMigrations } from '../src/platform/db/migrations.js';
import { deployJobId } from '../src/modules/deployments/service.js';
import { startPrivatePostgres, startPrivateRedis, type PrivatePostgres, type PrivateRedis } from './helpers/private-services.js';
import { subscribe } from './helpers/subscribe.js';
import { waitFor } from './helpers/wait.js';

type Answer = { status: number; ms: number; body: { data?: any; errors?: { message: string; extensions?: Record<string, unknown> }[] } };

let redis: PrivateRedis;
let postgres: PrivatePostgres;
let app: App;
let server: RunningServer;
let token: string;
// A loaded 2-core CI machine can take seconds for a first request (scrypt, schema warm-up).
const SETUP_MS = 30_000;
const email = `outage-${randomBytes(4).toString('hex')}@example.com`;
const password = 'correct horse battery staple';

/** By default a client that gives up after 3 s, as a caller with a timeout would (setup steps wait longer). */
async function gql(query: string, variables: Record<string, unknown> = {}, auth = true, timeoutMs = 3000): Promise<Answer> {
  const started = Date.now();
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' };
  if (auth) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${server.url}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query, variables }), signal: AbortSignal.timeout(timeoutMs) });
  return { status: response.status, body: (await response.json()) as Answer['body'], ms: Date.now() - started };
}

const CREATE = `mutation($i: CreateServiceInput!) { createService(input: $i) { ... on Service { id } } }`;
const DEPLOY = `mutation($s: ID!) { deployService(serviceId: $s) { __typename ... on Deployment { id status } } }`;
const UPDATE = `mutation($s: ID!, $r: Int!) { updateService(id: $s, input: { replicas: $r }) { __typename ... on Service { replicas } } }`;
const LOGIN = `mutation($i: LoginInput!) { login(input: $i) { __typename } }`;
const SERVICE = `query($s: ID!) { service(id: $s) { id replicas } }`;

async function createService(): Promise<string> {
  const created = await gql(CREATE, { i: { name: `svc-${randomBytes(3).toString('hex')}`, source: { image: 'registry.local:5000/team/outage:1' } } }, true, SETUP_MS);
  return created.body.data.createService.id as string;
}

function expectUnavailable(answer: Answer, dependency: string) {
  expect(answer.body.errors?.map((e) => e.extensions)).toEqual([expect.objectContaining({ code: 'SERVICE_UNAVAILABLE', dependency, retryable: true })]);
}

beforeAll(async () => {
  [redis, postgres] = await Promise.all([startPrivateRedis(), startPrivatePostgres()]);
  const databaseUrl = await postgres.createDatabase();
  await applyPendingMigrations(databaseUrl);
  const config = loadConfig({
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrl,
    REDIS_URL: redis.url,
    REDIS_PREFIX: `convoy-outage-${randomBytes(4).toString('hex')}`,
    PORT: '0',
    HOST: '127.0.0.1',
    CONVOY_SECRET_KEY: randomBytes(32).toString('hex'),
    MIGRATE_ON_START: 'false',
    LOG_LEVEL: 'silent',
  });
  app = await createApp(config, { log: createLogger(process.env.TEST_LOG_LEVEL ?? 'silent') });
  server = await startServer(app, { port: 0, host: '127.0.0.1', docker: app.docker });
  const registered = await gql(
    `mutation($i: RegisterInput!) { register(input: $i) { ... on AuthPayload { tokens { accessToken } } } }`,
    { i: { email, password, name: 'Outage Tester' } },
    false,
    SETUP_MS,
  );
  token = registered.body.data.register.tokens.accessToken;
});

afterAll(async () => {
  await server?.close();
  await app?.close();
  await Promise.all([redis?.close(), postgres?.close()]);
});

describe('while Redis is down', () => {
  it('accepts deploys and updates durably within 3 s, answers login SERVICE_UNAVAILABLE (redis), and queues the deployment once Redis is back', async () => {
    const serviceId = await createService();
    await redis.kill();
    let redisBack = false;
    try {
    await waitFor('the API to notice Redis is gone', () => app.redis.status === 'reconnecting', 5000, 20);

    const updated = await gql(UPDATE, { s: serviceId, r: 2 });
    expect(updated.ms).toBeLessThan(3000);
    expect(updated.body.data.updateService).toEqual({ __typename: 'Service', replicas: 2 });

    const deployed = await gql(DEPLOY, { s: serviceId });
    expect(deployed.ms).toBeLessThan(3000);
    expect(deployed.body.data.deployService).toMatchObject({ __typename: 'Deployment', status: 'QUEUED' });
    const deploymentId = deployed.body.data.deployService.id as string;
    // Accepted means stored: PostgreSQL has it, QUEUED, with the new replica count.
    expect(await app.db.deployment.findUnique({ where: { id: deploymentId }, select: { status: true, replicas: true } })).toEqual({ status: 'QUEUED', replicas: 2 });

    // Login counts attempts in Redis: it cannot run, and says so in bounded time.
    const login = await gql(LOGIN, { i: { email, password } }, false);
    expect(login.ms).toBeLessThan(3000);
    expectUnavailable(login, 'redis');

    await redis.start();
    redisBack = true;
    // Redis came back empty: the job is there again (the kept command, or the reconciler, queues it).
    await waitFor('the deployment to be queued', async () => (await app.queues.deployments.getJob(deployJobId(deploymentId)).catch(() => undefined)) !== undefined, 15_000, 200);
    const loggedIn = await gql(LOGIN, { i: { email, password } }, false, SETUP_MS);
    expect(loggedIn.body.data.login.__typename).toBe('AuthPayload');
    } finally {
      if (!redisBack) await redis.start();
    }
  });
});

describe('while PostgreSQL is down', () => {
  it('answers queries, mutations, subscriptions and log downloads SERVICE_UNAVAILABLE (postgresql, 503), then recovers', async () => {
    const serviceId = await createService();
    const deployed = await gql(DEPLOY, { s: serviceId }, true, SETUP_MS);
    const deploymentId = deployed.body.data.deployService.id as string;
    await postgres.stop();
    try {
      const query = await gql(SERVICE, { s: serviceId });
      expectUnavailable(query, 'postgresql');
      expect(query.status).toBe(503);

      const mutation = await gql(UPDATE, { s: serviceId, r: 3 });
      expectUnavailable(mutation, 'postgresql');

      const events = subscribe(server.url, token, `subscription($d: ID!) { deploymentEvents(deploymentId: $d) { status } }`, { d: deploymentId }, 'deploymentEvents');
      try {
        await waitFor('the subscription to answer', () => events.errors.length > 0, 5000, 20);
        expect((events.errors[0] as { extensions?: Record<string, unknown> }[]).map((e) => e.extensions)).toEqual([
          expect.objectContaining({ code: 'SERVICE_UNAVAILABLE', dependency: 'postgresql', retryable: true }),
        ]);
      } finally {
        await events.close();
      }

      const logs = await fetch(`${server.url}/api/services/${serviceId}/logs`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) });
      expect(logs.status).toBe(503);
      expect(await logs.json()).toMatchObject({ code: 'SERVICE_UNAVAILABLE', dependency: 'postgresql', retryable: true });
    } finally {
      await postgres.start();
    }
    const started = Date.now();
    await waitFor('queries to work again', async () => (await gql(SERVICE, { s: serviceId }).catch(() => null))?.body.data?.service?.id === serviceId, 5000, 100);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

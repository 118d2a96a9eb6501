// A real Convoy API on an ephemeral port, against this file's own database and Redis prefix.
import { randomBytes } from 'node:crypto';
import { loadConfig, type Config } from '../../src/config.js';
import { createApp, type App } from '../../src/app.js';
import { startServer, type RunningServer } from '../../src/graphql/server.js';
import { createLogger, type Logger } from '../../src/platform/logging/logger.js';
import { startControllers } from '../../src/controller.js';
import { syncBuiltInTemplates } from '../../src/modules/templates/service.js';
import { organizationNetworkName, swarmServiceName } from '../../src/modules/deployments/spec.js';
import { testNixBuilder } from './nix.js';
import { removeImage } from '../../src/platform/images/index.js';
import { createTestDatabase, deleteRedisPrefix, REDIS_URL, uniqueRedisPrefix } from './database.js';

export type GqlResult<T = any> = { data?: T; errors?: { message: string; extensions?: Record<string, unknown>; path?: string[] }[] };

export type TestApi = {
  app: App;
  server: RunningServer;
  url: string;
  config: Config;
  queries: string[];
  gql<T = any>(query: string, variables?: Record<string, unknown>, auth?: { token?: string; org?: string; headers?: Record<string, string> }): Promise<GqlResult<T>>;
  register(name?: string): Promise<TestUser>;
  close(): Promise<void>;
};

export type TestUser = { id: string; email: string; password: string; accessToken: string; refreshToken: string; organizationId: string };

/** Deploy settings for tests: dnsrr (no IPVS here), short monitor windows and locks. */
export const DEPLOY_TEST_SETTINGS: Record<string, string> = {
  CONVOY_ENDPOINT_MODE: 'dnsrr',
  CONVOY_UPDATE_MONITOR_SECONDS: '2',
  CONVOY_STOP_GRACE_SECONDS: '1',
  CONVOY_JOB_LOCK_SECONDS: '4',
  CONVOY_DEPLOY_TIMEOUT_SECONDS: '60',
  CONVOY_RECONCILE_INTERVAL_SECONDS: '2',
};

/** log: a logger of the test's own (to read what the API logs); default: one at config.logLevel. */
export type TestApiOptions = { controller?: boolean; log?: Logger };

export async function startTestApi(overrides: Record<string, string> = {}, options: TestApiOptions = {}): Promise<TestApi> {
  const database = await createTestDatabase();
  const prefix = uniqueRedisPrefix();
  const config = loadConfig({
    NODE_ENV: 'test',
    DATABASE_URL: database.url,
    REDIS_URL,
    REDIS_PREFIX: prefix,
    PORT: '0',
    HOST: '127.0.0.1',
    CONVOY_SECRET_KEY: randomBytes(32).toString('hex'),
    MIGRATE_ON_START: 'false',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...overrides,
  });
  const queries: string[] = [];
  const app = await createApp(config, { onQuery: (sql) => queries.push(sql), log: options.log ?? createLogger(config.logLevel), builder: testNixBuilder() });
  await syncBuiltInTemplates(app);
  const server = await startServer(app, { port: 0, host: '127.0.0.1', docker: app.docker });
  const controller = options.controller ? await startControllers(app) : null;

  const gql: TestApi['gql'] = async (query, variables = {}, auth = {}) => {
    const headers: Record<string, string> = { 'content-type': 'application/json', ...auth.headers };
    if (auth.token) headers.authorization = `Bearer ${auth.token}`;
    if (auth.org) headers['x-convoy-organization'] = auth.org;
    const response = await fetch(`${server.url}/graphql`, { method: 'POST', headers, body: JSON.stringify({ query, variables }) });
    return (await response.json()) as GqlResult;
  };

  const register: TestApi['register'] = async (name = 'Test User') => {
    const email = `user-${randomBytes(5).toString('hex')}@example.com`;
    const password = 'correct horse battery staple';
    const result = await gql(
      `mutation($input: RegisterInput!) { register(input: $input) { __typename ... on AuthPayload { user { id memberships { organization { id } } } tokens { accessToken refreshToken } } ... on Error { message } } }`,
      { input: { email, password, name } },
    );
    const payload = result.data?.register;
    if (payload?.__typename !== 'AuthPayload') throw new Error(`register failed: ${JSON.stringify(result)}`);
    return {
      id: payload.user.id,
      email,
      password,
      accessToken: payload.tokens.accessToken,
      refreshToken: payload.tokens.refreshToken,
      organizationId: payload.user.memberships[0].organization.id,
    };
  };

  return {
    app,
    server,
    url: server.url,
    config,
    queries,
    gql,
    register,
    async close() {
      await server.close();
      await controller?.close();
      await removeSwarmObjects(app);
      await app.close();
      await database.drop();
      await deleteRedisPrefix(prefix);
    },
  };
}

/** Removes the Swarm services, networks and built images of everything in this test's database. */
async function removeSwarmObjects(app: App) {
  const [services, orgs, builds] = await Promise.all([
    app.db.service.findMany({ select: { id: true } }),
    app.db.organization.findMany({ select: { id: true } }),
    app.db.build.findMany({ where: { imageRef: { not: null } }, select: { imageRef: true } }),
  ]);
  for (const { id } of services) {
    const swarm = await app.orchestrator.findServiceByName(swarmServiceName(id)).catch(() => null);
    if (swarm) await app.orchestrator.removeService(swarm.id).catch(() => {});
  }
  // Tagged per service and build, so no other test uses them; a container still stopping keeps its image.
  for (const ref of new Set(builds.map((b) => b.imageRef!))) await removeImage(app.docker, ref).catch(() => false);
  for (const { id } of orgs) {
    // Tasks take a moment to detach from a network after their service is removed.
    for (let attempt = 0; attempt < 20; attempt++) {
      if (await app.orchestrator.removeNetwork(organizationNetworkName(id)).catch(() => false)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

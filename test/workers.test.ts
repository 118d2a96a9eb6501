import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { subscribe, waitForListeners } from './helpers/subscribe.js';
import { waitFor } from './helpers/wait.js';
import { hashToken } from '../src/platform/crypto/tokens.js';
import { sweepWorkerHealth } from '../src/modules/workers/health.js';
import { startWorkerController } from '../src/modules/workers/controller.js';
import { renderInstallScript } from '../src/modules/workers/install.js';
import { authenticate, register } from '../src/modules/auth/service.js';
import { createDb } from '../src/platform/db/client.js';
import { createTestDatabase } from './helpers/database.js';
import { createApp } from '../src/app.js';
import { createLogger } from '../src/platform/logging/logger.js';

let api: TestApi;
let admin: TestUser;
let alice: TestUser;
let bob: TestUser;
beforeAll(async () => {
  // Short limits, so the sweep can be driven with a clock a few seconds ahead.
  api = await startTestApi({ CONVOY_WORKER_UNHEALTHY_SECONDS: '2', CONVOY_WORKER_OFFLINE_SECONDS: '4', CONVOY_WORKER_SWEEP_SECONDS: '1', CONVOY_WORKER_HEARTBEAT_SECONDS: '20' });
  // Registered one after the other: the first account of the installation is its platform admin.
  admin = await api.register('Admin');
  alice = await api.register('Alice');
  bob = await api.register('Bob');
});
afterAll(async () => {
  await api?.close();
});

const CREATE_TOKEN = `mutation($ttl: Int!, $labels: [WorkerLabelInput!]) { createWorkerJoinToken(ttlSeconds: $ttl, labels: $labels) {
  __typename
  ... on CreateWorkerJoinTokenPayload { token expiresAt installCommand joinToken { id state labels { key value } } }
  ... on ValidationError { fieldErrors { path message } }
} }`;

const REGISTER = `mutation($input: RegisterWorkerInput!) { registerWorker(input: $input) {
  __typename
  ... on RegisterWorkerPayload { worker { id hostname status labels { key value } } credential swarm { joinToken managerAddress } }
  ... on ValidationError { fieldErrors { path message } }
  ... on Error { message }
} }`;

const HEARTBEAT = `mutation($input: WorkerHeartbeatInput!) { workerHeartbeat(input: $input) { worker { id status } nextHeartbeatInSeconds } }`;

type Worker = { id: string; hostname: string; credential: string };

async function joinToken(ttl = 600, labels?: { key: string; value: string }[]): Promise<{ token: string; id: string; installCommand: string }> {
  const result = await api.gql(CREATE_TOKEN, { ttl, labels }, { token: admin.accessToken });
  const payload = result.data?.createWorkerJoinToken;
  if (payload?.__typename !== 'CreateWorkerJoinTokenPayload') throw new Error(JSON.stringify(result));
  return { token: payload.token, id: payload.joinToken.id, installCommand: payload.installCommand };
}

function registration(token: string, hostname: string, extra: Record<string, unknown> = {}) {
  return { joinToken: token, hostname, cpuCores: 2, memoryMb: 4096, diskGb: 50, agentVersion: '0.1.0', ...extra };
}

async function registerWorker(hostname = `node-${randomBytes(3).toString('hex')}`, extra: Record<string, unknown> = {}): Promise<Worker> {
  const { token } = await joinToken();
  const result = await api.gql(REGISTER, { input: registration(token, hostname, extra) });
  const payload = result.data?.registerWorker;
  if (payload?.__typename !== 'RegisterWorkerPayload') throw new Error(JSON.stringify(result));
  return { id: payload.worker.id, hostname, credential: payload.credential };
}

type Metrics = { cpuPercent?: number; memoryUsedMb?: number; memoryTotalMb?: number; diskUsedGb?: number; diskTotalGb?: number; load1?: number; containers?: unknown[] };

function heartbeat(worker: Pick<Worker, 'credential'>, metrics: Metrics = {}) {
  const input = { cpuPercent: 20, memoryUsedMb: 1000, memoryTotalMb: 4000, diskUsedGb: 10, diskTotalGb: 50, load1: 0.5, containers: [], ...metrics };
  return api.gql(HEARTBEAT, { input }, { token: worker.credential });
}

function container(serviceId: string | null, cpuPercent = 50, memoryUsedMb = 100) {
  return { containerId: randomBytes(32).toString('hex'), serviceId, taskId: randomBytes(12).toString('hex').slice(0, 25), cpuPercent, memoryUsedMb, networkRxBytes: 1000, networkTxBytes: 2000 };
}

async function createService(user: TestUser, name: string): Promise<string> {
  const result = await api.gql(`mutation($n: String!) { createService(input: { name: $n, source: { image: "nginx" } }) { ... on Service { id } } }`, { n: name }, { token: user.accessToken });
  return result.data.createService.id;
}

function notificationsAbout(workerId: string, kind: string) {
  return api.app.db.notification.findMany({ where: { kind, data: { path: ['workerId'], equals: workerId } }, orderBy: { createdAt: 'asc' } });
}

function codeOf(result: { errors?: { extensions?: Record<string, unknown> }[] }) {
  return result.errors?.[0]?.extensions?.code;
}

function fetchScript(query: string, headers: Record<string, string> = {}): Promise<{ status: number; type: string; body: string }> {
  // node:http rather than fetch, which would not let a test send a hostile Host header.
  return new Promise((resolve, reject) => {
    const req = request(`${api.url}/install/worker.sh${query}`, { headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('platform admins', () => {
  it('makes the first user a platform admin and refuses worker management to everyone else', async () => {
    const me = `{ me { platformAdmin } }`;
    expect((await api.gql(me, {}, { token: admin.accessToken })).data.me.platformAdmin).toBe(true);
    expect((await api.gql(me, {}, { token: alice.accessToken })).data.me.platformAdmin).toBe(false);
    for (const [query, variables] of [
      [CREATE_TOKEN, { ttl: 600 }],
      [`{ workers(first: 5) { edges { node { id } } } }`, {}],
      [`{ workerJoinTokens(first: 5) { edges { node { id } } } }`, {}],
      [`mutation { drainWorker(id: "x") { __typename } }`, {}],
      [`mutation { removeWorker(id: "x") { __typename } }`, {}],
      [`subscription { workerHeartbeats { workerId } }`, {}],
    ] as const) {
      expect(codeOf(await api.gql(query, variables, { token: alice.accessToken }))).toBe('FORBIDDEN');
      expect(codeOf(await api.gql(query, variables))).toBe('UNAUTHENTICATED');
    }
  });

  it('makes exactly one platform admin when the first registrations race', async () => {
    const database = await createTestDatabase();
    const { db, pool } = createDb({ connectionString: database.url, poolSize: 6 });
    try {
      const users = await Promise.all(
        Array.from({ length: 5 }, (_, i) => register({ db, config: api.config }, { email: `racer-${i}@example.com`, password: 'correct horse battery staple', name: `Racer ${i}` })),
      );
      expect(users.filter((u) => u.user.platformAdmin)).toHaveLength(1);
    } finally {
      await db.$disconnect();
      await pool.end();
      await database.drop();
    }
  });
});

describe('join tokens', () => {
  it('shows the token once, stores only its hash, and validates ttl and labels', async () => {
    const result = await api.gql(CREATE_TOKEN, { ttl: 3600, labels: [{ key: 'zone', value: 'eu-1' }] }, { token: admin.accessToken });
    const payload = result.data.createWorkerJoinToken;
    expect(payload.token).toMatch(/^cvy_join_[A-Za-z0-9_-]{43}$/);
    expect(payload.joinToken).toMatchObject({ state: 'ACTIVE', labels: [{ key: 'zone', value: 'eu-1' }] });
    expect(payload.installCommand).toBe(`curl -fsSL '${api.url}/install/worker.sh?token=${payload.token}' | sudo bash`);
    const row = await api.app.db.workerJoinToken.findUniqueOrThrow({ where: { id: payload.joinToken.id } });
    expect(row.tokenHash).toBe(hashToken(payload.token));
    expect(JSON.stringify(row)).not.toContain(payload.token);

    const bad = await api.gql(CREATE_TOKEN, { ttl: 5, labels: [{ key: 'Zone;rm', value: 'x' }, { key: 'a', value: '$(id)' }, { key: 'a', value: 'b' }] }, { token: admin.accessToken });
    expect(bad.data.createWorkerJoinToken.__typename).toBe('ValidationError');
    const paths = bad.data.createWorkerJoinToken.fieldErrors.map((e: { path: string[] }) => e.path.join('.'));
    expect(paths).toEqual(expect.arrayContaining(['ttlSeconds', 'labels.0.key', 'labels.1.value', 'labels.2.key']));

    const list = await api.gql(`{ workerJoinTokens(first: 50, active: true) { edges { node { id state } } } }`, {}, { token: admin.accessToken });
    expect(list.data.workerJoinTokens.edges.map((e: any) => e.node.id)).toContain(payload.joinToken.id);
  });

  it('registers a worker once; used, expired, revoked and malformed tokens fail alike', async () => {
    const { token, id } = await joinToken(600, [{ key: 'zone', value: 'eu-1' }]);
    const first = await api.gql(REGISTER, { input: registration(token, 'Node-A', { labels: [{ key: 'zone', value: 'spoofed' }, { key: 'disk', value: 'ssd' }] }) });
    const payload = first.data.registerWorker;
    expect(payload).toMatchObject({ __typename: 'RegisterWorkerPayload', worker: { hostname: 'node-a', status: 'ONLINE' } });
    // The admin's labels (on the token) win over the node's own.
    expect(payload.worker.labels).toEqual(expect.arrayContaining([{ key: 'zone', value: 'eu-1' }, { key: 'disk', value: 'ssd' }]));
    expect(payload.credential).toMatch(/^cvy_wrk_/);
    expect(payload.swarm.joinToken).toMatch(/^SWMTKN-1-/);
    expect(payload.swarm.managerAddress).toMatch(/:\d+$/);
    const credential = await api.app.db.workerCredential.findFirstOrThrow({ where: { workerId: payload.worker.id } });
    expect(credential.tokenHash).toBe(hashToken(payload.credential));
    expect(await api.app.db.auditLogEntry.count({ where: { action: 'worker.register', actorWorkerId: payload.worker.id } })).toBe(1);
    expect((await api.app.db.workerJoinToken.findUniqueOrThrow({ where: { id } })).usedAt).not.toBeNull();

    const again = await api.gql(REGISTER, { input: registration(token, 'node-b') });
    expect(again.data.registerWorker.__typename).toBe('InvalidJoinTokenError');

    const expired = await joinToken();
    await api.app.db.workerJoinToken.update({ where: { id: expired.id }, data: { expiresAt: new Date(Date.now() - 1000) } });
    const revoked = await joinToken();
    const revoke = await api.gql(`mutation($id: ID!) { revokeWorkerJoinToken(id: $id) { __typename ... on WorkerJoinToken { state } } }`, { id: revoked.id }, { token: admin.accessToken });
    expect(revoke.data.revokeWorkerJoinToken).toEqual({ __typename: 'WorkerJoinToken', state: 'REVOKED' });
    for (const bad of [expired.token, revoked.token, 'cvy_join_' + 'A'.repeat(43), 'not-a-token', `${revoked.token}'`]) {
      const result = await api.gql(REGISTER, { input: registration(bad, `node-${randomBytes(3).toString('hex')}`) });
      expect(result.data.registerWorker.__typename).toBe('InvalidJoinTokenError');
    }
    expect(await api.app.db.worker.count({ where: { hostname: 'node-b' } })).toBe(0);
  });

  it('refuses a host name already registered, leaving the token usable', async () => {
    const existing = await registerWorker();
    const { token } = await joinToken();
    const clash = await api.gql(REGISTER, { input: registration(token, existing.hostname) });
    expect(clash.data.registerWorker).toMatchObject({ __typename: 'ConflictError' });
    const retry = await api.gql(REGISTER, { input: registration(token, `${existing.hostname}-2`) });
    expect(retry.data.registerWorker.__typename).toBe('RegisterWorkerPayload');
  });

  it('checks the Swarm node id against the swarm, at registration and when a node that joined later reports it', async () => {
    const [node] = await api.app.orchestrator.listNodes();
    const bogus = await registerWorker(undefined, { swarmNodeId: 'aaaaaaaaaaaaaaaaaaaaaaaaa' }).catch((e: Error) => e.message);
    expect(bogus).toContain('is not a node of this swarm');
    const real = await registerWorker(undefined, { swarmNodeId: node!.id });
    const row = await api.app.db.worker.findUniqueOrThrow({ where: { id: real.id } });
    expect(row.swarmNodeId).toBe(node!.id);

    // A node the agent joined to the swarm after registering reports the node it became.
    const REPORT = `mutation($id: String!) { reportSwarmNode(swarmNodeId: $id) {
      __typename ... on Worker { id swarmNodeId } ... on ValidationError { fieldErrors { path message } } ... on Error { message } } }`;
    const joined = await registerWorker();
    const report = async (swarmNodeId: string, token = joined.credential) => (await api.gql(REPORT, { id: swarmNodeId }, { token })).data?.reportSwarmNode;
    expect(await report('../../etc')).toMatchObject({ __typename: 'ValidationError', fieldErrors: [{ path: ['swarmNodeId'], message: 'must be a Swarm node id' }] });
    expect(await report('aaaaaaaaaaaaaaaaaaaaaaaaa')).toMatchObject({ __typename: 'ValidationError', fieldErrors: [{ path: ['swarmNodeId'], message: 'is not a node of this swarm' }] });
    // Another live worker is that node.
    expect(await report(node!.id)).toMatchObject({ __typename: 'ConflictError' });
    expect((await api.app.db.worker.findUniqueOrThrow({ where: { id: joined.id } })).swarmNodeId).toBeNull();
    expect(codeOf(await api.gql(REPORT, { id: node!.id }, { token: admin.accessToken }))).toBe('FORBIDDEN');

    // The first worker is retired as removeWorker would leave it; removeWorker itself would also remove
    // this machine's only Swarm node, which the other tests run on.
    await api.app.db.worker.update({ where: { id: real.id }, data: { removedAt: new Date() } });
    expect(await report(node!.id)).toEqual({ __typename: 'Worker', id: joined.id, swarmNodeId: node!.id });
    // Reporting the node it is changes nothing.
    expect(await report(node!.id)).toEqual({ __typename: 'Worker', id: joined.id, swarmNodeId: node!.id });
    const audit = await api.app.db.auditLogEntry.findMany({ where: { action: 'worker.swarm_node', resourceId: joined.id } });
    expect(audit.map((a) => a.metadata)).toEqual([{ swarmNodeId: node!.id, previousSwarmNodeId: null }]);
  });
});

describe('worker credentials', () => {
  it('refuses forged credentials and keeps a worker to its own business', async () => {
    const worker = await registerWorker();
    const other = await registerWorker();
    expect(codeOf(await heartbeat({ credential: `cvy_wrk_${randomBytes(32).toString('base64url')}` }))).toBe('UNAUTHENTICATED');
    const asWorker = { token: worker.credential };
    expect((await api.gql(`{ currentWorker { id hostname } }`, {}, asWorker)).data.currentWorker).toEqual({ id: worker.id, hostname: worker.hostname });
    for (const query of [
      `{ services(first: 5) { edges { node { id } } } }`,
      `{ me { id } }`,
      `{ workers(first: 5) { edges { node { id } } } }`,
      `{ worker(id: "${other.id}") { id } }`,
      `mutation { drainWorker(id: "${other.id}") { __typename } }`,
      `mutation { removeWorker(id: "${other.id}", force: true) { __typename } }`,
      `mutation { createWorkerJoinToken(ttlSeconds: 600) { __typename } }`,
    ]) {
      expect(codeOf(await api.gql(query, {}, asWorker))).toBe('FORBIDDEN');
    }
    // Users are not workers either.
    expect(codeOf(await api.gql(HEARTBEAT, { input: { cpuPercent: 1, memoryUsedMb: 1, memoryTotalMb: 2, diskUsedGb: 1, diskTotalGb: 2, load1: 0, containers: [] } }, { token: admin.accessToken }))).toBe('FORBIDDEN');
    expect(await api.app.db.worker.count({ where: { id: other.id, removedAt: null, status: 'ONLINE' } })).toBe(1);
  });

  it('validates heartbeats', async () => {
    const worker = await registerWorker();
    const result = await heartbeat(worker, { cpuPercent: 140, containers: [{ ...container(null), containerId: '../../etc' }] });
    expect(codeOf(result)).toBe('BAD_USER_INPUT');
  });
});

describe('heartbeats and metrics', () => {
  it('updates the worker and arrives on workerHeartbeats, workerMetrics and workerMetricsRange', async () => {
    const worker = await registerWorker();
    const baseline = api.app.bus.listenerCount();
    const all = subscribe(api.url, admin.accessToken, `subscription { workerHeartbeats { workerId hostname status cpuPercent memoryUsedMb containerCount at } }`, {}, 'workerHeartbeats');
    const one = subscribe(api.url, admin.accessToken, `subscription($id: ID!) { workerMetrics(workerId: $id) { workerId load1 } }`, { id: worker.id }, 'workerMetrics');
    try {
      await waitForListeners(api.app.bus, baseline + 2);
      const first = await heartbeat(worker, { cpuPercent: 30, containers: [container(null)] });
      expect(first.data.workerHeartbeat).toEqual({ worker: { id: worker.id, status: 'ONLINE' }, nextHeartbeatInSeconds: 20 });
      const full = await api.gql(`mutation($input: WorkerHeartbeatInput!) { workerHeartbeat(input: $input) { worker { hostname labels { key } lastHeartbeatAt lastMetrics { cpuPercent containerCount } } } }`, { input: { cpuPercent: 30, memoryUsedMb: 1000, memoryTotalMb: 4000, diskUsedGb: 10, diskTotalGb: 50, load1: 0.5, containers: [] } }, { token: worker.credential });
      expect(full.data.workerHeartbeat.worker).toMatchObject({ hostname: worker.hostname, labels: [], lastMetrics: { cpuPercent: 30, containerCount: 0 } });
      expect(Math.abs(Date.parse(full.data.workerHeartbeat.worker.lastHeartbeatAt) - Date.now())).toBeLessThan(10_000);
      await heartbeat(worker, { cpuPercent: 50, load1: 1.5 });
      const events = await all.waitFor((e) => e.filter((x: any) => x.workerId === worker.id).length === 3, 5000);
      expect(events.filter((x: any) => x.workerId === worker.id)).toEqual([
        expect.objectContaining({ hostname: worker.hostname, status: 'ONLINE', cpuPercent: 30, memoryUsedMb: 1000, containerCount: 1 }),
        expect.objectContaining({ cpuPercent: 30, containerCount: 0 }),
        expect.objectContaining({ cpuPercent: 50, containerCount: 0 }),
      ]);
      expect((await one.waitFor((e) => e.length === 3, 5000)).map((e: any) => e.load1)).toEqual([0.5, 0.5, 1.5]);
    } finally {
      await Promise.all([all.close(), one.close()]);
    }
    const row = await api.app.db.worker.findUniqueOrThrow({ where: { id: worker.id } });
    expect(Date.now() - row.lastHeartbeatAt!.getTime()).toBeLessThan(10_000);
    expect(row.lastMetrics).toMatchObject({ cpuPercent: 50, load1: 1.5, containerCount: 0 });

    const now = Date.now();
    const range = await api.gql(
      `query($id: ID!, $from: DateTime!, $to: DateTime!) { workerMetricsRange(workerId: $id, from: $from, to: $to) { at samples cpuPercent load1 memoryTotalMb } }`,
      { id: worker.id, from: new Date(now - 300_000).toISOString(), to: new Date(now + 60_000).toISOString() },
      { token: admin.accessToken },
    );
    const points = range.data.workerMetricsRange;
    // Both heartbeats fall in one minute unless the test straddles a minute boundary.
    expect(points.reduce((n: number, p: any) => n + p.samples, 0)).toBe(3);
    if (points.length === 1) expect(points[0]).toMatchObject({ samples: 3, cpuPercent: 110 / 3, load1: 2.5 / 3, memoryTotalMb: 4000 });
    expect(new Date(points[0].at).getUTCSeconds()).toBe(0);
    const tooLong = await api.gql(`query($id: ID!) { workerMetricsRange(workerId: $id, from: "2020-01-01T00:00:00Z", to: "2020-01-03T00:00:00Z") { at } }`, { id: worker.id }, { token: admin.accessToken });
    expect(codeOf(tooLong)).toBe('BAD_USER_INPUT');
  });

  it('delivers serviceMetrics to the service organization and NOT_FOUND to another', async () => {
    const serviceId = await createService(alice, 'metered');
    const worker = await registerWorker();
    const baseline = api.app.bus.listenerCount();
    const sub = subscribe(api.url, alice.accessToken, `subscription($id: ID!) { serviceMetrics(serviceId: $id) { serviceId containers { containerId taskId cpuPercent memoryUsedMb networkRxBytes } } }`, { id: serviceId }, 'serviceMetrics');
    try {
      await waitForListeners(api.app.bus, baseline + 1);
      const mine = container(serviceId, 25, 128);
      await heartbeat(worker, { containers: [mine, container(null), container('cm0000000000000000000000')] });
      const [event] = await sub.waitFor((e) => e.length === 1, 5000);
      expect(event).toEqual({ serviceId, containers: [{ containerId: mine.containerId, taskId: mine.taskId, cpuPercent: 25, memoryUsedMb: 128, networkRxBytes: 1000 }] });
    } finally {
      await sub.close();
    }
    const bobs = await api.gql(`subscription($id: ID!) { serviceMetrics(serviceId: $id) { serviceId } }`, { id: serviceId }, { token: bob.accessToken });
    expect(codeOf(bobs)).toBe('NOT_FOUND');

    const RANGE = `query($id: ID!, $from: DateTime!, $to: DateTime!) { serviceMetricsRange(serviceId: $id, from: $from, to: $to) { containerCount cpuPercent memoryUsedMb networkTxBytes } }`;
    const window = { id: serviceId, from: new Date(Date.now() - 120_000).toISOString(), to: new Date(Date.now() + 60_000).toISOString() };
    const range = await api.gql(RANGE, window, { token: alice.accessToken });
    expect(range.data.serviceMetricsRange).toEqual([{ containerCount: 1, cpuPercent: 25, memoryUsedMb: 128, networkTxBytes: 2000 }]);
    expect(codeOf(await api.gql(RANGE, window, { token: bob.accessToken }))).toBe('NOT_FOUND');
    // Containers of unknown services are not stored.
    const redis = api.app.redis;
    expect(await redis.keys(`${api.config.redisPrefix}:metrics:service:cm0000000000000000000000:*`)).toEqual([]);
  });

  it("answers steady heartbeats with the worker as last written, changes made meanwhile included", async () => {
    const worker = await registerWorker();
    const beat = async (load1: number) => {
      const answer = await api.gql(
        `mutation($input: WorkerHeartbeatInput!) { workerHeartbeat(input: $input) { worker { labels { key value } lastMetrics { load1 } } } }`,
        { input: { cpuPercent: 10, memoryUsedMb: 1000, memoryTotalMb: 4000, diskUsedGb: 10, diskTotalGb: 50, load1, containers: [] } },
        { token: worker.credential },
      );
      expect(answer.errors).toBeUndefined();
      return answer.data.workerHeartbeat.worker;
    };
    const storedLoad = async () => ((await api.app.db.worker.findUniqueOrThrow({ where: { id: worker.id } })).lastMetrics as { load1?: number }).load1;
    expect(await beat(1)).toEqual({ labels: [], lastMetrics: { load1: 1 } });
    // Changed behind the API's back (an operator in SQL): the next write brings it into the answers.
    await api.app.db.worker.update({ where: { id: worker.id }, data: { labels: { zone: 'b' } } });
    expect(await beat(2)).toEqual({ labels: [], lastMetrics: { load1: 2 } });
    await waitFor('the second heartbeat to be written', async () => (await storedLoad()) === 2, 5000, 20);
    expect(await beat(3)).toEqual({ labels: [{ key: 'zone', value: 'b' }], lastMetrics: { load1: 3 } });
    await waitFor('the third heartbeat to be written', async () => (await storedLoad()) === 3, 5000, 20);
    expect(await beat(4)).toEqual({ labels: [{ key: 'zone', value: 'b' }], lastMetrics: { load1: 4 } });
  });

  it('answers a steady heartbeat without waiting for its write, and a new agent process only once its heartbeat is written', async () => {
    const worker = await registerWorker();
    const session = randomBytes(8).toString('hex');
    const beat = (load1: number, agentSession = session) => heartbeat(worker, { load1, agentSession } as Metrics);
    const stored = () => api.app.db.worker.findUniqueOrThrow({ where: { id: worker.id } });
    const storedLoad = async () => ((await stored()).lastMetrics as { load1?: number } | null)?.load1;
    // Another transaction holds the worker's row: every heartbeat UPDATE of it waits until that ends.
    const holdingRow = (during: () => Promise<void>) =>
      api.app.db.$transaction(
        async (tx) => {
          await tx.$queryRaw`SELECT "id" FROM "Worker" WHERE "id" = ${worker.id} FOR UPDATE`;
          await during();
        },
        { timeout: 30_000 },
      );
    const within = <T>(ms: number, promise: Promise<T>) =>
      Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms))]);

    // The first heartbeat this API sees from the worker is written before it is answered.
    expect((await beat(1)).errors).toBeUndefined();
    expect(await storedLoad()).toBe(1);

    await holdingRow(async () => {
      const answer = await within(5000, beat(2));
      expect(answer.errors).toBeUndefined();
      expect(answer.data.workerHeartbeat.worker.status).toBe('ONLINE');
      expect(await storedLoad()).toBe(1);
    });
    await waitFor('the steady heartbeat to be written', async () => (await storedLoad()) === 2, 5000, 20);

    // A restarted agent (a new session) may hold build jobs' claims in the balance: it waits for its write.
    const restarted = randomBytes(8).toString('hex');
    let answered = false;
    let answer!: ReturnType<typeof heartbeat>;
    await holdingRow(async () => {
      answer = beat(3, restarted).finally(() => (answered = true));
      await new Promise((r) => setTimeout(r, 1000));
      expect(answered).toBe(false);
    });
    expect((await within(5000, answer)).data.workerHeartbeat.worker.status).toBe('ONLINE');
    expect(await stored()).toMatchObject({ agentSession: restarted, lastMetrics: expect.objectContaining({ load1: 3 }) });
  });

  it('costs one UPDATE per heartbeat, however many containers and services it reports', async () => {
    const worker = await registerWorker();
    const services = await Promise.all(Array.from({ length: 8 }, (_, i) => createService(alice, `cost-${i}`)));
    const containers = services.flatMap((id) => [container(id), container(id)]);
    await heartbeat(worker, { containers }); // warms the live-service cache
    const count = async (reported: unknown[]) => {
      api.queries.length = 0;
      const result = await heartbeat(worker, { containers: reported });
      expect(result.errors).toBeUndefined();
      // A steady heartbeat is answered before its batch is written: wait for the batch.
      await waitFor('the batch to be written', () => api.queries.some((q) => /^\s*UPDATE/i.test(q)), 5000, 10);
      await new Promise((r) => setTimeout(r, 100));
      return [...api.queries];
    };
    const none = await count([]);
    const many = await count(containers);
    expect(many.length).toBe(none.length);
    expect(many.filter((q) => /^\s*UPDATE/i.test(q))).toHaveLength(1);
    expect(many.filter((q) => /BEGIN|INSERT/i.test(q))).toEqual([]);
  });

  it('writes concurrent heartbeats in batches, each one counted once', async () => {
    const fleet = await Promise.all(Array.from({ length: 12 }, () => registerWorker()));
    api.queries.length = 0;
    const results = await Promise.all(fleet.flatMap((worker) => [heartbeat(worker, { cpuPercent: 10 }), heartbeat(worker, { cpuPercent: 30 })]));
    expect(results.every((r) => r.data?.workerHeartbeat.worker.status === 'ONLINE')).toBe(true);
    expect(results.map((r) => r.data.workerHeartbeat.worker.id).sort()).toEqual(fleet.flatMap((w) => [w.id, w.id]).sort());
    const updates = api.queries.filter((q) => /^\s*UPDATE "Worker"/i.test(q)).length;
    expect(updates).toBeGreaterThanOrEqual(2); // a worker's two heartbeats never share a batch
    expect(updates).toBeLessThan(results.length);
    const now = Date.now();
    for (const worker of fleet) {
      const range = await api.gql(
        `query($id: ID!, $from: DateTime!, $to: DateTime!) { workerMetricsRange(workerId: $id, from: $from, to: $to) { samples cpuPercent } }`,
        { id: worker.id, from: new Date(now - 120_000).toISOString(), to: new Date(now + 60_000).toISOString() },
        { token: admin.accessToken },
      );
      expect(range.data.workerMetricsRange.reduce((n: number, p: any) => n + p.samples, 0)).toBe(2);
    }
  });
});

describe('worker health', () => {
  it('marks a silent worker UNHEALTHY then OFFLINE, and a heartbeat brings it back ONLINE, notifying admins and affected owners', async () => {
    const serviceId = await createService(alice, 'on-sick-node');
    const worker = await registerWorker();
    await heartbeat(worker, { containers: [container(serviceId)] });
    const events = await api.app.bus.subscribe('worker', worker.id);
    const statusOf = async () => (await api.app.db.worker.findUniqueOrThrow({ where: { id: worker.id } })).status;

    const soon = await sweepWorkerHealth(api.app, new Date(Date.now() + 1000));
    expect(soon.unhealthy).not.toContain(worker.id);
    const later = await sweepWorkerHealth(api.app, new Date(Date.now() + 2500));
    expect(later.unhealthy).toContain(worker.id);
    expect(await statusOf()).toBe('UNHEALTHY');
    // Sweeping again changes nothing and notifies nobody twice.
    expect((await sweepWorkerHealth(api.app, new Date(Date.now() + 2500))).unhealthy).not.toContain(worker.id);
    expect((await sweepWorkerHealth(api.app, new Date(Date.now() + 5000))).offline).toContain(worker.id);
    expect(await statusOf()).toBe('OFFLINE');

    const back = await heartbeat(worker, { containers: [container(serviceId)] });
    expect(back.data.workerHeartbeat.worker.status).toBe('ONLINE');

    const received: any[] = [];
    for (let i = 0; i < 3; i++) received.push((await events.next()).value);
    await events.return!();
    expect(received.map((e) => [e.kind, e.previousStatus, e.status])).toEqual([
      ['STATUS_CHANGED', 'ONLINE', 'UNHEALTHY'],
      ['STATUS_CHANGED', 'UNHEALTHY', 'OFFLINE'],
      ['STATUS_CHANGED', 'OFFLINE', 'ONLINE'],
    ]);

    const notes = await notificationsAbout(worker.id, 'WORKER_STATUS_CHANGED');
    const forAdmin = notes.filter((n) => n.userId === admin.id);
    expect(forAdmin.map((n) => (n.data as any).status)).toEqual(['UNHEALTHY', 'OFFLINE', 'ONLINE']);
    expect(forAdmin.every((n) => n.organizationId === null)).toBe(true);
    const forAlice = notes.filter((n) => n.userId === alice.id);
    expect(forAlice.map((n) => (n.data as any).status)).toEqual(['UNHEALTHY', 'OFFLINE', 'ONLINE']);
    expect(forAlice[0]).toMatchObject({ organizationId: alice.organizationId, data: expect.objectContaining({ serviceIds: [serviceId] }) });
    expect(notes.filter((n) => n.userId === bob.id)).toEqual([]);
  });

  it('runs the sweep on a schedule in the controller', async () => {
    const worker = await registerWorker();
    await api.app.db.worker.update({ where: { id: worker.id }, data: { lastHeartbeatAt: new Date(Date.now() - 3000) } });
    const controller = await startWorkerController(api.app);
    try {
      const deadline = Date.now() + 8000;
      while ((await api.app.db.worker.findUniqueOrThrow({ where: { id: worker.id } })).status === 'ONLINE') {
        if (Date.now() > deadline) throw new Error('the scheduled sweep did not run');
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await controller.close();
    }
  });

  it('alerts once when a resource crosses its threshold', async () => {
    const worker = await registerWorker();
    await heartbeat(worker, { cpuPercent: 95 });
    await heartbeat(worker, { cpuPercent: 97 });
    await heartbeat(worker, { cpuPercent: 97, memoryUsedMb: 3900, diskUsedGb: 46 });
    await heartbeat(worker, { cpuPercent: 10 });
    const alerts = (await notificationsAbout(worker.id, 'WORKER_RESOURCE_EXHAUSTED')).filter((n) => n.userId === admin.id);
    expect(alerts.map((n) => (n.data as any).resources)).toEqual([['CPU'], ['MEMORY', 'DISK']]);
    expect(alerts[1]!.body).toContain('memory 97.5 %');
  });
});

describe('drain and remove', () => {
  it('drains a worker; heartbeats keep it DRAINING', async () => {
    const worker = await registerWorker();
    const drained = await api.gql(`mutation($id: ID!) { drainWorker(id: $id) { __typename ... on Worker { status } } }`, { id: worker.id }, { token: admin.accessToken });
    expect(drained.data.drainWorker).toEqual({ __typename: 'Worker', status: 'DRAINING' });
    expect((await heartbeat(worker)).data.workerHeartbeat.worker.status).toBe('DRAINING');
    expect((await notificationsAbout(worker.id, 'WORKER_STATUS_CHANGED')).map((n) => (n.data as any).status)).toContain('DRAINING');
    const missing = await api.gql(`mutation { drainWorker(id: "nope") { __typename } }`, {}, { token: admin.accessToken });
    expect(missing.data.drainWorker.__typename).toBe('NotFoundError');
  });

  it('refuses to remove a worker that runs Convoy containers unless forced, then revokes its credential', async () => {
    const serviceId = await createService(alice, 'on-removed-node');
    const worker = await registerWorker();
    await heartbeat(worker, { containers: [container(serviceId)] });
    const CURRENT = `{ currentWorker { id } }`;
    expect((await api.gql(CURRENT, {}, { token: worker.credential })).data.currentWorker.id).toBe(worker.id);
    const REMOVE = `mutation($id: ID!, $force: Boolean) { removeWorker(id: $id, force: $force) { __typename ... on Worker { removedAt } ... on Error { message } } }`;
    const refused = await api.gql(REMOVE, { id: worker.id }, { token: admin.accessToken });
    expect(refused.data.removeWorker.__typename).toBe('ConflictError');
    const removed = await api.gql(REMOVE, { id: worker.id, force: true }, { token: admin.accessToken });
    expect(removed.data.removeWorker.__typename).toBe('Worker');
    expect(removed.data.removeWorker.removedAt).not.toBeNull();

    expect(codeOf(await heartbeat(worker))).toBe('UNAUTHENTICATED');
    // Not only heartbeats (whose write skips removed workers): the credential itself, cached a moment ago.
    expect(codeOf(await api.gql(CURRENT, {}, { token: worker.credential }))).toBe('UNAUTHENTICATED');
    expect(await api.app.db.workerCredential.count({ where: { workerId: worker.id, revokedAt: null } })).toBe(0);
    const list = await api.gql(`{ workers(first: 100) { edges { node { id } } } }`, {}, { token: admin.accessToken });
    expect(list.data.workers.edges.map((e: any) => e.node.id)).not.toContain(worker.id);
    expect((await api.gql(REMOVE, { id: worker.id }, { token: admin.accessToken })).data.removeWorker.__typename).toBe('NotFoundError');
    // The host name is free again for a new registration.
    const again = await registerWorker(worker.hostname);
    expect(again.id).not.toBe(worker.id);
  });
});

describe('worker credentials across API processes', () => {
  it('another API process refuses a removed worker within a couple of seconds, long before its cache expires', async () => {
    // A second API process on the same database and Redis: authenticate() as its server calls it.
    const other = await createApp(api.config, { log: createLogger('silent') });
    try {
      const worker = await registerWorker();
      const headers = new Headers({ authorization: `Bearer ${worker.credential}` });
      expect(await authenticate(other, headers)).toEqual({ kind: 'worker', workerId: worker.id });
      const removed = await api.gql(`mutation($id: ID!) { removeWorker(id: $id, force: true) { __typename } }`, { id: worker.id }, { token: admin.accessToken });
      expect(removed.data.removeWorker.__typename).toBe('Worker');
      const removedAt = Date.now();
      let refusedAfterMs: number | null = null;
      while (refusedAfterMs === null && Date.now() - removedAt < api.config.workers.credentialCacheSeconds * 1000) {
        const outcome = await authenticate(other, headers).catch((error: Error) => error);
        if (outcome instanceof Error) refusedAfterMs = Date.now() - removedAt;
        else await new Promise((r) => setTimeout(r, 50));
      }
      expect(refusedAfterMs).not.toBeNull();
      expect(refusedAfterMs!).toBeLessThan(3000);
    } finally {
      await other.close();
    }
  });
});

describe('install script', () => {
  it('serves a script that parses, for a live token only, with nothing unchecked in it', async () => {
    const { token } = await joinToken(600, [{ key: 'zone', value: 'labelvalue-should-not-appear' }]);
    const served = await fetchScript(`?token=${token}`);
    expect(served.status).toBe(200);
    expect(served.type).toContain('text/x-shellscript');
    const syntax = spawnSync('bash', ['-n'], { input: served.body, encoding: 'utf8' });
    expect(syntax.stderr).toBe('');
    expect(syntax.status).toBe(0);
    // Every value the script receives is a single-quoted assignment of a checked format.
    const assignments = Object.fromEntries([...served.body.matchAll(/^([A-Z_]+)='([^']*)'$/gm)].map((m) => [m[1], m[2]]));
    expect(assignments).toEqual({
      CONVOY_API_URL: api.url,
      CONVOY_JOIN_TOKEN: token,
      CONVOY_AGENT_IMAGE: api.config.workers.agentImage,
      SWARM_JOIN_TOKEN: expect.stringMatching(/^SWMTKN-1-[A-Za-z0-9-]+$/),
      SWARM_MANAGER_ADDR: expect.stringMatching(/^[0-9.]+:\d+$/),
    });
    expect(served.body.split(token)).toHaveLength(2);
    expect(served.body).not.toContain('labelvalue-should-not-appear');
    expect(served.body).toContain('chmod 600 "$ENV_FILE"');
    expect(served.body).toContain('EnvironmentFile=$ENV_FILE');

    // The Host header is never used for the API address (test/install-security.test.ts); a hostile forwarded proto is ignored.
    const hostile = await fetchScript(`?token=${token}`, { host: "evil.example'$(touch /tmp/pwned)" });
    expect(hostile.body).toContain(`CONVOY_API_URL='${api.url}'`);
    expect(hostile.body).not.toContain('evil.example');
    const proto = await fetchScript(`?token=${token}`, { 'x-forwarded-proto': "https'; rm -rf /" });
    expect(proto.body).toContain(`CONVOY_API_URL='${api.url}'`);
  });

  it('answers 404 for an unknown or used token and 400 for a malformed one', async () => {
    const used = await joinToken();
    await api.gql(REGISTER, { input: registration(used.token, `node-${randomBytes(3).toString('hex')}`) });
    for (const query of [`?token=${used.token}`, `?token=cvy_join_${'B'.repeat(43)}`]) {
      const response = await fetchScript(query);
      expect(response.status).toBe(404);
      expect(response.type).toContain('text/plain');
    }
    const live = await joinToken();
    for (const query of ['', '?token=', `?token=${live.token}%27`, `?token=${encodeURIComponent(`${live.token}';id;'`)}`, `?token=${live.token}&token=${live.token}`, '?token=cvy_join_short']) {
      const response = await fetchScript(query);
      expect(response.status, query).toBe(400);
      expect(response.body).toMatch(/^convoy: /);
    }
  });

  it('refuses to render an unchecked value', () => {
    const base = { apiUrl: 'http://10.0.0.1:4000', joinToken: `cvy_join_${'C'.repeat(43)}`, agentImage: 'convoy:latest', swarm: null, expiresAt: new Date() };
    expect(() => renderInstallScript(base)).not.toThrow();
    expect(() => renderInstallScript({ ...base, apiUrl: "http://x'; rm -rf / #" })).toThrow();
    expect(() => renderInstallScript({ ...base, agentImage: 'convoy:latest;id' })).toThrow();
    expect(() => renderInstallScript({ ...base, swarm: { joinToken: "SWMTKN-1-a'b", managerAddress: '10.0.0.1:2377' } })).toThrow();
  });
});

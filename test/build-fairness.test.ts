// Build scheduling is fair between organizations (builds in the controller process): one tenant's long
// builds never hold every build slot, and each organization runs at most CONVOY_BUILD_CONCURRENCY_PER_ORG
// builds at once while the others' builds go first. Real PostgreSQL, Redis, Nix and Swarm.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { httpAppExpression, nonce } from './helpers/nix.js';
import { uniqueName } from './helpers/swarm.js';
import { waitFor } from './helpers/wait.js';
import { createServiceThroughApi, startBuildThroughApi } from './helpers/builds.js';

let api: TestApi;
let tenantA: TestUser;
let tenantB: TestUser;

const HEALTH = { type: 'HTTP', path: '/healthz', port: 8080, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 };

beforeAll(async () => {
  api = await startTestApi({ ...DEPLOY_TEST_SETTINGS, CONVOY_BUILD_CONCURRENCY: '2', CONVOY_BUILD_CONCURRENCY_PER_ORG: '1' }, { controller: true });
  tenantA = await api.register('Tenant A');
  tenantB = await api.register('Tenant B');
});
afterAll(async () => {
  await api?.close();
});

const nixService = (user: TestUser, script: string) =>
  createServiceThroughApi(api, user.accessToken, { name: uniqueName('fair'), source: { nixExpression: httpAppExpression(`fair ${nonce()}`, script) }, ports: [{ target: 8080 }], healthCheck: HEALTH });
const startBuild = (user: TestUser, serviceId: string) => startBuildThroughApi(api, user.accessToken, serviceId);

const build = (id: string) => api.app.db.build.findUniqueOrThrow({ where: { id } });

async function cancel(user: TestUser, buildId: string) {
  const result = await api.gql(`mutation($b: ID!) { cancelBuild(buildId: $b) { __typename } }`, { b: buildId }, { token: user.accessToken });
  expect(result.data.cancelBuild.__typename).toBe('Build');
}

describe('fair build scheduling in the controller', () => {
  it("another organization's build starts at once while one organization's long builds wait their turn", async () => {
    const marker = `long-${nonce()}`;
    const [longA1, longA2, quickB] = await Promise.all([
      nixService(tenantA, `echo building ${marker}; sleep 60`),
      nixService(tenantA, `echo building ${marker}; sleep 60`),
      nixService(tenantB, 'sleep 1'),
    ]);
    const a1 = await startBuild(tenantA, longA1);
    await waitFor("A's first build to run", async () => (await build(a1)).logs.includes(`building ${marker}`), 30_000);
    const a2 = await startBuild(tenantA, longA2);
    // A's second build reaches a slot (two are free) and is put back: A already runs its one build.
    await waitFor("A's second build to be told to wait", async () => (await build(a2)).logs.includes('waiting: this organization already runs 1 build at once'), 10_000);

    const b = await startBuild(tenantB, quickB);
    await waitFor("B's build to succeed", async () => ['SUCCEEDED', 'FAILED'].includes((await build(b)).status), 30_000);
    const doneB = await build(b);
    expect(doneB.status, doneB.logs).toBe('SUCCEEDED');
    expect(doneB.startedAt!.getTime() - doneB.queuedAt.getTime()).toBeLessThan(5_000);
    // All the while, A ran one build and the other waited.
    expect((await build(a1)).status).toBe('RUNNING');
    expect((await build(a2)).status).toBe('QUEUED');

    // A's first build ends: its second starts without waiting for a recheck.
    await cancel(tenantA, a1);
    await waitFor("A's first build to end", async () => (await build(a1)).status === 'CANCELLED', 15_000);
    const endedA1 = (await build(a1)).finishedAt!;
    await waitFor("A's second build to start", async () => (await build(a2)).status === 'RUNNING', 5_000);
    expect((await build(a2)).startedAt!.getTime()).toBeGreaterThanOrEqual(endedA1.getTime());
    await cancel(tenantA, a2);
    await waitFor("A's second build to end", async () => (await build(a2)).status === 'CANCELLED', 15_000);
  });
});

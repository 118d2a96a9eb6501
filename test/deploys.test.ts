// Deploys through the GraphQL API onto the real swarm, with the controller running in-process.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { buildTestImage, TEST_APP_PORT } from './helpers/images.js';
import { ncGet, runProbeContainer, startRequestLoop, SwarmCleanup, testDocker, uniqueName, waitForRequests } from './helpers/swarm.js';
import { subscribe, waitForListeners } from './helpers/subscribe.js';
import { waitFor } from './helpers/wait.js';
import { organizationNetworkName, swarmServiceName } from '../src/modules/deployments/spec.js';

let api: TestApi;
let user: TestUser;
const cleanup = new SwarmCleanup();
const tag = uniqueName('convoy-test-app');
let v1: string, v2: string, slow: string, broken: string;

beforeAll(async () => {
  api = await startTestApi(DEPLOY_TEST_SETTINGS, { controller: true });
  user = await api.register();
  [v1, v2, slow, broken] = await Promise.all([
    buildTestImage(`${tag}:v1`, { body: 'version one' }),
    buildTestImage(`${tag}:v2`, { body: 'version two' }),
    buildTestImage(`${tag}:slow`, { body: 'slow starter', healthyAfterMs: 4000 }),
    buildTestImage(`${tag}:broken`, { body: 'never healthy', healthy: false }),
  ]);
});
afterAll(async () => {
  await cleanup.run();
  await api?.close();
});

const DEPLOYMENT_FIELDS = `id kind status image replicas reason`;
const HEALTH = { type: 'HTTP', path: '/health', port: TEST_APP_PORT, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 };

async function createService(name: string, image: string, healthCheck: Record<string, unknown> = HEALTH) {
  const result = await api.gql(`mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on Service { id } ... on Error { message } } }`, { i: { name, source: { image }, healthCheck } }, { token: user.accessToken });
  expect(result.data.createService.__typename, JSON.stringify(result)).toBe('Service');
  return result.data.createService.id as string;
}

async function mutate(name: string, args: string, variables: Record<string, unknown>) {
  const started = performance.now();
  const result = await api.gql(`mutation($s: ID!${args ? `, ${args}` : ''}) { ${name}(serviceId: $s${args ? `, ${args.split(',').map((a) => a.trim().split(':')[0].slice(1)).map((n) => `${n}: $${n}`).join(', ')}` : ''}) { __typename ... on Deployment { ${DEPLOYMENT_FIELDS} } ... on Error { message } } }`, variables, { token: user.accessToken });
  const elapsed = performance.now() - started;
  expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
  return { deployment: result.data[name], elapsedMs: elapsed };
}

async function waitForDeployment(id: string, statuses = ['RUNNING', 'FAILED', 'COMPLETED'], timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await api.gql(`query($id: ID!) { deployment(id: $id) { ${DEPLOYMENT_FIELDS} events { status message } } }`, { id }, { token: user.accessToken });
    const deployment = result.data.deployment;
    if (statuses.includes(deployment.status)) return deployment;
    if (Date.now() > deadline) throw new Error(`deployment ${id} still ${deployment.status}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function serviceState(id: string) {
  const result = await api.gql(`query($id: ID!) { service(id: $id) { status replicas env { name } currentDeployment { id image } statusHistory(last: 20) { toStatus reason } } }`, { id }, { token: user.accessToken });
  return result.data.service;
}

async function tasksOf(serviceId: string) {
  const swarm = await api.app.orchestrator.findServiceByName(swarmServiceName(serviceId));
  return swarm ? (await api.app.orchestrator.listTasks(swarm.id)).filter((t) => t.desiredState === 'running') : [];
}

function network() {
  return organizationNetworkName(user.organizationId);
}

describe('deploying a service', () => {
  it('reports RUNNING only once the health check passes, and answers at once with a queued job', async () => {
    // A slow starter declares a start period, as a real app would; failures in it do not count.
    const id = await createService(uniqueName('slow'), slow, { ...HEALTH, startPeriodSeconds: 15 });
    const serviceEvents = subscribe(api.url, user.accessToken, `subscription($id: ID!) { serviceEvents(serviceId: $id) { kind status } }`, { id }, 'serviceEvents');
    await waitForListeners(api.app.bus, 1);
    const { deployment, elapsedMs } = await mutate('deployService', '', { s: id });
    expect(deployment).toMatchObject({ __typename: 'Deployment', status: 'QUEUED', image: slow, replicas: 1 });
    // At once: well before the rollout could end (the image turns healthy after 4 s), with room for a loaded machine.
    expect(elapsedMs).toBeLessThan(3000);

    const events = subscribe(api.url, user.accessToken, `subscription($id: ID!) { deploymentEvents(deploymentId: $id) { status message at } }`, { id: deployment.id }, 'deploymentEvents');
    const seen = await events.waitFor((e) => e.some((x: any) => ['RUNNING', 'FAILED'].includes(x.status)));
    const running = seen.find((e: any) => e.status === 'RUNNING');
    expect(running, JSON.stringify(seen)).toBeTruthy();
    // At the moment Convoy says RUNNING, the app's health endpoint already answers through the network.
    const probe = await runProbeContainer(network(), `${ncGet(`tasks.${(await api.app.db.service.findUniqueOrThrow({ where: { id } })).name}`, TEST_APP_PORT, '/health')}`);
    expect(probe.stdout).toContain('ok');
    const final = await waitForDeployment(deployment.id);
    const deploying = final.events.find((e: any) => e.status === 'DEPLOYING');
    expect(final.events.map((e: any) => e.status)).toEqual(['QUEUED', 'DEPLOYING', 'RUNNING']);
    // The image turns healthy 4 s after start: RUNNING cannot come earlier than that.
    const started = await api.app.db.deploymentEvent.findFirstOrThrow({ where: { deploymentId: deployment.id, status: 'DEPLOYING' } });
    const healthy = await api.app.db.deploymentEvent.findFirstOrThrow({ where: { deploymentId: deployment.id, status: 'RUNNING' } });
    expect(deploying).toBeTruthy();
    expect(healthy.createdAt.getTime() - started.createdAt.getTime()).toBeGreaterThanOrEqual(4000);

    await serviceEvents.waitFor((e) => e.some((x: any) => x.status === 'RUNNING'));
    expect(serviceEvents.events.filter((e: any) => e.kind === 'STATUS_CHANGED').map((e: any) => e.status)).toEqual(['DEPLOYING', 'RUNNING']);
    expect((await serviceState(id)).currentDeployment).toEqual({ id: deployment.id, image: slow });
    await Promise.all([events.close(), serviceEvents.close()]);
  });

  it('deploymentEvents(afterEventId): a client that reconnects mid-rollout gets the stored events it missed, then the live ones, each with its stored id', async () => {
    // The slow starter keeps the rollout DEPLOYING for 4 s: the client comes back before it ends.
    const id = await createService(uniqueName('resume'), slow, { ...HEALTH, startPeriodSeconds: 15 });
    const EVENTS = `subscription($id: ID!, $after: ID) { deploymentEvents(deploymentId: $id, afterEventId: $after) { status eventId } }`;
    const { deployment } = await mutate('deployService', '', { s: id });
    const first = subscribe(api.url, user.accessToken, EVENTS, { id: deployment.id }, 'deploymentEvents');
    const [seen] = await first.waitFor((e) => e.length >= 1, 10_000);
    await first.close();
    await waitFor('the rollout to start', async () => (await api.app.db.deploymentEvent.count({ where: { deploymentId: deployment.id, status: 'DEPLOYING' } })) > 0, 60_000, 50);
    const resumed = subscribe(api.url, user.accessToken, EVENTS, { id: deployment.id, after: (seen as any).eventId }, 'deploymentEvents');
    const events = await resumed.waitFor((e) => e.some((x: any) => ['RUNNING', 'FAILED'].includes(x.status)));
    await resumed.close();
    const stored = await api.app.db.deploymentEvent.findMany({ where: { deploymentId: deployment.id }, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] });
    const after = stored.slice(stored.findIndex((e) => e.id === (seen as any).eventId) + 1);
    expect(after.map((e) => e.status)).toContain('RUNNING');
    expect(events).toEqual(after.map((e) => ({ status: e.status, eventId: e.id })));
  });

  it('a service whose health check fails never becomes RUNNING', async () => {
    const id = await createService(uniqueName('broken'), broken);
    const { deployment } = await mutate('deployService', '', { s: id });
    const final = await waitForDeployment(deployment.id);
    expect(final.status).toBe('FAILED');
    expect(final.events.map((e: any) => e.status)).not.toContain('RUNNING');
    expect(final.reason).toBeTruthy();
    const state = await serviceState(id);
    expect(state.status).toBe('FAILED');
    expect(state.currentDeployment).toBeNull();
    expect(await tasksOf(id)).toHaveLength(0);
  });
});

describe('updates and rollbacks', () => {
  it('updates with zero failed requests, then survives a broken version without disturbing the running one', async () => {
    const name = uniqueName('web');
    const id = await createService(name, v1);
    const first = await waitForDeployment((await mutate('deployService', '', { s: id })).deployment.id);
    expect(first.status).toBe('RUNNING');

    const loop = await startRequestLoop(network(), name, cleanup);
    await waitForRequests(loop, (seen) => seen.bodies.includes('version one'));
    const second = await waitForDeployment((await mutate('deployService', '$image: String', { s: id, image: v2 })).deployment.id);
    expect(second.status).toBe('RUNNING');
    await waitForRequests(loop, (seen) => seen.bodies.at(-1) === 'version two');

    const bad = await waitForDeployment((await mutate('deployService', '$image: String', { s: id, image: broken })).deployment.id);
    expect(bad.status).toBe('FAILED');
    expect(bad.reason).toMatch(/roll|health|deadline|fail/i);
    const result = await loop.stop();
    expect(result.failures).toEqual([]);
    expect(result.bodies.at(-1)).toBe('version two');
    const state = await serviceState(id);
    expect(state.currentDeployment).toEqual({ id: second.id, image: v2 });
    expect(state.status).toBe('RUNNING');

    // Manual rollback to the first deployment, named explicitly.
    const rollback = await waitForDeployment((await mutate('rollbackService', '$toDeploymentId: ID', { s: id, toDeploymentId: first.id })).deployment.id);
    expect(rollback).toMatchObject({ status: 'RUNNING', kind: 'ROLLBACK', image: v1 });
    const probe = await runProbeContainer(network(), ncGet(name));
    expect(probe.stdout).toContain('version one');
    expect((await serviceState(id)).statusHistory.map((h: any) => h.toStatus)).toContain('ROLLING_BACK');
    expect(await tasksOf(id)).toHaveLength(1);
  });
});

describe('lifecycle', () => {
  it('stops and starts keeping configuration, scales to 3 and back, and restarts with new tasks', async () => {
    const name = uniqueName('life');
    const id = await createService(name, v1);
    await api.gql(`mutation($id: ID!) { updateService(id: $id, input: { env: [{ name: "KEEP", value: "me" }] }) { __typename } }`, { id }, { token: user.accessToken });
    expect((await waitForDeployment((await mutate('deployService', '', { s: id })).deployment.id)).status).toBe('RUNNING');

    expect((await waitForDeployment((await mutate('stopService', '', { s: id })).deployment.id)).status).toBe('COMPLETED');
    expect(await tasksOf(id)).toHaveLength(0);
    let state = await serviceState(id);
    expect(state.status).toBe('STOPPED');
    expect(state.env).toEqual([{ name: 'KEEP' }]);

    expect((await waitForDeployment((await mutate('startService', '', { s: id })).deployment.id)).status).toBe('RUNNING');
    expect((await serviceState(id)).status).toBe('RUNNING');
    const [container] = await tasksOf(id);
    const env = (await testDocker.getContainer(container.containerId!).inspect()).Config.Env;
    expect(env).toContain('KEEP=me');

    expect((await waitForDeployment((await mutate('scaleService', '$replicas: Int!', { s: id, replicas: 3 })).deployment.id)).status).toBe('RUNNING');
    expect((await tasksOf(id)).filter((t) => t.state === 'running')).toHaveLength(3);
    expect((await waitForDeployment((await mutate('scaleService', '$replicas: Int!', { s: id, replicas: 1 })).deployment.id)).status).toBe('RUNNING');
    expect(await tasksOf(id)).toHaveLength(1);

    const before = (await tasksOf(id)).map((t) => t.id);
    expect((await waitForDeployment((await mutate('restartService', '', { s: id })).deployment.id)).status).toBe('RUNNING');
    const after = (await tasksOf(id)).map((t) => t.id);
    expect(after).toHaveLength(1);
    expect(after[0]).not.toBe(before[0]);

    const list = await api.gql(`query($id: ID!) { deployments(serviceId: $id, first: 20) { edges { node { kind status triggeredBy { id } } } } }`, { id }, { token: user.accessToken });
    expect(list.data.deployments.edges.map((e: any) => e.node.kind)).toEqual(['RESTART', 'SCALE', 'SCALE', 'START', 'STOP', 'DEPLOY']);
    expect(list.data.deployments.edges.every((e: any) => e.node.triggeredBy.id === user.id)).toBe(true);
  });

  it('deleting a service removes its Swarm service and keeps its history', async () => {
    const id = await createService(uniqueName('gone'), v1);
    expect((await waitForDeployment((await mutate('deployService', '', { s: id })).deployment.id)).status).toBe('RUNNING');
    await api.gql(`mutation($id: ID!) { deleteService(id: $id) { __typename } }`, { id }, { token: user.accessToken });
    const deadline = Date.now() + 30_000;
    while (await api.app.orchestrator.findServiceByName(swarmServiceName(id))) {
      if (Date.now() > deadline) throw new Error('Swarm service not removed');
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await api.app.db.deployment.count({ where: { serviceId: id } })).toBe(1);
  });
});

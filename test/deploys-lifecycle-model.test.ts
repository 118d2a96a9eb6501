// What a scale replaces (nothing that runs) and what the service says about configuration that is not
// running (pendingChanges), through the GraphQL API onto the real swarm, controller in-process.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { buildTestImage, TEST_APP_PORT } from './helpers/images.js';
import { SwarmCleanup, testDocker, uniqueName } from './helpers/swarm.js';
import { swarmServiceName } from '../src/modules/deployments/spec.js';

let api: TestApi;
let user: TestUser;
const cleanup = new SwarmCleanup();
const tag = uniqueName('convoy-test-model');
let v1: string, v2: string;

beforeAll(async () => {
  // A short deadline: one test waits for a scale that cannot complete.
  api = await startTestApi({ ...DEPLOY_TEST_SETTINGS, CONVOY_DEPLOY_TIMEOUT_SECONDS: '12' }, { controller: true });
  user = await api.register();
  [v1, v2] = await Promise.all([buildTestImage(`${tag}:v1`, { body: 'version one' }), buildTestImage(`${tag}:v2`, { body: 'version two' })]);
});
afterAll(async () => {
  await cleanup.run();
  await api?.close();
});

const HEALTH = { type: 'HTTP', path: '/health', port: TEST_APP_PORT, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 };
const SERVICE_FIELDS = `env { name value } source { image } replicas pendingChanges currentDeployment { id image }`;

async function gql(query: string, variables: Record<string, unknown>) {
  const result = await api.gql(query, variables, { token: user.accessToken });
  expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
  return result.data;
}

async function createService(image: string, env: { name: string; value: string }[], extra: Record<string, unknown> = {}) {
  const data = await gql(`mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on Service { id } ... on Error { message } } }`, { i: { name: uniqueName('model'), source: { image }, healthCheck: HEALTH, env, ...extra } });
  expect(data.createService.__typename, JSON.stringify(data)).toBe('Service');
  return data.createService.id as string;
}

/** Runs a lifecycle mutation and waits for its deployment to finish; returns the finished deployment. */
async function run(mutation: string, serviceId: string, variables: Record<string, unknown> = {}) {
  const args = Object.keys(variables).map((k) => `, $${k}: ${typeof variables[k] === 'number' ? 'Int!' : 'ID'}`).join('');
  const pass = Object.keys(variables).map((k) => `, ${k}: $${k}`).join('');
  const data = await gql(`mutation($s: ID!${args}) { ${mutation}(serviceId: $s${pass}) { __typename ... on Deployment { id } ... on Error { message } } }`, { s: serviceId, ...variables });
  expect(data[mutation].__typename, JSON.stringify(data)).toBe('Deployment');
  const deadline = Date.now() + 90_000;
  for (;;) {
    const { deployment } = await gql(`query($id: ID!) { deployment(id: $id) { id kind status replicas reason } }`, { id: data[mutation].id });
    if (['RUNNING', 'FAILED', 'COMPLETED'].includes(deployment.status)) return deployment;
    if (Date.now() > deadline) throw new Error(`deployment ${deployment.id} still ${deployment.status}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function service(id: string) {
  return (await gql(`query($id: ID!) { service(id: $id) { ${SERVICE_FIELDS} } }`, { id })).service;
}

/** Every task Swarm has for the service, shut down ones included. */
async function allTasks(serviceId: string) {
  const swarm = await api.app.orchestrator.findServiceByName(swarmServiceName(serviceId));
  return swarm ? api.app.orchestrator.listTasks(swarm.id) : [];
}

const ids = (tasks: { id: string }[]) => tasks.map((t) => t.id).sort();
const live = (tasks: Awaited<ReturnType<typeof allTasks>>) => tasks.filter((t) => t.desiredState === 'running' && t.state === 'running');

async function containerEnv(serviceId: string): Promise<string[]> {
  const [task] = live(await allTasks(serviceId));
  return (await testDocker.getContainer(task.containerId!).inspect()).Config.Env ?? [];
}

describe('scaling', () => {
  it('adds tasks next to the running one when scaling up and keeps some of them when scaling down', async () => {
    const id = await createService(v1, []);
    expect((await run('deployService', id)).status).toBe('RUNNING');
    const [original] = live(await allTasks(id));
    expect(original).toBeTruthy();

    const up = await run('scaleService', id, { replicas: 3 });
    expect(up).toMatchObject({ kind: 'SCALE', status: 'RUNNING', replicas: 3 });
    const afterUp = await allTasks(id);
    // The original task still runs, and nothing was shut down: two tasks were added, none replaced.
    expect(live(afterUp).map((t) => t.id)).toContain(original.id);
    expect(live(afterUp)).toHaveLength(3);
    expect(afterUp.filter((t) => t.desiredState !== 'running')).toEqual([]);

    const three = ids(live(afterUp));
    const down = await run('scaleService', id, { replicas: 1 });
    expect(down).toMatchObject({ kind: 'SCALE', status: 'RUNNING', replicas: 1 });
    const afterDown = await allTasks(id);
    // One of the three keeps running; no task was created for the scale down.
    expect(live(afterDown)).toHaveLength(1);
    expect(three).toContain(live(afterDown)[0].id);
    expect(ids(afterDown).every((taskId) => three.includes(taskId))).toBe(true);

    const state = await service(id);
    expect(state.currentDeployment.id).toBe(down.id);
    expect(state.pendingChanges).toEqual([]);
  });

  it('a scale that cannot complete goes back to the replica count that ran, keeping the running task', async () => {
    // A port bound on the node: a second task cannot be placed on this one-node swarm.
    const published = 20_000 + Math.floor(Math.random() * 20_000);
    const id = await createService(v1, [], { ports: [{ target: TEST_APP_PORT, published, mode: 'HOST' }] });
    const deployed = await run('deployService', id);
    expect(deployed.status).toBe('RUNNING');
    const [original] = live(await allTasks(id));

    const scale = await run('scaleService', id, { replicas: 2 });
    expect(scale).toMatchObject({ kind: 'SCALE', status: 'FAILED' });
    // Swarm was asked for the second task, which could not be placed.
    expect(scale.reason).toMatch(/1\/2 replicas running; .*replica \d pending/);
    const swarm = await api.app.orchestrator.findServiceByName(swarmServiceName(id));
    expect(swarm!.replicas).toBe(1);
    expect(live(await allTasks(id)).map((t) => t.id)).toEqual([original.id]);
    const state = await service(id);
    expect(state.currentDeployment.id).toBe(deployed.id);
    // The service asked for 2; 1 runs: a deploy would apply the difference.
    expect(state.replicas).toBe(2);
    expect(state.pendingChanges).toEqual(['replicas']);
  });
});

describe('configuration that is not running', () => {
  it('updateService changes nothing running: pendingChanges names env until a deploy applies it', async () => {
    const id = await createService(v1, [{ name: 'GREETING', value: 'hello' }]);
    expect((await service(id)).pendingChanges).toBeNull();
    expect((await run('deployService', id)).status).toBe('RUNNING');
    expect((await service(id)).pendingChanges).toEqual([]);
    const before = ids(live(await allTasks(id)));

    const data = await gql(`mutation($id: ID!) { updateService(id: $id, input: { env: [{ name: "GREETING", value: "bonjour" }] }) { __typename ... on Service { pendingChanges } } }`, { id });
    expect(data.updateService).toEqual({ __typename: 'Service', pendingChanges: ['env'] });
    expect((await service(id)).pendingChanges).toEqual(['env']);
    expect(ids(live(await allTasks(id)))).toEqual(before);
    expect(await containerEnv(id)).toContain('GREETING=hello');

    expect((await run('deployService', id)).status).toBe('RUNNING');
    expect((await service(id)).pendingChanges).toEqual([]);
    expect(await containerEnv(id)).toContain('GREETING=bonjour');
  });

  it('after a rollback, pendingChanges names the configuration the service holds but does not run', async () => {
    const id = await createService(v1, [{ name: 'GREETING', value: 'hello' }]);
    const first = await run('deployService', id);
    expect(first.status).toBe('RUNNING');
    await gql(`mutation($id: ID!) { updateService(id: $id, input: { env: [{ name: "GREETING", value: "bonjour" }] }) { __typename } }`, { id });
    await gql(`mutation($s: ID!, $image: String) { deployService(serviceId: $s, image: $image) { __typename } }`, { s: id, image: v2 });
    await expect.poll(async () => (await service(id)).currentDeployment?.image, { timeout: 90_000, interval: 300 }).toBe(v2);
    expect((await service(id)).pendingChanges).toEqual([]);

    const rollback = await run('rollbackService', id, { toDeploymentId: first.id });
    expect(rollback).toMatchObject({ kind: 'ROLLBACK', status: 'RUNNING' });
    expect(await containerEnv(id)).toContain('GREETING=hello');
    // The service keeps its configuration (the next deploy applies it) and says it is not what runs.
    const state = await service(id);
    expect(state.currentDeployment).toEqual({ id: rollback.id, image: v1 });
    expect(state.source.image).toBe(v2);
    expect(state.env).toEqual([{ name: 'GREETING', value: 'bonjour' }]);
    expect(state.pendingChanges).toEqual(['source', 'env']);

    // Scaling the rolled-back deployment keeps what runs: still v1 with its env, still pending.
    expect((await run('scaleService', id, { replicas: 2 })).status).toBe('RUNNING');
    expect((await service(id)).pendingChanges).toEqual(['source', 'env']);
    expect(await containerEnv(id)).toContain('GREETING=hello');
  });
});

// Of the deployments of a service, the one created last wins: an older deployment whose job runs late
// (retried, stalled and taken over by another controller, released late) never applies its spec over a
// newer one, and never becomes the service's current deployment. The jobs are run here by calling the
// controller's runDeployment directly, in the order a crashed controller can leave them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { buildTestImage, TEST_APP_PORT } from './helpers/images.js';
import { testDocker, uniqueName } from './helpers/swarm.js';
import { runDeployment } from '../src/modules/deployments/runner.js';
import { swarmServiceName } from '../src/modules/deployments/spec.js';

let api: TestApi;
let user: TestUser;
let app: string, slow: string;
const tag = uniqueName('convoy-test-newest');

beforeAll(async () => {
  api = await startTestApi(DEPLOY_TEST_SETTINGS);
  user = await api.register();
  [app, slow] = await Promise.all([
    buildTestImage(`${tag}:app`, { body: 'newest wins' }),
    buildTestImage(`${tag}:slow`, { body: 'slow start', healthyAfterMs: 3000 }),
  ]);
});
afterAll(async () => {
  await api?.close();
});

const HEALTH = { type: 'HTTP', path: '/health', port: TEST_APP_PORT, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 };

async function gql(query: string, variables: Record<string, unknown>) {
  const result = await api.gql(query, variables, { token: user.accessToken });
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  return result.data;
}

async function createService(image: string, env: string, healthCheck: Record<string, unknown> = HEALTH) {
  const data = await gql(`mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on Service { id } ... on Error { message } } }`, {
    i: { name: uniqueName('newest'), source: { image }, healthCheck, env: [{ name: 'VERSION', value: env }] },
  });
  expect(data.createService.__typename).toBe('Service');
  return data.createService.id as string;
}

/** Changes the service's env and queues a deploy of it (nothing runs it: no controller in this file). */
async function updateAndDeploy(serviceId: string, env?: string): Promise<string> {
  if (env) await gql(`mutation($id: ID!, $v: String!) { updateService(id: $id, input: { env: [{ name: "VERSION", value: $v }] }) { __typename } }`, { id: serviceId, v: env });
  const data = await gql(`mutation($s: ID!) { deployService(serviceId: $s) { __typename ... on Deployment { id } ... on Error { message } } }`, { s: serviceId });
  expect(data.deployService.__typename).toBe('Deployment');
  return data.deployService.id as string;
}

/** What Swarm runs for the service: the env and deployment label of its task template. */
async function swarmSpec(serviceId: string) {
  const info = await api.app.orchestrator.findServiceByName(swarmServiceName(serviceId));
  if (!info) return null;
  const spec = (await testDocker.getService(info.id).inspect()).Spec;
  return { env: spec.TaskTemplate.ContainerSpec.Env as string[], label: spec.TaskTemplate.ContainerSpec.Labels?.['convoy.deployment-id'] ?? spec.Labels?.['convoy.deployment-id'], services: (await api.app.orchestrator.findServicesByLabel('convoy.service-id', serviceId)).length };
}

const deployment = (id: string) => api.app.db.deployment.findUniqueOrThrow({ where: { id } });
const service = (id: string) => api.app.db.service.findUniqueOrThrow({ where: { id } });

describe('the newest deployment wins', () => {
  it('an older deployment whose job runs after a newer one finished never applies: it ends SUPERSEDED, naming the newer one', async () => {
    const id = await createService(app, 'a');
    const a = await updateAndDeploy(id);
    const b = await updateAndDeploy(id, 'b');

    // B's job ran first (A's was stalled with a killed controller, or released late).
    await runDeployment(api.app, b);
    expect((await deployment(b)).status).toBe('RUNNING');
    const before = await swarmSpec(id);
    expect(before?.env).toContain('VERSION=b');

    await runDeployment(api.app, a);
    const lost = await deployment(a);
    expect(lost.status).toBe('SUPERSEDED');
    expect(lost.reason).toBe(`a newer deployment ${b} was queued`);
    expect(lost.swarmServiceId).toBeNull();
    const after = await swarmSpec(id);
    expect(after).toEqual(before);
    expect(after?.env).not.toContain('VERSION=a');
    expect((await service(id)).currentDeploymentId).toBe(b);
    expect((await deployment(b)).status).toBe('RUNNING');
    expect((await service(id)).status).toBe('RUNNING');
  });

  it('a deployment already rolling out when a newer one is queued does not become current when it turns healthy', async () => {
    const id = await createService(slow, 'a', { ...HEALTH, startPeriodSeconds: 10 });
    const a = await updateAndDeploy(id);
    const rollingOut = runDeployment(api.app, a);
    // Wait until A's spec is in Swarm and A watches its slow start, then queue B.
    for (const deadline = Date.now() + 20_000; !(await swarmSpec(id)) || (await deployment(a)).status !== 'DEPLOYING'; ) {
      if (Date.now() > deadline) throw new Error('A never reached Swarm');
      await new Promise((r) => setTimeout(r, 100));
    }
    const b = await updateAndDeploy(id, 'b');
    await rollingOut;

    const lost = await deployment(a);
    expect(lost.status).toBe('SUPERSEDED');
    expect(lost.reason).toBe(`a newer deployment ${b} was queued`);
    expect((await service(id)).currentDeploymentId).toBeNull();

    await runDeployment(api.app, b);
    expect((await deployment(b)).status).toBe('RUNNING');
    expect((await service(id)).currentDeploymentId).toBe(b);
    expect((await swarmSpec(id))?.env).toContain('VERSION=b');
    expect((await deployment(a)).status).toBe('SUPERSEDED');
  });

  it('a stop queued after a deploy wins over it: the deploy never applies and the service stops', async () => {
    const id = await createService(app, 'a');
    const first = await updateAndDeploy(id);
    await runDeployment(api.app, first);
    expect((await deployment(first)).status).toBe('RUNNING');

    const deploy = await updateAndDeploy(id, 'b');
    const stopped = await gql(`mutation($id: ID!) { stopService(serviceId: $id) { __typename ... on Deployment { id } ... on Error { message } } }`, { id });
    expect(stopped.stopService.__typename).toBe('Deployment');
    const stop = stopped.stopService.id as string;

    await runDeployment(api.app, deploy);
    expect((await deployment(deploy)).status).toBe('SUPERSEDED');
    expect((await swarmSpec(id))?.env).toContain('VERSION=a');

    await runDeployment(api.app, stop);
    expect((await deployment(stop)).status).toBe('COMPLETED');
    expect((await service(id)).status).toBe('STOPPED');
    expect((await service(id)).currentDeploymentId).toBe(first);
  });
});

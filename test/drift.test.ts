// Drift repair: a Swarm service changed by hand (`docker service scale`, an env added) is put back to the
// current deployment's spec under CONVOY_DRIFT_POLICY=recreate, and only recorded under mark.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type Docker from 'dockerode';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { buildTestImage, TEST_APP_PORT } from './helpers/images.js';
import { freeHostPort, SwarmCleanup, testDocker, testServiceSpec, uniqueName } from './helpers/swarm.js';
import { SwarmOrchestrator } from '../src/platform/orchestrator/swarm.js';
import { specDrift } from '../src/platform/orchestrator/index.js';
import { waitFor } from './helpers/wait.js';
import { swarmServiceName } from '../src/modules/deployments/spec.js';

const HEALTH = { type: 'HTTP', path: '/health', port: TEST_APP_PORT, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 };
const tag = uniqueName('convoy-test-drift');
let image: string;
let recreate: TestApi, mark: TestApi;
let alice: TestUser, bob: TestUser;

beforeAll(async () => {
  [image, recreate, mark] = await Promise.all([
    buildTestImage(`${tag}:app`, { body: 'drift app' }),
    startTestApi({ ...DEPLOY_TEST_SETTINGS, CONVOY_RECONCILE_INTERVAL_SECONDS: '1', CONVOY_DRIFT_POLICY: 'recreate' }, { controller: true }),
    startTestApi({ ...DEPLOY_TEST_SETTINGS, CONVOY_RECONCILE_INTERVAL_SECONDS: '1', CONVOY_DRIFT_POLICY: 'mark' }, { controller: true }),
  ]);
  [alice, bob] = await Promise.all([recreate.register(), mark.register()]);
});
const cleanup = new SwarmCleanup();
afterAll(async () => {
  await Promise.allSettled([recreate?.close(), mark?.close()]);
  await cleanup.run();
});

async function deployTwoReplicas(api: TestApi, user: TestUser): Promise<string> {
  const created = await api.gql(
    `mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on Service { id } ... on Error { message } } }`,
    { i: { name: uniqueName('drift'), source: { image }, healthCheck: HEALTH, replicas: 2, env: [{ name: 'GREETING', value: 'hello' }] } },
    { token: user.accessToken },
  );
  const id = created.data.createService.id as string;
  const deployed = await api.gql(`mutation($s: ID!) { deployService(serviceId: $s) { ... on Deployment { id } } }`, { s: id }, { token: user.accessToken });
  const deploymentId = deployed.data.deployService.id as string;
  await waitFor('the deployment to run', async () => (await api.app.db.deployment.findUniqueOrThrow({ where: { id: deploymentId } })).status === 'RUNNING', 90_000, 200);
  return id;
}

async function swarmService(serviceId: string): Promise<Docker.Service> {
  return (await testDocker.listServices({ filters: { name: [swarmServiceName(serviceId)] } })).find((s) => s.Spec?.Name === swarmServiceName(serviceId))!;
}

/** What `docker service update` does: the spec as it is, with one change. */
async function changeByHand(serviceId: string, change: (spec: Docker.ServiceSpec) => void) {
  const service = await swarmService(serviceId);
  const spec = structuredClone(service.Spec!);
  change(spec);
  await testDocker.getService(service.ID).update({ version: service.Version!.Index, ...spec });
}

const replicasOf = async (serviceId: string) => (await swarmService(serviceId)).Spec!.Mode!.Replicated!.Replicas;
const envOf = async (serviceId: string) => ((await swarmService(serviceId)).Spec!.TaskTemplate as Docker.ContainerTaskSpec).ContainerSpec!.Env ?? [];

async function runningTaskIds(serviceId: string): Promise<string[]> {
  const tasks = await testDocker.listTasks({ filters: { service: [swarmServiceName(serviceId)], 'desired-state': ['running'] } });
  return tasks.filter((t: { Status?: { State?: string } }) => t.Status?.State === 'running').map((t: { ID: string }) => t.ID).sort();
}

async function driftReasons(api: TestApi, serviceId: string): Promise<string[]> {
  const rows = await api.app.db.serviceStatusChange.findMany({ where: { serviceId, reason: { contains: 'outside Convoy' } }, orderBy: { createdAt: 'asc' } });
  return rows.map((r) => r.reason);
}

describe('drift policy recreate', () => {
  it('puts a hand-scaled service back to its replica count without replacing the running tasks, and records it', async () => {
    const id = await deployTwoReplicas(recreate, alice);
    await waitFor('two running tasks', async () => (await runningTaskIds(id)).length === 2, 30_000, 200);
    const before = await runningTaskIds(id);
    await changeByHand(id, (spec) => (spec.Mode = { Replicated: { Replicas: 3 } }));

    await waitFor('Swarm back at 2 replicas', async () => (await replicasOf(id)) === 2, 30_000, 200);
    // Recorded right after the update that restored it.
    await waitFor('the repair recorded', async () => (await driftReasons(recreate, id)).some((r) => r.includes('replicas') && r.includes('re-applied')), 5000, 100);
    // The two tasks that ran before still run: only the extra one went.
    await waitFor('the extra task gone', async () => (await runningTaskIds(id)).length === 2, 30_000, 200);
    expect(await runningTaskIds(id)).toEqual(before);
    const service = await recreate.app.db.service.findUniqueOrThrow({ where: { id } });
    expect(service.status).toBe('RUNNING');
  });

  it('restores an env changed by hand', async () => {
    const id = await deployTwoReplicas(recreate, alice);
    await changeByHand(id, (spec) => {
      const container = (spec.TaskTemplate as Docker.ContainerTaskSpec).ContainerSpec!;
      container.Env = [...(container.Env ?? []).filter((e) => !e.startsWith('GREETING=')), 'GREETING=changed', 'INJECTED=1'];
    });
    await waitFor('the env restored', async () => {
      const env = await envOf(id);
      return env.includes('GREETING=hello') && !env.some((e) => e.startsWith('INJECTED='));
    }, 30_000, 200);
    await waitFor('the repair recorded', async () => (await driftReasons(recreate, id)).some((r) => r.includes('env')), 5000, 100);
  });
});

describe('drift policy mark', () => {
  it('records a hand scale once, naming the field, and leaves Swarm as it is', async () => {
    const id = await deployTwoReplicas(mark, bob);
    await changeByHand(id, (spec) => (spec.Mode = { Replicated: { Replicas: 3 } }));
    await waitFor('the drift recorded', async () => (await driftReasons(mark, id)).length > 0, 30_000, 200);
    // Several reconcile runs later: still 3, and recorded once.
    await new Promise((r) => setTimeout(r, 3500));
    expect(await replicasOf(id)).toBe(3);
    const reasons = await driftReasons(mark, id);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toContain('replicas');
    const { data } = await mark.gql(`query($id: ID!) { service(id: $id) { status statusHistory(last: 5) { reason } } }`, { id }, { token: bob.accessToken });
    expect(data.service.status).toBe('RUNNING');
    expect(data.service.statusHistory.map((h: { reason: string }) => h.reason)).toContain(reasons[0]);
  });
});

describe('what Swarm normalises', () => {
  it('reads back a spec Convoy created as no drift: networks by name, host ports, constraints, env with "="', async () => {
    const orchestrator = new SwarmOrchestrator(testDocker);
    const networkName = cleanup.network(uniqueName('drift-net'));
    await orchestrator.ensureNetwork(networkName, {});
    const spec = testServiceSpec({
      name: uniqueName('drift-read'),
      image,
      deploymentId: 'd1',
      networkName,
      replicas: 0,
      hostPort: await freeHostPort(),
      env: { A: 'x=y', EMPTY: '' },
      placementConstraints: ['node.role == manager'],
    });
    spec.networks = [{ name: networkName, aliases: ['web', 'www'] }];
    const { id } = await orchestrator.createService(spec);
    cleanup.service(id);
    expect(specDrift(spec, await orchestrator.inspectOwnedSpec(id))).toEqual([]);
    // Failover's exclusions are not drift either.
    const [node] = await orchestrator.listNodes();
    await orchestrator.setExcludedNodes(id, [node.id]);
    expect(specDrift(spec, await orchestrator.inspectOwnedSpec(id))).toEqual([]);
  });
});

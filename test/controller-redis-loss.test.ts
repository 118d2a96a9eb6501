// Redis restarted empty under a running controller (issue 19, item 2): its job schedulers come back by
// themselves, drift is repaired again, and a deployment PostgreSQL says is QUEUED (with no job left in
// Redis) runs. The controller is a child process; Redis is a private one the test kills.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { buildTestImage, TEST_APP_PORT } from './helpers/images.js';
import { testDocker, uniqueName } from './helpers/swarm.js';
import { waitFor } from './helpers/wait.js';
import { startConvoyProcess, startPrivateRedis, type ConvoyProcess, type PrivateRedis } from './helpers/private-services.js';
import { QUEUES } from '../src/platform/queue/queues.js';
import { swarmServiceName } from '../src/modules/deployments/spec.js';
import { DeploymentKind, DeploymentStatus } from '../src/generated/prisma/enums.js';

const HEALTH = { type: 'HTTP', path: '/health', port: TEST_APP_PORT, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 };
const SETTINGS = { ...DEPLOY_TEST_SETTINGS, CONVOY_RECONCILE_INTERVAL_SECONDS: '1', CONVOY_WORKER_SWEEP_SECONDS: '2' };
let redis: PrivateRedis;
let api: TestApi;
let controller: ConvoyProcess;
let user: TestUser;
let image: string;

beforeAll(async () => {
  redis = await startPrivateRedis();
  [api, image] = await Promise.all([startTestApi({ ...SETTINGS, REDIS_URL: redis.url }), buildTestImage(`${uniqueName('convoy-test-redisloss')}:app`, { body: 'survives redis' })]);
  user = await api.register();
  controller = startConvoyProcess('controller', {
    ...SETTINGS,
    NODE_ENV: 'test',
    DATABASE_URL: api.config.databaseUrl,
    REDIS_URL: redis.url,
    REDIS_PREFIX: api.config.redisPrefix,
    CONVOY_SECRET_KEY: api.config.secretKey,
    MIGRATE_ON_START: 'false',
  });
});
afterAll(async () => {
  await controller?.stop();
  await api?.close();
  await redis?.close();
});

async function schedulersPresent(): Promise<boolean> {
  const connection = { url: redis.url, maxRetriesPerRequest: 1 };
  const queues = [QUEUES.maintenance, QUEUES.workerHealth].map((name) => new Queue(name, { connection, prefix: `${api.config.redisPrefix}:bull` }));
  for (const queue of queues) queue.on('error', () => {});
  try {
    const [reconcile, sweep] = await Promise.all([queues[0].getJobScheduler('reconcile'), queues[1].getJobScheduler('worker-health')]);
    return !!reconcile && !!sweep;
  } catch {
    return false;
  } finally {
    await Promise.all(queues.map((q) => q.close()));
  }
}

async function deploymentStatus(id: string) {
  return (await api.app.db.deployment.findUniqueOrThrow({ where: { id } })).status;
}

describe('Redis restarted empty under a running controller', () => {
  it('re-creates the schedulers, repairs drift again and runs a deployment left QUEUED', async () => {
    const created = await api.gql(`mutation($i: CreateServiceInput!) { createService(input: $i) { ... on Service { id } } }`, { i: { name: uniqueName('redisloss'), source: { image }, healthCheck: HEALTH } }, { token: user.accessToken });
    const serviceId = created.data.createService.id as string;
    const deployed = await api.gql(`mutation($s: ID!) { deployService(serviceId: $s) { ... on Deployment { id } } }`, { s: serviceId }, { token: user.accessToken });
    const first = deployed.data.deployService.id as string;
    await waitFor('the first deployment to run', async () => (await deploymentStatus(first)) === 'RUNNING', 90_000, 200);
    await waitFor('the schedulers', schedulersPresent, 30_000, 200);

    await redis.restartEmpty();
    // Margins for a loaded 2-core machine; it takes about 3 s when idle.
    await waitFor('the schedulers re-created', schedulersPresent, 30_000, 200);
    await waitFor('the controller to say it re-created them', () => controller.output().includes('job scheduler was missing'), 10_000, 100);

    // Drift is repaired again: the Swarm service removed by hand comes back.
    const swarm = (await testDocker.listServices({ filters: { name: [swarmServiceName(serviceId)] } })).find((s) => s.Spec?.Name === swarmServiceName(serviceId))!;
    await testDocker.getService(swarm.ID).remove();
    await waitFor('the Swarm service recreated', async () => !!(await api.app.orchestrator.findServiceByName(swarmServiceName(serviceId))), 30_000, 200);
    await waitFor('the recreating deployment to run', async () => {
      const latest = await api.app.db.deployment.findFirst({ where: { serviceId }, orderBy: { createdAt: 'desc' } });
      return latest?.id !== first && latest?.status === 'RUNNING';
    }, 60_000, 200);

    // A deployment PostgreSQL holds as QUEUED whose job Redis lost (as when Redis lost it after the API
    // accepted it): the reconciler queues it again and it runs.
    await redis.restartEmpty();
    const service = await api.app.db.service.findUniqueOrThrow({ where: { id: serviceId }, include: { currentDeployment: true } });
    const current = service.currentDeployment!;
    const queued = await api.app.db.deployment.create({
      data: {
        serviceId,
        kind: DeploymentKind.REDEPLOY,
        status: DeploymentStatus.QUEUED,
        image: current.image,
        replicas: 2,
        config: current.config as object,
        reason: 'queued while Redis lost its data',
        previousDeploymentId: current.id,
        events: { create: { status: DeploymentStatus.QUEUED, message: 'queued while Redis lost its data' } },
      },
    });
    await waitFor('the QUEUED deployment to run', async () => (await deploymentStatus(queued.id)) === 'RUNNING', 60_000, 200);
    const tasks = await api.app.orchestrator.listTasks((await api.app.orchestrator.findServiceByName(swarmServiceName(serviceId)))!.id);
    expect(tasks.filter((t) => t.desiredState === 'running' && t.deploymentId === queued.id)).toHaveLength(2);
  });
});

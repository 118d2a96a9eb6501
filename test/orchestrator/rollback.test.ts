// A bad update is rolled back by Swarm itself while the old version keeps answering; a good one can be
// rolled back on request.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SwarmOrchestrator } from '../../src/platform/orchestrator/swarm.js';
import { buildTestImage, httpHealthCheck, removeTestImages } from '../helpers/images.js';
import {
  inMs,
  runProbeContainer,
  ncGet,
  startRequestLoop,
  SwarmCleanup,
  testDocker,
  testServiceSpec,
  uniqueName,
  waitForRequests,
} from '../helpers/swarm.js';

const orchestrator = new SwarmOrchestrator(testDocker);
const cleanup = new SwarmCleanup();
const tags = {
  good: `convoy-test/rollback:${uniqueName('good')}`,
  better: `convoy-test/rollback:${uniqueName('better')}`,
  broken: `convoy-test/rollback:${uniqueName('broken')}`,
};
let networkName: string;

beforeAll(async () => {
  networkName = cleanup.network(uniqueName('rb-net'));
  await orchestrator.ensureNetwork(networkName, { 'convoy.test': 'true' });
  await buildTestImage(tags.good, { body: 'good version' });
  await buildTestImage(tags.better, { body: 'better version' });
  await buildTestImage(tags.broken, { body: 'broken version', healthy: false });
});

afterAll(async () => {
  await cleanup.run();
  await removeTestImages(Object.values(tags));
});

function specFor(name: string, image: string, deploymentId: string) {
  return testServiceSpec({ name, image, deploymentId, networkName, healthCheck: httpHealthCheck() });
}

async function createHealthyService(name: string, image: string, deploymentId: string): Promise<string> {
  const { id } = await orchestrator.createService(specFor(name, image, deploymentId));
  cleanup.service(id);
  const rollout = await orchestrator.waitForRollout(id, { deploymentId, desiredReplicas: 1, deadline: inMs(60_000) });
  expect(rollout.outcome).toBe('healthy');
  return id;
}

it('rolls back an update whose health check fails, keeping the old version answering throughout', async () => {
  const name = uniqueName('rb');
  const id = await createHealthyService(name, tags.good, 'dep-good');
  const loop = await startRequestLoop(networkName, name, cleanup);
  await waitForRequests(loop, (seen) => seen.bodies.length >= 5);

  await orchestrator.updateService(id, specFor(name, tags.broken, 'dep-broken'));
  const result = await orchestrator.waitForRollout(id, { deploymentId: 'dep-broken', desiredReplicas: 1, deadline: inMs(60_000) });
  const seen = await loop.stop();

  expect(result.outcome).toBe('rolled_back');
  expect(result.reason).toMatch(
    /^update rolled back due to failure or early termination of task [a-z0-9]{25}: task: non-zero exit \(143\): dockerexec: unhealthy container$/,
  );
  expect(seen.failures).toEqual([]);
  // The broken task never became healthy, so it never joined the service's DNS answers.
  expect(new Set(seen.bodies)).toEqual(new Set(['good version']));
  const service = await orchestrator.inspectService(id);
  expect(service).toMatchObject({ image: tags.good, deploymentLabel: 'dep-good', updateStatus: { state: 'rollback_completed' } });
  const afterRollback = await orchestrator.waitForRollout(id, { deploymentId: 'dep-good', desiredReplicas: 1, deadline: inMs(30_000) });
  expect(afterRollback.outcome).toBe('healthy');
  // Swarm's automatic rollback consumes the previous spec: there is nothing left to roll back to.
  await expect(orchestrator.rollbackService(id)).rejects.toMatchObject({ code: 'CONFLICT' });
});

it('rolls a healthy update back to the previous spec on request', async () => {
  const name = uniqueName('rbm');
  const id = await createHealthyService(name, tags.good, 'dep-1');
  await orchestrator.updateService(id, specFor(name, tags.better, 'dep-2'));
  const update = await orchestrator.waitForRollout(id, { deploymentId: 'dep-2', desiredReplicas: 1, deadline: inMs(60_000) });
  expect(update.outcome).toBe('healthy');
  expect((await runProbeContainer(networkName, ncGet(name))).stdout).toMatch(/\r\n\r\nbetter version\n$/);

  await orchestrator.rollbackService(id);
  const rollback = await orchestrator.waitForRollout(id, { deploymentId: 'dep-1', desiredReplicas: 1, deadline: inMs(60_000) });

  expect(rollback).toEqual({ outcome: 'healthy', reason: '1/1 replicas running' });
  expect(await orchestrator.inspectService(id)).toMatchObject({ image: tags.good, deploymentLabel: 'dep-1' });
  expect((await runProbeContainer(networkName, ncGet(name))).stdout).toMatch(/\r\n\r\ngood version\n$/);
});

it('reports failed when the update policy pauses on failure, with the old version still serving', async () => {
  const name = uniqueName('rbp');
  const id = await createHealthyService(name, tags.good, 'dep-good');
  const pausing = specFor(name, tags.broken, 'dep-broken');
  pausing.update = { ...pausing.update, failureAction: 'pause' };

  await orchestrator.updateService(id, pausing);
  const result = await orchestrator.waitForRollout(id, { deploymentId: 'dep-broken', desiredReplicas: 1, deadline: inMs(60_000) });

  expect(result.outcome).toBe('failed');
  expect(result.reason).toMatch(
    /^update paused due to failure or early termination of task [a-z0-9]{25}: task: non-zero exit \(143\): dockerexec: unhealthy container$/,
  );
  expect(await orchestrator.inspectService(id)).toMatchObject({ deploymentLabel: 'dep-broken', updateStatus: { state: 'paused' } });
  expect((await runProbeContainer(networkName, ncGet(name))).stdout).toMatch(/\r\n\r\ngood version\n$/);
});

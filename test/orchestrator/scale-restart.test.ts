// Scaling changes the number of healthy replicas behind the name; a forced restart replaces every task.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SwarmOrchestrator } from '../../src/platform/orchestrator/swarm.js';
import type { SwarmServiceSpec } from '../../src/platform/orchestrator/orchestrator.js';
import { buildTestImage, httpHealthCheck, removeTestImages } from '../helpers/images.js';
import { inMs, runProbeContainer, SwarmCleanup, testDocker, testServiceSpec, uniqueName } from '../helpers/swarm.js';

const orchestrator = new SwarmOrchestrator(testDocker);
const cleanup = new SwarmCleanup();
const tag = `convoy-test/scale:${uniqueName('v1')}`;
const networkName = uniqueName('scale-net');
const DEPLOYMENT = 'dep-scale-1';
let spec: SwarmServiceSpec;
let serviceId: string;

beforeAll(async () => {
  cleanup.network(networkName);
  await orchestrator.ensureNetwork(networkName, { 'convoy.test': 'true' });
  await buildTestImage(tag, { body: 'scaled app' });
  spec = testServiceSpec({
    name: uniqueName('scale'),
    image: tag,
    deploymentId: DEPLOYMENT,
    networkName,
    healthCheck: httpHealthCheck(),
  });
  serviceId = (await orchestrator.createService(spec)).id;
  cleanup.service(serviceId);
  const rollout = await rollOut(1);
  expect(rollout.outcome).toBe('healthy');
});

afterAll(async () => {
  await cleanup.run();
  await removeTestImages([tag]);
});

function rollOut(desiredReplicas: number) {
  return orchestrator.waitForRollout(serviceId, { deploymentId: DEPLOYMENT, desiredReplicas, deadline: inMs(60_000) });
}

async function runningTasks() {
  return (await orchestrator.listTasks(serviceId)).filter((task) => task.state === 'running');
}

/** The addresses the service name resolves to, seen from the service's network. */
async function resolvedAddresses(): Promise<string[]> {
  const { stdout } = await runProbeContainer(networkName, `nslookup ${spec.name}`);
  const answer = stdout.slice(stdout.indexOf('Name:'));
  return [...answer.matchAll(/^Address:\s*(\S+)$/gm)].map((match) => match[1]);
}

it('scales to 3 healthy replicas behind the name, and back to 1', async () => {
  await orchestrator.updateService(serviceId, { ...spec, replicas: 3 });
  expect(await rollOut(3)).toEqual({ outcome: 'healthy', reason: '3/3 replicas running' });
  const three = await runningTasks();
  expect(three.map((task) => task.slot).sort()).toEqual([1, 2, 3]);
  expect(three.every((task) => task.deploymentId === DEPLOYMENT)).toBe(true);
  expect(await resolvedAddresses()).toHaveLength(3);
  expect((await orchestrator.inspectService(serviceId)).replicas).toBe(3);

  await orchestrator.updateService(serviceId, { ...spec, replicas: 1 });
  expect(await rollOut(1)).toEqual({ outcome: 'healthy', reason: '1/1 replicas running' });
  expect(await runningTasks()).toHaveLength(1);
  expect(await resolvedAddresses()).toHaveLength(1);
});

it('stops every task when scaled to 0', async () => {
  await orchestrator.updateService(serviceId, { ...spec, replicas: 0 });
  expect((await rollOut(0)).outcome).toBe('healthy');
  expect(await runningTasks()).toEqual([]);

  await orchestrator.updateService(serviceId, { ...spec, replicas: 1 });
  expect((await rollOut(1)).outcome).toBe('healthy');
});

it('replaces every task on a forced restart of the same deployment', async () => {
  const before = await runningTasks();
  const versionBefore = (await orchestrator.inspectService(serviceId)).version;

  await orchestrator.updateService(serviceId, spec, { forceRestart: true });
  const rollout = await rollOut(1);

  expect(rollout).toEqual({ outcome: 'healthy', reason: '1/1 replicas running' });
  const after = await runningTasks();
  expect(after).toHaveLength(1);
  expect(after[0].id).not.toBe(before[0].id);
  expect(after[0].containerId).not.toBe(before[0].containerId);
  expect(after[0].deploymentId).toBe(DEPLOYMENT);
  expect((await orchestrator.inspectService(serviceId)).version).toBeGreaterThan(versionBefore);
});

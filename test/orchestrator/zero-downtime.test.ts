// A start-first update swaps the image without a single failed request.
//
// Measured from a probe container on the service's overlay network, by service name (dnsrr), the way the
// edge router reaches apps. Not through a host-mode published port: on one node the new task could never
// bind the port the old task holds, so a start-first update of a host-published service cannot even start
// here (the scheduler leaves the new task pending with "host-mode port already in use").
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SwarmOrchestrator } from '../../src/platform/orchestrator/swarm.js';
import { buildTestImage, httpHealthCheck, removeTestImages } from '../helpers/images.js';
import {
  inMs,
  startRequestLoop,
  SwarmCleanup,
  testDocker,
  testServiceSpec,
  uniqueName,
  waitForRequests,
} from '../helpers/swarm.js';

const orchestrator = new SwarmOrchestrator(testDocker);
const cleanup = new SwarmCleanup();
const tags = { v1: `convoy-test/zdt:${uniqueName('v1')}`, v2: `convoy-test/zdt:${uniqueName('v2')}` };
let networkName: string;

beforeAll(async () => {
  networkName = cleanup.network(uniqueName('zdt-net'));
  await orchestrator.ensureNetwork(networkName, { 'convoy.test': 'true' });
  await buildTestImage(tags.v1, { body: 'version one' });
  await buildTestImage(tags.v2, { body: 'version two' });
});

afterAll(async () => {
  await cleanup.run();
  await removeTestImages(Object.values(tags));
});

it('updates to a new image with start-first order and no failed request', async () => {
  const name = uniqueName('zdt');
  const specFor = (image: string, deploymentId: string) =>
    testServiceSpec({ name, image, deploymentId, networkName, healthCheck: httpHealthCheck() });
  const { id } = await orchestrator.createService(specFor(tags.v1, 'dep-1'));
  cleanup.service(id);
  const first = await orchestrator.waitForRollout(id, { deploymentId: 'dep-1', desiredReplicas: 1, deadline: inMs(60_000) });
  expect(first.outcome).toBe('healthy');

  const loop = await startRequestLoop(networkName, name, cleanup);
  await waitForRequests(loop, (seen) => seen.bodies.length >= 5);

  await orchestrator.updateService(id, specFor(tags.v2, 'dep-2'));
  const update = await orchestrator.waitForRollout(id, { deploymentId: 'dep-2', desiredReplicas: 1, deadline: inMs(60_000) });
  await waitForRequests(loop, (seen) => seen.bodies.slice(-10).every((body) => body === 'version two') && seen.bodies.length > 20);
  const seen = await loop.stop();

  expect(update).toEqual({ outcome: 'healthy', reason: '1/1 replicas running' });
  expect(seen.failures).toEqual([]);
  expect(seen.bodies[0]).toBe('version one');
  expect(seen.bodies.at(-1)).toBe('version two');
  expect(new Set(seen.bodies)).toEqual(new Set(['version one', 'version two']));
  const running = (await orchestrator.listTasks(id)).filter((task) => task.state === 'running');
  expect(running.map((task) => task.deploymentId)).toEqual(['dep-2']);
});

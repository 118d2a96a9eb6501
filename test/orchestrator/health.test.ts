// A rollout is healthy only once Swarm's health check passes; failing or unschedulable services never are.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RolloutProgress } from '../../src/platform/orchestrator/orchestrator.js';
import { SwarmOrchestrator } from '../../src/platform/orchestrator/swarm.js';
import { buildTestImage, httpHealthCheck, removeTestImages } from '../helpers/images.js';
import { freeHostPort, httpGet, inMs, SwarmCleanup, testDocker, testServiceSpec, uniqueName } from '../helpers/swarm.js';

const orchestrator = new SwarmOrchestrator(testDocker);
const cleanup = new SwarmCleanup();
const tags = {
  slow: `convoy-test/health:${uniqueName('slow')}`,
  sick: `convoy-test/health:${uniqueName('sick')}`,
  nowhere: `convoy-test/health:${uniqueName('nowhere')}`,
};
let networkName: string;

beforeAll(async () => {
  await orchestrator.ensureSwarm({ initIfMissing: false });
  networkName = cleanup.network(uniqueName('health-net'));
  await orchestrator.ensureNetwork(networkName, { 'convoy.test': 'true' });
});

afterAll(async () => {
  await cleanup.run();
  await removeTestImages(Object.values(tags));
});

describe('waitForRollout and health checks', () => {
  it('reports healthy only after the health check passes, and the app then answers', async () => {
    const image = await buildTestImage(tags.slow, { body: 'slow starter', healthyAfterMs: 2500 });
    const hostPort = await freeHostPort();
    const spec = testServiceSpec({
      name: uniqueName('slow'),
      image,
      deploymentId: 'dep-slow-1',
      networkName,
      hostPort,
      // Failures inside the start period do not count, so a slow start is not killed as unhealthy.
      healthCheck: httpHealthCheck(undefined, { startPeriodMs: 10_000 }),
    });
    const startedAt = Date.now();
    const { id } = await orchestrator.createService(spec);
    cleanup.service(id);
    const seen: RolloutProgress[] = [];

    const result = await orchestrator.waitForRollout(id, {
      deploymentId: 'dep-slow-1',
      desiredReplicas: 1,
      deadline: inMs(60_000),
      onProgress: (progress) => seen.push(progress),
    });

    expect(result).toEqual({ outcome: 'healthy', reason: '1/1 replicas running' });
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(2500);
    // Swarm held the task in 'starting' while the health check still failed.
    expect(seen.some((progress) => progress.tasks.some((task) => task.state === 'starting'))).toBe(true);
    const [task] = (await orchestrator.listTasks(id)).filter((t) => t.state === 'running');
    const container = await testDocker.getContainer(task.containerId!).inspect();
    expect(container.State.Health?.Status).toBe('healthy');
    expect(await httpGet('127.0.0.1', hostPort, '/health')).toEqual({ status: 200, body: 'ok\n' });
    expect(await httpGet('127.0.0.1', hostPort, '/')).toEqual({ status: 200, body: 'slow starter\n' });
  });

  it('reports failed with the health check as the reason when the app never becomes healthy', async () => {
    const image = await buildTestImage(tags.sick, { body: 'sick', healthy: false });
    const spec = testServiceSpec({
      name: uniqueName('sick'),
      image,
      deploymentId: 'dep-sick-1',
      networkName,
      healthCheck: httpHealthCheck(),
    });
    const { id } = await orchestrator.createService(spec);
    cleanup.service(id);

    const result = await orchestrator.waitForRollout(id, { deploymentId: 'dep-sick-1', desiredReplicas: 1, deadline: inMs(60_000) });

    expect(result.outcome).toBe('failed');
    expect(result.reason).toMatch(/^3 tasks failed; last: .*unhealthy container/);
    const tasks = await orchestrator.listTasks(id);
    expect(tasks.filter((task) => task.state === 'running')).toEqual([]);
  });

  it('times out with the scheduler message when no node can run the service', async () => {
    const image = await buildTestImage(tags.nowhere, { body: 'nowhere' });
    const spec = testServiceSpec({
      name: uniqueName('nowhere'),
      image,
      deploymentId: 'dep-nowhere-1',
      networkName,
      placementConstraints: ['node.labels.convoy-test-missing==yes'],
    });
    const { id } = await orchestrator.createService(spec);
    cleanup.service(id);

    const result = await orchestrator.waitForRollout(id, { deploymentId: 'dep-nowhere-1', desiredReplicas: 1, deadline: inMs(3000) });

    expect(result.outcome).toBe('timeout');
    expect(result.reason).toMatch(/0\/1 replicas running; replica 1 pending \(no suitable node/);
  });

  it('stops waiting when the signal aborts', async () => {
    const image = await buildTestImage(tags.nowhere, { body: 'nowhere' });
    const spec = testServiceSpec({
      name: uniqueName('aborted'),
      image,
      deploymentId: 'dep-aborted-1',
      networkName,
      placementConstraints: ['node.labels.convoy-test-missing==yes'],
    });
    const { id } = await orchestrator.createService(spec);
    cleanup.service(id);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 500);

    const waiting = orchestrator.waitForRollout(id, {
      deploymentId: 'dep-aborted-1',
      desiredReplicas: 1,
      deadline: inMs(60_000),
      signal: controller.signal,
    });

    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
  });
});

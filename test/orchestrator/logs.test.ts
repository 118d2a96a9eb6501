// Service logs arrive line by line with the task and replica that wrote them, follow new output, and stop
// cleanly on abort or when the consumer stops iterating.
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from '../helpers/wait.js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { LogLine } from '../../src/platform/orchestrator/orchestrator.js';
import { SwarmOrchestrator } from '../../src/platform/orchestrator/swarm.js';
import { buildTestImage, removeTestImages } from '../helpers/images.js';
import { inMs, ncGet, runProbeContainer, SwarmCleanup, testDocker, testServiceSpec, uniqueName } from '../helpers/swarm.js';

const orchestrator = new SwarmOrchestrator(testDocker);
const cleanup = new SwarmCleanup();
const tag = `convoy-test/logs:${uniqueName('v1')}`;
const networkName = uniqueName('logs-net');
const serviceName = uniqueName('logs');
let serviceId: string;

beforeAll(async () => {
  cleanup.network(networkName);
  await orchestrator.ensureNetwork(networkName, { 'convoy.test': 'true' });
  await buildTestImage(tag, { body: 'chatty app' });
  // No health check: the only request lines in the log are the ones the tests make.
  const spec = testServiceSpec({ name: serviceName, image: tag, deploymentId: 'dep-logs-1', networkName, replicas: 2 });
  serviceId = (await orchestrator.createService(spec)).id;
  cleanup.service(serviceId);
  const rollout = await orchestrator.waitForRollout(serviceId, { deploymentId: 'dep-logs-1', desiredReplicas: 2, deadline: inMs(60_000) });
  expect(rollout.outcome).toBe('healthy');
});

afterAll(async () => {
  await cleanup.run();
  await removeTestImages([tag]);
});

async function collect(lines: AsyncIterable<LogLine>): Promise<LogLine[]> {
  const collected: LogLine[] = [];
  for await (const line of lines) collected.push(line);
  return collected;
}

it('returns each replica’s lines with its task id, slot, stream and time', async () => {
  const tasks = (await orchestrator.listTasks(serviceId)).filter((task) => task.state === 'running');
  const startedAt = Math.min(...tasks.map((task) => task.createdAt.getTime()));
  const lines = await collect(orchestrator.serviceLogs(serviceId, { follow: false }));

  const startLines = lines.filter((line) => line.line === 'test app listening on port 8080');
  expect(startLines).toHaveLength(2);
  for (const task of tasks) {
    const startLine = startLines.find((line) => line.taskId === task.id);
    expect(startLine).toMatchObject({ stream: 'stdout', replica: task.slot });
    expect(startLine!.timestamp.getTime()).toBeGreaterThanOrEqual(startedAt - 1000);
    expect(startLine!.timestamp.getTime()).toBeLessThanOrEqual(Date.now());
  }
  expect(startLines.map((line) => line.replica).sort()).toEqual([1, 2]);
});

it('follows new lines as requests arrive, and stops when the signal aborts', async () => {
  const controller = new AbortController();
  const received: LogLine[] = [];
  const following = (async () => {
    for await (const line of orchestrator.serviceLogs(serviceId, { follow: true, tail: 0, signal: controller.signal })) {
      received.push(line);
    }
  })();
  // Docker attaches the follower asynchronously; requests made before that would be missed.
  await sleep(1000);

  for (let request = 0; request < 4; request++) {
    expect((await runProbeContainer(networkName, ncGet(serviceName))).stdout).toContain('chatty app');
  }
  await waitFor('four response lines', () => received.filter((line) => line.line.endsWith('response:200')).length >= 4, 15_000);
  controller.abort();
  const stoppedAt = Date.now();
  await following;

  expect(Date.now() - stoppedAt).toBeLessThan(1000);
  const requestLines = received.filter((line) => line.line.endsWith('response:200'));
  expect(requestLines.every((line) => line.stream === 'stderr')).toBe(true);
  const runningIds = (await orchestrator.listTasks(serviceId)).filter((t) => t.state === 'running').map((t) => t.id);
  expect(requestLines.every((line) => runningIds.includes(line.taskId) && line.replica !== null)).toBe(true);
  // tail 0: nothing from before the follow started.
  expect(received.some((line) => line.line.startsWith('test app listening'))).toBe(false);
});

it('releases the connection when the consumer stops iterating', async () => {
  const socketsBefore = openDockerSockets();
  const lines = orchestrator.serviceLogs(serviceId, { follow: true, tail: 1 });
  let first: LogLine | undefined;
  for await (const line of lines) {
    first = line;
    expect(openDockerSockets()).toBeGreaterThan(socketsBefore);
    break;
  }

  expect(first?.taskId).toMatch(/^[a-z0-9]{25}$/);
  await waitFor('the Docker sockets to close', () => openDockerSockets() === socketsBefore, 2000);
});

/** Connected sockets to the Docker engine held by this process (unix socket or TCP). */
function openDockerSockets(): number {
  return process.getActiveResourcesInfo().filter((resource) => resource === 'PipeWrap' || resource === 'TCPSocketWrap').length;
}

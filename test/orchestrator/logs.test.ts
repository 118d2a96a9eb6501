// Service logs arrive line by line with the task and replica that wrote them, follow new output, and stop
// cleanly on abort or when the consumer stops iterating.
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from '../helpers/wait.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOYMENT_LABEL, type LogLine } from '../../src/platform/orchestrator/orchestrator.js';
import { SwarmOrchestrator } from '../../src/platform/orchestrator/swarm.js';
import { buildTestImage, removeTestImages } from '../helpers/images.js';
import { inMs, ncGet, runProbeContainer, SwarmCleanup, testDocker, testServiceSpec, uniqueName } from '../helpers/swarm.js';

const orchestrator = new SwarmOrchestrator(testDocker);
const cleanup = new SwarmCleanup();
const tag = `convoy-test/logs:${uniqueName('v1')}`;
const longLogTag = `convoy-test/logs:${uniqueName('long')}`;
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
  await removeTestImages([tag, longLogTag]);
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
    await waitFor('the follow requests to open', () => openDockerSockets() > socketsBefore, 2000);
    break;
  }

  expect(first?.taskId).toMatch(/^[a-z0-9]{25}$/);
  await waitFor('the Docker sockets to close', () => openDockerSockets() === socketsBefore, 2000);
});

/** Connected sockets to the Docker engine held by this process (unix socket or TCP). */
function openDockerSockets(): number {
  return process.getActiveResourcesInfo().filter((resource) => resource === 'PipeWrap' || resource === 'TCPSocketWrap').length;
}

// Three replicas that each wrote a couple of thousand lines, restarted, redeployed and scaled down to one:
// Docker 20.10's own service log endpoint stops answering for such a service; reading task by task does not.
describe('a service with a long log and a task history', () => {
  const START_LINES = 2000;
  const name = uniqueName('logs-history');
  let historyId: string;
  let createdAt: Date;

  beforeAll(async () => {
    await buildTestImage(longLogTag, { body: 'long log', startLines: START_LINES });
    const spec = testServiceSpec({
      name,
      image: longLogTag,
      deploymentId: 'dep-history-1',
      networkName,
      replicas: 3,
      update: { order: 'start-first', monitorMs: 500, parallelism: 3, failureAction: 'pause' },
    });
    createdAt = new Date();
    historyId = cleanup.service((await orchestrator.createService(spec)).id);
    const rolledOut = (deploymentId: string, desiredReplicas: number) =>
      orchestrator.waitForRollout(historyId, { deploymentId, desiredReplicas, deadline: inMs(60_000) }).then((r) => expect(r.outcome).toBe('healthy'));
    await rolledOut('dep-history-1', 3);
    await orchestrator.updateService(historyId, spec, { forceRestart: true });
    await rolledOut('dep-history-1', 3);
    const redeployed = { ...spec, containerLabels: { [DEPLOYMENT_LABEL]: 'dep-history-2' } };
    await orchestrator.updateService(historyId, redeployed);
    await rolledOut('dep-history-2', 3);
    await orchestrator.updateService(historyId, { ...redeployed, replicas: 1 });
    await rolledOut('dep-history-2', 1);
    const [running] = await runningTasks(historyId);
    await waitFor('the running task to finish its start lines', async () => (await taskLogBytes(running.id)) > START_LINES * 10, 10_000);
  }, 120_000);

  it('makes Docker’s own service log endpoint hang (the engine bug the reader works around)', async () => {
    // Seen on every try here; a few tries keep the reproduction honest if the engine is only sometimes stuck.
    let hung = false;
    for (let attempt = 0; attempt < 3 && !hung; attempt++) {
      const service = testDocker.getService(historyId) as unknown as { logs(options: object): Promise<Buffer> };
      const request = service.logs({ stdout: true, stderr: true, timestamps: true, details: true, follow: false, abortSignal: AbortSignal.timeout(3000) });
      hung = await request.then(() => false, () => true);
    }
    expect(hung).toBe(true);
  }, 20_000);

  it('answers a tail at once: the last lines of the service, from the task that runs now', async () => {
    const [running] = await runningTasks(historyId);
    const startedAt = Date.now();
    const lines = await collect(orchestrator.serviceLogs(historyId, { follow: false, tail: 5 }));

    expect(Date.now() - startedAt).toBeLessThan(2000);
    expect(lines.map((line) => line.line)).toEqual([...lastStartLines(START_LINES, 4), 'test app listening on port 8080']);
    expect(lines.every((line) => line.taskId === running.id && line.replica === running.slot && line.stream === 'stdout')).toBe(true);
  });

  it('reads a time range from every task alive in it, merged by time', async () => {
    const tasks = await orchestrator.listTasks(historyId);
    const lines = await collect(orchestrator.serviceLogs(historyId, { follow: false, since: new Date(createdAt.getTime() - 1000) }));

    const startedTasks = new Set(lines.filter((line) => line.line === 'test app listening on port 8080').map((line) => line.taskId));
    expect(startedTasks).toEqual(new Set(tasks.filter((task) => task.containerId).map((task) => task.id)));
    expect(startedTasks.size).toBeGreaterThan(3);
    expect(lines.length).toBe(startedTasks.size * (START_LINES + 1));
    const times = lines.map((line) => line.timestamp.getTime());
    expect(times).toEqual([...times].sort((a, b) => a - b));
  });

  it('keeps the newest lines that match, however far back they are', async () => {
    const wanted = (line: LogLine) => line.line === 'start line 7';
    const lines = await collect(orchestrator.serviceLogs(historyId, { follow: false, tail: 3, filter: wanted }));
    const [running] = await runningTasks(historyId);
    expect(lines.map((line) => [line.line, line.taskId])).toEqual([['start line 7', running.id]]);
  });

  it('follows with a tail of 5 lines of the service, not 5 per task', async () => {
    const controller = new AbortController();
    const received: LogLine[] = [];
    const following = (async () => {
      for await (const line of orchestrator.serviceLogs(historyId, { follow: true, tail: 5, signal: controller.signal })) received.push(line);
    })();
    await sleep(2500); // the service writes nothing more: anything beyond the tail would be a replay
    controller.abort();
    await following;

    expect(received.map((line) => line.line)).toEqual([...lastStartLines(START_LINES, 4), 'test app listening on port 8080']);
  });

  // Last: it restarts the service.
  it('follows the tasks that start later too (a restart, a redeploy)', async () => {
    const [before] = await runningTasks(historyId);
    const controller = new AbortController();
    const received: LogLine[] = [];
    const following = (async () => {
      for await (const line of orchestrator.serviceLogs(historyId, { follow: true, tail: 0, signal: controller.signal })) received.push(line);
    })();
    const spec = testServiceSpec({ name, image: longLogTag, deploymentId: 'dep-history-2', networkName, replicas: 1, update: { order: 'start-first', monitorMs: 500, parallelism: 3, failureAction: 'pause' } });
    await orchestrator.updateService(historyId, spec, { forceRestart: true });
    await waitFor('the new task’s start line', () => received.some((line) => line.line === 'test app listening on port 8080'), 30_000);
    controller.abort();
    await following;

    const [after] = await runningTasks(historyId);
    expect(after.id).not.toBe(before.id);
    const fromNewTask = received.filter((line) => line.taskId === after.id);
    expect(fromNewTask.map((line) => line.line)).toEqual([...lastStartLines(START_LINES, START_LINES), 'test app listening on port 8080']);
    expect(received.filter((line) => line.taskId !== after.id)).toEqual([]);
  }, 60_000);
});

function lastStartLines(total: number, count: number): string[] {
  return Array.from({ length: count }, (_, index) => `start line ${total - count + 1 + index}`);
}

async function runningTasks(id: string) {
  return (await orchestrator.listTasks(id)).filter((task) => task.desiredState === 'running' && task.state === 'running');
}

async function taskLogBytes(taskId: string): Promise<number> {
  const logs = (await (testDocker.getTask(taskId) as unknown as { logs(o: object): Promise<Buffer> }).logs({ stdout: true, stderr: true, follow: false })) as Buffer;
  return logs.length;
}

// Runtime logs through the API for a service with some history (restarts, a redeploy, a scale-down): every
// read answers at once (Docker's own service log endpoint hangs for such a service), a tail is the service's
// last lines (not each task's), downloads are named for their format, and a client's mistake is no error.
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { swarmServiceName } from '../src/modules/deployments/spec.js';
import { DEPLOYMENT_LABEL } from '../src/platform/orchestrator/orchestrator.js';
import { SwarmOrchestrator } from '../src/platform/orchestrator/swarm.js';
import { createLogger } from '../src/platform/logging/logger.js';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { buildTestImage, removeTestImages } from './helpers/images.js';
import { subscribe } from './helpers/subscribe.js';
import { inMs, SwarmCleanup, testDocker, testServiceSpec, uniqueName } from './helpers/swarm.js';
import { waitFor } from './helpers/wait.js';

const START_LINES = 4000;
const orchestrator = new SwarmOrchestrator(testDocker);
const cleanup = new SwarmCleanup();
const tag = `convoy-test/logs-api:${uniqueName('long')}`;
const networkName = uniqueName('logs-api-net');
const logged: { level: number; msg: string }[] = [];
let api: TestApi;
let alice: TestUser;
let serviceId: string;
let runningTaskId: string;

const LAST_FIVE = [...[3, 2, 1, 0].map((back) => `start line ${START_LINES - back}`), 'test app listening on port 8080'];

beforeAll(async () => {
  const log = createLogger('debug', {}, new Writable({ write: (chunk, _encoding, done) => (logged.push(JSON.parse(chunk.toString())), done()) }));
  api = await startTestApi({}, { log });
  alice = await api.register();
  await buildTestImage(tag, { body: 'long log', startLines: START_LINES });
  const created = await api.gql(`mutation($i: CreateServiceInput!) { createService(input: $i) { ... on Service { id } } }`, { i: { name: uniqueName('chatty'), source: { image: tag } } }, { token: alice.accessToken });
  serviceId = created.data.createService.id;

  // The Swarm service a deploy would make, with the history of a few: a restart, a redeploy, a scale-down.
  cleanup.network(networkName);
  await orchestrator.ensureNetwork(networkName, { 'convoy.test': 'true' });
  const spec = testServiceSpec({
    name: swarmServiceName(serviceId),
    image: tag,
    deploymentId: 'dep-api-1',
    networkName,
    replicas: 3,
    update: { order: 'start-first', monitorMs: 500, parallelism: 3, failureAction: 'pause' },
  });
  const swarmId = cleanup.service((await orchestrator.createService(spec)).id);
  const rolledOut = async (deploymentId: string, desiredReplicas: number) =>
    expect((await orchestrator.waitForRollout(swarmId, { deploymentId, desiredReplicas, deadline: inMs(60_000) })).outcome).toBe('healthy');
  await rolledOut('dep-api-1', 3);
  await orchestrator.updateService(swarmId, spec, { forceRestart: true });
  await rolledOut('dep-api-1', 3);
  await orchestrator.updateService(swarmId, { ...spec, replicas: 1, containerLabels: { [DEPLOYMENT_LABEL]: 'dep-api-2' } });
  await rolledOut('dep-api-2', 1);
  runningTaskId = (await orchestrator.listTasks(swarmId)).find((task) => task.desiredState === 'running')!.id;
  await waitFor('the running task to log its start', async () => (await serviceLogLines(1))[0]?.line === LAST_FIVE[4], 10_000);
}, 120_000);

afterAll(async () => {
  await cleanup.run();
  await api?.close();
  await removeTestImages([tag]);
});

async function serviceLogLines(limit: number): Promise<{ line: string; taskId: string }[]> {
  const result = await api.gql(`query($id: ID!, $limit: Int) { serviceLogLines(serviceId: $id, limit: $limit) { line taskId } }`, { id: serviceId, limit }, { token: alice.accessToken });
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  return result.data.serviceLogLines;
}

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const startedAt = Date.now();
  const value = await work();
  return { value, ms: Date.now() - startedAt };
}

it('answers serviceLogLines at once with the last lines of the service', async () => {
  const { value: lines, ms } = await timed(() => serviceLogLines(5));
  expect(ms).toBeLessThan(3000);
  expect(lines.map((line) => line.line)).toEqual(LAST_FIVE);
  expect(new Set(lines.map((line) => line.taskId))).toEqual(new Set([runningTaskId]));
});

it('answers all three downloads at once; text downloads are named .log', async () => {
  const expected = { text: 'log', json: 'ndjson', csv: 'csv' };
  for (const [format, extension] of Object.entries(expected)) {
    const { value: response, ms } = await timed(() => fetch(`${api.url}/api/services/${serviceId}/logs?format=${format}&limit=5`, { headers: { authorization: `Bearer ${alice.accessToken}` } }));
    const body = await response.text();
    expect(ms).toBeLessThan(3000);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-disposition')).toBe(`attachment; filename="${serviceId}-logs.${extension}"`);
    expect(body).toContain(LAST_FIVE[3]);
    expect(body).not.toContain(`start line ${START_LINES - 4}\n`);
  }
});

/** Reads a long range, then gives up on the same read half way: the Docker requests must close at once. */
async function expectDockerReadsCancelledWhenClientGivesUp(read: (signal?: AbortSignal) => Promise<string>) {
  const baseline = dockerSockets();
  const whole = await timed(() => read());
  expect(whole.value.split('line').length).toBeGreaterThan(3 * START_LINES); // every task since then: a long read
  await waitFor('the Docker requests of the whole read to close', () => dockerSockets() <= baseline, 5000, 10);

  const client = new AbortController();
  const reading = read(client.signal).catch(() => 'aborted');
  await waitFor('the read to reach Docker', () => dockerSockets() > baseline, 5000, 5);
  client.abort();
  const gaveUpAt = Date.now();
  expect(await reading).toBe('aborted');
  await waitFor('the Docker requests to close', () => dockerSockets() <= baseline, whole.ms + 5000, 10);
  // Left running, the read would go on for about half of the whole read or more.
  expect(Date.now() - gaveUpAt).toBeLessThan(whole.ms / 3);
}

const LONG_AGO = '2020-01-01T00:00:00Z';

it('stops reading from Docker when the client gives up on a download', async () => {
  const url = `${api.url}/api/services/${serviceId}/logs?format=json&since=${LONG_AGO}&limit=10000`;
  await expectDockerReadsCancelledWhenClientGivesUp(async (signal) => (await fetch(url, { headers: { authorization: `Bearer ${alice.accessToken}` }, signal })).text());
});

it('stops reading from Docker when the client gives up on serviceLogLines', async () => {
  const body = JSON.stringify({ query: `query($id: ID!) { serviceLogLines(serviceId: $id, since: "${LONG_AGO}", limit: 10000) { line } }`, variables: { id: serviceId } });
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${alice.accessToken}` };
  await expectDockerReadsCancelledWhenClientGivesUp(async (signal) => (await fetch(`${api.url}/graphql`, { method: 'POST', headers, body, signal })).text());
});

it('serviceLogs(tail: 5) delivers the last 5 lines of the service, not 5 per task', async () => {
  const lines = subscribe<{ line: string; taskId: string }>(api.url, alice.accessToken, `subscription($id: ID!) { serviceLogs(serviceId: $id, tail: 5) { line taskId } }`, { id: serviceId }, 'serviceLogs');
  await lines.waitFor((events) => events.length >= 5, 10_000);
  await sleep(2000); // the service writes nothing more: any other line would be from a task that shut down
  await lines.close();
  expect(lines.events.map((event) => event.line)).toEqual(LAST_FIVE);
  expect(lines.errors).toEqual([]);
});

it('logs a subscription to a missing service as the client’s mistake, not as an error', async () => {
  const missing = subscribe(api.url, alice.accessToken, `subscription($id: ID!) { serviceLogs(serviceId: $id) { line } }`, { id: 'no-such-service' }, 'serviceLogs');
  await waitFor('the NOT_FOUND answer', () => missing.errors.length > 0, 5000);
  await missing.close();
  expect(JSON.stringify(missing.errors)).toContain('NOT_FOUND');
  const overHttp = await api.gql(`subscription($id: ID!) { serviceLogs(serviceId: $id) { line } }`, { id: 'no-such-service' }, { token: alice.accessToken });
  expect(overHttp.errors?.[0].extensions?.code).toBe('NOT_FOUND');

  await sleep(200);
  expect(logged.filter((entry) => entry.level >= 50)).toEqual([]);
});

/** This process's connections to the Docker engine's unix socket. */
function dockerSockets(): number {
  return process.getActiveResourcesInfo().filter((resource) => resource === 'PipeWrap').length;
}

// How much time Convoy adds to a deploy: the same service deployed (a) straight through dockerode, until
// Swarm reports one healthy task, and (b) through the deployService mutation, until the RUNNING event
// arrives on the deploymentEvents subscription; alternating a, b, a, b... Target: median b / median a <= 1.10.
//
//   npx tsx bench/deploy-overhead.ts [--pairs N] [--profile]
//
// --profile also prints, for every run, where the time went (from the bench's own clock, Docker's
// timestamps, the deployment's events in the database and timings of the in-process orchestrator calls).
// Exits non-zero only on errors; a missed target is reported, not failed.
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import globalSetup from '../test/global-setup.js';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from '../test/helpers/api.js';
import { buildTestImage, removeTestImages, TEST_APP_PORT } from '../test/helpers/images.js';
import { SwarmCleanup, testDocker, uniqueName } from '../test/helpers/swarm.js';
import { subscribe, type Collected } from '../test/helpers/subscribe.js';
import { swarmServiceName, toHealthCheck } from '../src/modules/deployments/spec.js';
import type { HealthCheckSpec } from '../src/modules/services/validation.js';
import type { DockerTask } from '../src/platform/orchestrator/docker-spec.js';
import { describeMarks, describeMedians, fmt, median, runBench, type Marks, type Phase } from './lib/timing.js';

const TARGET_RATIO = 1.1;
/** How often the baseline asks Swarm for the task list: its detection lag is half this on average. */
const BASELINE_POLL_MS = 50;
/** How often the bench looks at the events the subscription collected (the helper itself waits 25 ms). */
const EVENT_CHECK_MS = 2;
const RUN_TIMEOUT_MS = 90_000;
const NANOS_PER_MS = 1_000_000;

/** One health check for both sides: Convoy's HTTP probe, every second, two retries, no start period. */
const HEALTH = { type: 'HTTP', path: '/health', port: TEST_APP_PORT, intervalSeconds: 1, timeoutSeconds: 2, retries: 2, startPeriodSeconds: 0 } as const;

type DeploymentEvent = { status: string; message: string; at: string };
/** Wall-clock moments (ms since the epoch) of one run, for --profile. */
type Run = { ms: number; marks: Marks; note?: string; sql?: { mutation: number; run: number } };

const { values: args } = parseArgs({ options: { pairs: { type: 'string', default: '5' }, profile: { type: 'boolean', default: false } } });
const pairs = Number(args.pairs);
if (!Number.isInteger(pairs) || pairs < 1) {
  console.error(`--pairs must be a positive integer, not ${args.pairs}`);
  process.exit(2);
}

let api: TestApi | undefined;
let user: TestUser;
let image: string;
let baselineNetwork: string;
const finalCleanup = new SwarmCleanup();
/** Timings of the in-process controller's orchestrator calls, keyed by deployment id (for --profile). */
const orchestratorCalls = new Map<string, Marks>();

async function main() {
  await globalSetup();
  api = await startTestApi(DEPLOY_TEST_SETTINGS, { controller: true });
  if (args.profile) instrumentOrchestrator(api);
  user = await api.register('Bench User');
  image = await buildTestImage(`${uniqueName('convoy-bench-app')}:1`, { body: 'bench' });
  baselineNetwork = finalCleanup.network(uniqueName('bench-net'));
  await testDocker.createNetwork({ Name: baselineNetwork, Driver: 'overlay', Attachable: true, CheckDuplicate: true, Labels: { 'convoy.bench': 'true' } });

  console.log(`deploy-overhead: ${pairs} pairs; image ${image}; 1 replica, dnsrr, overlay network; health check HTTP GET /health every ${HEALTH.intervalSeconds} s, timeout ${HEALTH.timeoutSeconds} s, ${HEALTH.retries} retries`);
  console.log(`(a) dockerode createService -> a task running (healthy), polled every ${BASELINE_POLL_MS} ms`);
  console.log('(b) deployService mutation -> RUNNING on the deploymentEvents subscription (controller in-process, DEPLOY_TEST_SETTINGS)');

  // The warm-up deploy also creates the organization's network; stopping it (rather than deleting it) keeps
  // its Swarm service, so the network stays for the measured runs as it does for any organization that
  // already has a service. The baseline's network is made once up front, too.
  const warmA = await runBaseline();
  const warmService = await createConvoyService();
  const warmB = await runConvoy(warmService, { keep: true });
  await stopConvoyService(warmService);
  console.log(`warm-up (not counted): a ${fmt(warmA.ms)}  b ${fmt(warmB.ms)}`);

  const a: Run[] = [];
  const b: Run[] = [];
  for (let pair = 1; pair <= pairs; pair++) {
    a.push(await runBaseline());
    b.push(await runConvoy(await createConvoyService()));
    const [ra, rb] = [a.at(-1)!, b.at(-1)!];
    console.log(`pair ${pair}: a ${fmt(ra.ms)}  b ${fmt(rb.ms)}  b/a ${(rb.ms / ra.ms).toFixed(2)}${rb.note ? `  (${rb.note})` : ''}`);
    if (args.profile) {
      console.log(`  a: ${describeMarks(ra.marks, BASELINE_PHASES)}`);
      console.log(`  b: ${describeMarks(rb.marks, CONVOY_PHASES)}; SQL statements: ${rb.sql!.mutation} in the mutation, ${rb.sql!.run} until RUNNING (with the reconciler's)`);
    }
  }

  const medianA = median(a.map((r) => r.ms));
  const medianB = median(b.map((r) => r.ms));
  const ratio = medianB / medianA;
  console.log(`median a: ${fmt(medianA)}`);
  console.log(`median b: ${fmt(medianB)}`);
  console.log(`median of per-pair b-a: ${fmt(median(a.map((ra, i) => b[i].ms - ra.ms)))}`);
  console.log(`ratio b/a: ${ratio.toFixed(3)} (target <= ${TARGET_RATIO.toFixed(2)}): ${ratio <= TARGET_RATIO ? 'PASS' : 'FAIL'}`);
  if (args.profile) {
    console.log(`median phases a: ${describeMedians(a, BASELINE_PHASES)}`);
    console.log(`median phases b: ${describeMedians(b, CONVOY_PHASES)}`);
  }
}

// ---- (a) the baseline: dockerode only ----

async function runBaseline(): Promise<Run> {
  const name = uniqueName('bench-base');
  const cleanup = new SwarmCleanup();
  const marks: Marks = {};
  try {
    marks.start = Date.now();
    const started = performance.now();
    const { id } = await testDocker.createService(baselineSpec(name));
    cleanup.service(id);
    marks.created = Date.now();
    let task: DockerTask | undefined;
    while (!(task = await runningTask(id))) {
      if (performance.now() - started > RUN_TIMEOUT_MS) throw new Error(`baseline service ${name}: no healthy task within ${RUN_TIMEOUT_MS} ms`);
      await sleep(BASELINE_POLL_MS);
    }
    const ms = performance.now() - started;
    marks.detected = Date.now();
    if (args.profile) Object.assign(marks, await swarmMarks(id, task));
    return { ms, marks };
  } finally {
    await cleanup.run();
  }
}

async function runningTask(serviceId: string): Promise<DockerTask | undefined> {
  const tasks = (await testDocker.listTasks({ filters: { service: [serviceId] } })) as DockerTask[];
  // With a health check, Swarm keeps a task 'starting' until it is healthy.
  return tasks.find((t) => t.DesiredState === 'running' && t.Status?.State === 'running');
}

/** What Convoy asks Swarm for on a fresh deploy (src/platform/orchestrator/docker-spec.ts), written out by hand. */
function baselineSpec(name: string): Docker.ServiceSpec {
  const check = toHealthCheck(HEALTH as HealthCheckSpec, false)!;
  const update = { Parallelism: 1, Delay: 0, Monitor: Number(DEPLOY_TEST_SETTINGS.CONVOY_UPDATE_MONITOR_SECONDS) * 1000 * NANOS_PER_MS, MaxFailureRatio: 0, Order: 'start-first' };
  return {
    Name: name,
    Labels: { 'convoy.bench': 'true' },
    TaskTemplate: {
      ContainerSpec: {
        Image: image,
        Env: [],
        Labels: { 'convoy.bench': 'true' },
        Init: true,
        StopGracePeriod: Number(DEPLOY_TEST_SETTINGS.CONVOY_STOP_GRACE_SECONDS) * 1000 * NANOS_PER_MS,
        HealthCheck: {
          Test: check.test,
          Interval: check.intervalMs * NANOS_PER_MS,
          Timeout: check.timeoutMs * NANOS_PER_MS,
          Retries: check.retries,
          StartPeriod: check.startPeriodMs * NANOS_PER_MS,
        },
      },
      RestartPolicy: { Condition: 'any', Delay: 1000 * NANOS_PER_MS, MaxAttempts: 0 },
      Placement: { Constraints: [] },
      Networks: [{ Target: baselineNetwork, Aliases: [name] }],
    },
    Mode: { Replicated: { Replicas: 1 } },
    UpdateConfig: { ...update, FailureAction: 'rollback' },
    RollbackConfig: { ...update, FailureAction: 'pause' },
    EndpointSpec: { Mode: 'dnsrr', Ports: [] },
  };
}

// ---- (b) through Convoy ----

async function createConvoyService(): Promise<string> {
  const result = await gql(`mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on Service { id } ... on Error { message } } }`, {
    i: { name: uniqueName('bench'), source: { image }, healthCheck: HEALTH },
  });
  if (result.createService.__typename !== 'Service') throw new Error(`createService: ${JSON.stringify(result)}`);
  return result.createService.id;
}

async function runConvoy(serviceId: string, options: { keep?: boolean } = {}): Promise<Run> {
  const marks: Marks = {};
  let events: Collected<DeploymentEvent> | undefined;
  try {
    marks.start = Date.now();
    const queriesBefore = api!.queries.length;
    const started = performance.now();
    const result = await gql(`mutation($s: ID!) { deployService(serviceId: $s) { __typename ... on Deployment { id status } ... on Error { message } } }`, { s: serviceId });
    if (result.deployService.__typename !== 'Deployment') throw new Error(`deployService: ${JSON.stringify(result)}`);
    const deploymentId: string = result.deployService.id;
    marks.mutationReturned = Date.now();
    const mutationQueries = api!.queries.length - queriesBefore;

    const listeners = api!.app.bus.listenerCount();
    events = subscribe<DeploymentEvent>(api!.url, user.accessToken, `subscription($id: ID!) { deploymentEvents(deploymentId: $id) { status message at } }`, { id: deploymentId }, 'deploymentEvents');
    await waitForListeners(listeners + 1);
    marks.subscribed = Date.now();

    // The subscription only carries events published after it started: read back what may have gone before.
    let outcome = await readBackOutcome(deploymentId);
    let note: string | undefined;
    if (outcome) note = `${outcome.status} read back from the deployment query: it came before the subscription`;
    else outcome = await waitForOutcome(events, started);
    const ms = performance.now() - started;
    marks.detected = Date.now();
    const sql = { mutation: mutationQueries, run: api!.queries.length - queriesBefore };
    if (outcome.status !== 'RUNNING') throw new Error(`deployment ${deploymentId} ended ${outcome.status}: ${outcome.message}`);

    if (args.profile) Object.assign(marks, await convoyMarks(serviceId, deploymentId));
    return { ms, marks, note, sql };
  } finally {
    await events?.close();
    if (!options.keep) await deleteConvoyService(serviceId);
  }
}

async function waitForListeners(count: number) {
  const deadline = Date.now() + 5000;
  while (api!.app.bus.listenerCount() < count) {
    if (Date.now() > deadline) throw new Error('the deploymentEvents subscription did not register within 5 s');
    await sleep(1);
  }
}

async function readBackOutcome(deploymentId: string): Promise<DeploymentEvent | null> {
  const result = await gql(`query($id: ID!) { deployment(id: $id) { status events { status message createdAt } } }`, { id: deploymentId });
  const deployment = result.deployment as { status: string; events: Array<{ status: string; message: string; createdAt: string }> };
  if (deployment.status !== 'RUNNING' && deployment.status !== 'FAILED') return null;
  const event = deployment.events.find((e) => e.status === deployment.status);
  return { status: deployment.status, message: event?.message ?? '', at: event?.createdAt ?? '' };
}

/** Looks at the collected events every EVENT_CHECK_MS, so the measured end is within a few ms of the arrival. */
async function waitForOutcome(events: Collected<DeploymentEvent>, started: number): Promise<DeploymentEvent> {
  for (;;) {
    const outcome = events.events.find((e) => e.status === 'RUNNING' || e.status === 'FAILED');
    if (outcome) return outcome;
    if (events.errors.length) throw new Error(`deploymentEvents failed: ${JSON.stringify(events.errors)}`);
    if (performance.now() - started > RUN_TIMEOUT_MS) throw new Error(`no RUNNING or FAILED event within ${RUN_TIMEOUT_MS} ms; got ${JSON.stringify(events.events)}`);
    await sleep(EVENT_CHECK_MS);
  }
}

async function stopConvoyService(serviceId: string) {
  const result = await gql(`mutation($s: ID!) { stopService(serviceId: $s) { __typename ... on Deployment { id } ... on Error { message } } }`, { s: serviceId });
  if (result.stopService.__typename !== 'Deployment') throw new Error(`stopService: ${JSON.stringify(result)}`);
  const deadline = Date.now() + RUN_TIMEOUT_MS;
  for (;;) {
    const state = await gql(`query($id: ID!) { deployment(id: $id) { status reason } }`, { id: result.stopService.id });
    if (state.deployment.status === 'COMPLETED') return;
    if (state.deployment.status === 'FAILED' || Date.now() > deadline) throw new Error(`stopping the warm-up service: ${JSON.stringify(state.deployment)}`);
    await sleep(100);
  }
}

/** Deletes the service through the API (so the reconciler does not bring it back) and waits until its tasks are gone. */
async function deleteConvoyService(serviceId: string) {
  // Looked up first: the controller may remove the Swarm service before the bench could find it by name.
  const swarm = await findSwarmService(serviceId);
  const result = await gql(`mutation($id: ID!) { deleteService(id: $id) { __typename } }`, { id: serviceId });
  if (!result?.deleteService) throw new Error(`deleteService: ${JSON.stringify(result)}`);
  if (!swarm) return;
  const cleanup = new SwarmCleanup();
  cleanup.service(swarm.ID);
  await cleanup.run();
}

async function findSwarmService(serviceId: string): Promise<Docker.Service | undefined> {
  const name = swarmServiceName(serviceId);
  return (await testDocker.listServices({ filters: { name: [name] } })).find((s) => s.Spec?.Name === name);
}

async function gql(query: string, variables: Record<string, unknown>): Promise<any> {
  const result = await api!.gql(query, variables, { token: user.accessToken });
  if (result.errors) throw new Error(`GraphQL errors: ${JSON.stringify(result.errors)}`);
  return result.data;
}

// ---- --profile: where the time goes ----

const SWARM_PHASES: Phase[] = [
  ['task created', 'created', 'taskCreated'],
  ['container started', 'taskCreated', 'containerStarted'],
  ['first passing probe', 'containerStarted', 'healthy'],
  ['task running', 'healthy', 'taskRunning'],
];
const BASELINE_PHASES: Phase[] = [['create call', 'start', 'created'], ...SWARM_PHASES, ['noticed', 'taskRunning', 'detected']];
const CONVOY_PHASES: Phase[] = [
  ['mutation', 'start', 'mutationReturned'],
  ['job picked up (DEPLOYING)', 'mutationReturned', 'deploying'],
  ['service status + event', 'deploying', 'networkCalled'],
  ['ensureNetwork', 'networkCalled', 'networkDone'],
  ['findServiceByName', 'networkDone', 'createCalled'],
  ['create call', 'createCalled', 'created'],
  ...SWARM_PHASES,
  ['rollout poll noticed', 'taskRunning', 'rolloutDone'],
  ['RUNNING recorded', 'rolloutDone', 'runningRecorded'],
  ['event received', 'runningRecorded', 'detected'],
];

/** Docker's own timestamps for the healthy task: created, container started, first passing probe, running. */
async function swarmMarks(serviceId: string, task: DockerTask): Promise<Marks> {
  const marks: Marks = { taskCreated: Date.parse(task.CreatedAt), taskRunning: Date.parse((task.Status as { Timestamp?: string } | undefined)?.Timestamp ?? '') };
  const service = await testDocker.getService(serviceId).inspect();
  marks.serviceCreated = Date.parse(service.CreatedAt ?? '');
  const containerId = task.Status?.ContainerStatus?.ContainerID;
  if (containerId) {
    const container = await testDocker.getContainer(containerId).inspect();
    marks.containerStarted = Date.parse(container.State.StartedAt);
    const health = (container.State as { Health?: { Log?: Array<{ End: string; ExitCode: number }> } }).Health;
    const firstPass = health?.Log?.find((probe) => probe.ExitCode === 0);
    if (firstPass) marks.healthy = Date.parse(firstPass.End);
  }
  return marks;
}

async function convoyMarks(serviceId: string, deploymentId: string): Promise<Marks> {
  const db = api!.app.db;
  const events = await db.deploymentEvent.findMany({ where: { deploymentId }, orderBy: { createdAt: 'asc' } });
  const at = (status: string) => events.find((e) => e.status === status)?.createdAt.getTime();
  const marks: Marks = { deploying: at('DEPLOYING'), runningRecorded: at('RUNNING'), ...orchestratorCalls.get(deploymentId) };
  const swarm = await findSwarmService(serviceId);
  if (swarm) {
    const task = await runningTask(swarm.ID);
    if (task) Object.assign(marks, await swarmMarks(swarm.ID, task));
  }
  return marks;
}

/** Wraps the in-process controller's orchestrator calls to time them; only with --profile. */
function instrumentOrchestrator(testApi: TestApi) {
  const orchestrator = testApi.app.orchestrator;
  const ensureNetwork = orchestrator.ensureNetwork.bind(orchestrator);
  const createService = orchestrator.createService.bind(orchestrator);
  const waitForRollout = orchestrator.waitForRollout.bind(orchestrator);
  // Only the deploy runner ensures networks, right before it looks the service up and creates it; the bench
  // runs one deploy at a time, so the next createService belongs to the same deployment.
  let network: Marks = {};
  orchestrator.ensureNetwork = async (name, labels) => {
    network = { networkCalled: Date.now() };
    const result = await ensureNetwork(name, labels);
    network.networkDone = Date.now();
    return result;
  };
  orchestrator.createService = async (spec) => {
    const marks: Marks = { ...network, createCalled: Date.now() };
    orchestratorCalls.set(spec.containerLabels['convoy.deployment-id'], marks);
    const result = await createService(spec);
    marks.created = Date.now();
    return result;
  };
  orchestrator.waitForRollout = async (serviceId, options) => {
    const result = await waitForRollout(serviceId, options);
    const marks = orchestratorCalls.get(options.deploymentId);
    if (marks) marks.rolloutDone = Date.now();
    return result;
  };
}

// ---- cleanup, also on Ctrl-C ----

let cleaning: Promise<void> | undefined;
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    const failures: unknown[] = [];
    await finalCleanup.run().catch((error) => failures.push(error));
    await api?.close().catch((error) => failures.push(error));
    if (image) await removeTestImages([image]).catch((error) => failures.push(error));
    if (failures.length) throw new AggregateError(failures, 'cleanup failed');
  })();
  return cleaning;
}

await runBench(main, cleanUp);

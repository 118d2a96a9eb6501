// What an unchanged rebuild costs: one Git-sourced service, and per pair (1) a cold build+deploy (a new
// commit whose default.nix has a fresh nonce, so Nix really builds), (2) an unchanged rebuild+deploy
// (rebuildService on the same commit: a Nix cache hit), (3) a plain redeploy (redeployService: new tasks,
// same image, no build). Targets: the rebuild's build time (the build's own durationMs) < 2 s, and
// rebuild+deploy (mutation -> deployment RUNNING) < 3x a plain redeploy (mutation -> RUNNING).
//
//   npx tsx bench/build-cache.ts [--pairs N] [--profile]
//
// A warm-up build+deploy (not counted) creates the Swarm service first, so that every measured deploy is
// an update of a running service, as it is for a service in use. --profile also prints, for every run,
// where the time went (the bench's clock, the build's and deployment's timestamps, timings of the
// in-process builder, docker load and orchestrator calls, and Docker's own task and update timestamps).
// Exits non-zero only on errors; a missed target is reported, not failed.
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import globalSetup from '../test/global-setup.js';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from '../test/helpers/api.js';
import { commitFiles, initRepo, removeDirs, tempDir } from '../test/helpers/git.js';
import { httpAppExpression, nonce } from '../test/helpers/nix.js';
import { removeTestImages } from '../test/helpers/images.js';
import { SwarmCleanup, testDocker, uniqueName } from '../test/helpers/swarm.js';
import { swarmServiceName } from '../src/modules/deployments/spec.js';
import type { DockerTask } from '../src/platform/orchestrator/docker-spec.js';
import { describeMarks, describeMedians, fmt, median, runBench, type Marks, type Phase } from './lib/timing.js';

const TARGET_REBUILD_BUILD_MS = 2000;
const TARGET_REBUILD_OVER_REDEPLOY = 3;
/** How often the bench looks for the deployment's outcome in the database. */
const POLL_MS = 20;
const BUILD_TIMEOUT_MS = 180_000;
const DEPLOY_TIMEOUT_MS = 90_000;

/** As in test/builds.test.ts: HTTP GET /healthz every second, two retries. */
const HEALTH = { type: 'HTTP', path: '/healthz', port: 8080, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 };

/** Wall-clock moments (ms since the epoch) of one run, for --profile. */
type Run = { ms: number; buildMs?: number; cacheHit?: boolean; marks: Marks };
type BuildRow = { id: string; status: string; cacheHit: boolean; durationMs: number | null; imageRef: string | null; imageId: string | null; commitSha: string | null; error: string | null; startedAt: Date | null; finishedAt: Date | null };

const { values: args } = parseArgs({ options: { pairs: { type: 'string', default: '5' }, profile: { type: 'boolean', default: false } } });
const pairs = Number(args.pairs);
if (!Number.isInteger(pairs) || pairs < 1) {
  console.error(`--pairs must be a positive integer, not ${args.pairs}`);
  process.exit(2);
}

let api: TestApi | undefined;
let user: TestUser;
let repo: string | undefined;
let serviceId: string | undefined;
const imageRefs = new Set<string>();
/** Timings of the in-process controller's calls during the current run (the bench runs one thing at a time). */
let current: Marks = {};


async function main() {
  await globalSetup();
  api = await startTestApi({ ...DEPLOY_TEST_SETTINGS, CONVOY_ALLOW_FILE_GIT_URLS: 'true' }, { controller: true });
  if (args.profile) instrument(api);
  user = await api.register('Bench User');
  repo = await tempDir('bench-build-cache');
  await initRepo(repo);
  serviceId = await createGitService(`file://${repo}`);

  console.log(`build-cache: ${pairs} pairs; one Git service (file:// repository, default.nix: busybox httpd), 1 replica, dnsrr, ports [8080]`);
  console.log(`health check HTTP GET ${HEALTH.path} every ${HEALTH.intervalSeconds} s, ${HEALTH.retries} retries; DEPLOY_TEST_SETTINGS (update monitor ${DEPLOY_TEST_SETTINGS.CONVOY_UPDATE_MONITOR_SECONDS} s, stop grace ${DEPLOY_TEST_SETTINGS.CONVOY_STOP_GRACE_SECONDS} s)`);
  console.log('(1) cold: new commit (fresh nonce) + buildService -> deployment RUNNING');
  console.log('(2) rebuild: rebuildService, same commit (cache hit) -> deployment RUNNING');
  console.log('(3) redeploy: redeployService (same image, new tasks) -> deployment RUNNING');

  const warm = await runColdBuild();
  console.log(`warm-up (not counted; creates the Swarm service): build ${fmt(warm.buildMs!)}, build+deploy ${fmt(warm.ms)}`);

  const cold: Run[] = [];
  const rebuild: Run[] = [];
  const redeploy: Run[] = [];
  for (let pair = 1; pair <= pairs; pair++) {
    cold.push(await runColdBuild());
    rebuild.push(await runRebuild());
    redeploy.push(await runRedeploy());
    const [c, r, d] = [cold.at(-1)!, rebuild.at(-1)!, redeploy.at(-1)!];
    console.log(
      `pair ${pair}: cold build ${fmt(c.buildMs!)}, +deploy ${fmt(c.ms)} | rebuild build ${fmt(r.buildMs!)}${r.cacheHit ? ' (cache hit)' : ' (NOT a cache hit)'}, +deploy ${fmt(r.ms)} | redeploy ${fmt(d.ms)} | (rebuild+deploy)/redeploy ${(r.ms / d.ms).toFixed(2)}`,
    );
    if (args.profile) {
      console.log(`  cold:     ${describeMarks(c.marks, BUILD_PHASES)}`);
      console.log(`  rebuild:  ${describeMarks(r.marks, BUILD_PHASES)}`);
      console.log(`  redeploy: ${describeMarks(d.marks, REDEPLOY_PHASES)}`);
    }
  }

  const m = {
    coldBuild: median(cold.map((r) => r.buildMs!)),
    cold: median(cold.map((r) => r.ms)),
    rebuildBuild: median(rebuild.map((r) => r.buildMs!)),
    rebuild: median(rebuild.map((r) => r.ms)),
    redeploy: median(redeploy.map((r) => r.ms)),
  };
  const hits = rebuild.filter((r) => r.cacheHit).length;
  console.log(`median cold build:         ${fmt(m.coldBuild)}`);
  console.log(`median cold build+deploy:  ${fmt(m.cold)}`);
  console.log(`median rebuild build:      ${fmt(m.rebuildBuild)}  (${hits}/${rebuild.length} cache hits)`);
  console.log(`median rebuild+deploy:     ${fmt(m.rebuild)}`);
  console.log(`median plain redeploy:     ${fmt(m.redeploy)}`);
  console.log(`ratio cold/rebuild: build ${(m.coldBuild / m.rebuildBuild).toFixed(2)}, build+deploy ${(m.cold / m.rebuild).toFixed(2)}`);
  const ratio = m.rebuild / m.redeploy;
  console.log(`ratio (rebuild+deploy)/(plain redeploy): ${ratio.toFixed(2)}`);
  console.log(`target rebuild build < ${TARGET_REBUILD_BUILD_MS} ms: ${fmt(m.rebuildBuild)}: ${m.rebuildBuild < TARGET_REBUILD_BUILD_MS ? 'PASS' : 'FAIL'}`);
  console.log(`target rebuild+deploy < ${TARGET_REBUILD_OVER_REDEPLOY}x plain redeploy: ${ratio.toFixed(2)}x: ${ratio < TARGET_REBUILD_OVER_REDEPLOY ? 'PASS' : 'FAIL'}`);
  if (args.profile) {
    console.log(`median phases cold:     ${describeMedians(cold, BUILD_PHASES)}`);
    console.log(`median phases rebuild:  ${describeMedians(rebuild, BUILD_PHASES)}`);
    console.log(`median phases redeploy: ${describeMedians(redeploy, REDEPLOY_PHASES)}`);
  }
}

// ---- the three kinds of run ----

async function runColdBuild(): Promise<Run> {
  const sha = await commitFiles(repo!, { 'default.nix': httpAppExpression(`build-cache ${nonce()}`) }, 'cold');
  // Built by commit, so the rebuild that follows asks for exactly this commit again.
  return runBuild(() => gql(`mutation($s: ID!, $r: String) { buildService(serviceId: $s, ref: $r) { __typename ... on Build { id } ... on Error { message } } }`, { s: serviceId, r: sha }).then((d) => d.buildService), sha);
}

async function runRebuild(): Promise<Run> {
  const last = await api!.app.db.build.findFirstOrThrow({ where: { serviceId }, orderBy: { createdAt: 'desc' } });
  return runBuild(() => gql(`mutation($s: ID!) { rebuildService(serviceId: $s) { __typename ... on Build { id } ... on Error { message } } }`, { s: serviceId }).then((d) => d.rebuildService), last.commitSha!);
}

async function runBuild(mutate: () => Promise<{ __typename: string; id?: string; message?: string }>, expectedSha: string): Promise<Run> {
  current = {};
  const marks = current;
  marks.start = Date.now();
  const started = performance.now();
  const result = await mutate();
  if (result.__typename !== 'Build') throw new Error(`build mutation: ${JSON.stringify(result)}`);
  const build = await waitForBuild(result.id!, started);
  if (build.status !== 'SUCCEEDED') throw new Error(`build ${build.id} ended ${build.status}: ${build.error}`);
  if (build.commitSha !== expectedSha) throw new Error(`build ${build.id} built ${build.commitSha}, not ${expectedSha}`);
  if (build.imageRef) imageRefs.add(build.imageRef);
  const deployment = await waitForDeployment({ buildId: build.id }, started);
  const ms = performance.now() - started;
  marks.detected = Date.now();
  Object.assign(marks, { buildStarted: build.startedAt?.getTime(), buildFinished: build.finishedAt?.getTime() });
  if (args.profile) Object.assign(marks, await deploymentMarks(deployment));
  return { ms, buildMs: build.durationMs ?? NaN, cacheHit: build.cacheHit, marks };
}

async function runRedeploy(): Promise<Run> {
  current = {};
  const marks = current;
  marks.start = Date.now();
  const started = performance.now();
  const result = (await gql(`mutation($s: ID!) { redeployService(serviceId: $s) { __typename ... on Deployment { id } ... on Error { message } } }`, { s: serviceId })).redeployService;
  if (result.__typename !== 'Deployment') throw new Error(`redeployService: ${JSON.stringify(result)}`);
  // A redeploy carries the build id of the deployment it repeats: find it by its own id.
  const deployment = await waitForDeployment({ id: result.id }, started);
  const ms = performance.now() - started;
  marks.detected = Date.now();
  if (args.profile) Object.assign(marks, await deploymentMarks(deployment));
  return { ms, marks };
}

// ---- API and database ----

async function createGitService(url: string): Promise<string> {
  const result = await gql(`mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on Service { id } ... on Error { message } } }`, {
    i: { name: uniqueName('bench-cache'), source: { gitUrl: url, gitBranch: 'main' }, ports: [{ target: 8080 }], healthCheck: HEALTH },
  });
  if (result.createService.__typename !== 'Service') throw new Error(`createService: ${JSON.stringify(result)}`);
  return result.createService.id;
}

async function waitForBuild(id: string, started: number): Promise<BuildRow> {
  for (;;) {
    const build = await api!.app.db.build.findUniqueOrThrow({ where: { id } });
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(build.status)) return build;
    if (performance.now() - started > BUILD_TIMEOUT_MS) throw new Error(`build ${id} still ${build.status} after ${BUILD_TIMEOUT_MS} ms`);
    await sleep(POLL_MS);
  }
}

type DeploymentRow = { id: string; status: string; reason: string | null; swarmServiceId: string | null; startedAt: Date | null; finishedAt: Date | null };

/** The first deployment matching `where` (a build's own deploy, or a deployment by id), once RUNNING; throws if it fails. */
async function waitForDeployment(where: { buildId: string } | { id: string }, started: number): Promise<DeploymentRow> {
  for (;;) {
    const deployment = await api!.app.db.deployment.findFirst({ where, orderBy: { createdAt: 'asc' } });
    if (deployment?.status === 'RUNNING') return deployment;
    if (deployment && ['FAILED', 'CANCELLED', 'ROLLED_BACK', 'SUPERSEDED', 'COMPLETED'].includes(deployment.status)) {
      throw new Error(`deployment ${deployment.id} ended ${deployment.status}: ${deployment.reason}`);
    }
    if (performance.now() - started > BUILD_TIMEOUT_MS + DEPLOY_TIMEOUT_MS) throw new Error(`no RUNNING deployment for ${JSON.stringify(where)}; last seen ${deployment?.status ?? 'none'}`);
    await sleep(POLL_MS);
  }
}

async function gql(query: string, variables: Record<string, unknown>): Promise<any> {
  const result = await api!.gql(query, variables, { token: user.accessToken });
  if (result.errors) throw new Error(`GraphQL errors: ${JSON.stringify(result.errors)}`);
  return result.data;
}

// ---- --profile: where the time goes ----

const DEPLOY_PHASES: Phase[] = [
  ['lookup+update call', 'deployStarted', 'updateDone'],
  ['container started', 'updateDone', 'containerStarted'],
  ['first passing probe', 'containerStarted', 'healthy'],
  ['task running', 'healthy', 'taskRunning'],
  ['Swarm update completed (monitor window)', 'taskRunning', 'updateCompleted'],
  ['rollout poll noticed', 'updateCompleted', 'rolloutDone'],
  ['RUNNING recorded', 'rolloutDone', 'deployFinished'],
  ['bench noticed', 'deployFinished', 'detected'],
];
const BUILD_PHASES: Phase[] = [
  ['mutation+queue', 'start', 'buildStarted'],
  ['clone+prepare', 'buildStarted', 'nixCalled'],
  ['nix', 'nixCalled', 'nixDone'],
  ['image write', 'nixDone', 'loadCalled'],
  ['docker load', 'loadCalled', 'loadDone'],
  ['tag+record', 'loadDone', 'buildFinished'],
  ['deploy queued', 'buildFinished', 'deployStarted'],
  ...DEPLOY_PHASES,
];
const REDEPLOY_PHASES: Phase[] = [['mutation+queue', 'start', 'deployStarted'], ...DEPLOY_PHASES];

/** The deployment's timestamps, and Docker's for its task and for the Swarm update. */
async function deploymentMarks(deployment: DeploymentRow): Promise<Marks> {
  const marks: Marks = { deployStarted: deployment.startedAt?.getTime(), deployFinished: deployment.finishedAt?.getTime() };
  if (!deployment.swarmServiceId) return marks;
  const service = await testDocker.getService(deployment.swarmServiceId).inspect();
  const update = (service as { UpdateStatus?: { State?: string; CompletedAt?: string } }).UpdateStatus;
  if (update?.State === 'completed' && update.CompletedAt) marks.updateCompleted = Date.parse(update.CompletedAt);
  const forceUpdate = (service.Spec?.TaskTemplate as { ForceUpdate?: number } | undefined)?.ForceUpdate ?? 0;
  const tasks = (await testDocker.listTasks({ filters: { service: [deployment.swarmServiceId] } })) as Array<DockerTask & { Status?: { Timestamp?: string } }>;
  const task = tasks.find((t) => t.DesiredState === 'running' && t.Status?.State === 'running' && t.Spec?.ContainerSpec?.Labels?.['convoy.deployment-id'] === deployment.id && (t.Spec?.ForceUpdate ?? 0) === forceUpdate);
  if (!task) return marks;
  marks.taskRunning = Date.parse(task.Status?.Timestamp ?? '');
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

/** Wraps the in-process builder, docker load and orchestrator calls to time them; only with --profile. */
function instrument(testApi: TestApi) {
  const { builder, docker, orchestrator } = testApi.app;
  const build = builder.build.bind(builder);
  builder.build = async (source, options) => {
    current.nixCalled = Date.now();
    try {
      return await build(source, options);
    } finally {
      current.nixDone = Date.now();
    }
  };
  const dockerLoad = docker as unknown as { loadImage: (file: unknown, options?: unknown) => Promise<NodeJS.ReadableStream> };
  const loadImage = dockerLoad.loadImage.bind(docker);
  dockerLoad.loadImage = async (file, options) => {
    const marks = current;
    marks.loadCalled = Date.now();
    const stream = await loadImage(file, options ?? {});
    stream.on('end', () => (marks.loadDone = Date.now()));
    return stream;
  };
  const updateService = orchestrator.updateService.bind(orchestrator);
  orchestrator.updateService = async (id, spec, options) => {
    await updateService(id, spec, options);
    current.updateDone = Date.now();
  };
  const createService = orchestrator.createService.bind(orchestrator);
  orchestrator.createService = async (spec) => {
    const result = await createService(spec);
    current.updateDone = Date.now();
    return result;
  };
  const waitForRollout = orchestrator.waitForRollout.bind(orchestrator);
  orchestrator.waitForRollout = async (id, options) => {
    const marks = current;
    const result = await waitForRollout(id, options);
    marks.rolloutDone = Date.now();
    return result;
  };
}

// ---- cleanup, also on Ctrl-C ----

let cleaning: Promise<void> | undefined;
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    const failures: unknown[] = [];
    // Looked up before close() removes it, to wait for its containers to go before removing the images.
    const swarm = serviceId ? await findSwarmService(serviceId).catch(() => undefined) : undefined;
    await api?.close().catch((error) => failures.push(error));
    if (swarm) {
      const cleanup = new SwarmCleanup();
      cleanup.service(swarm.ID);
      await cleanup.run().catch((error) => failures.push(error));
    }
    await removeTestImages([...imageRefs]).catch((error) => failures.push(error));
    if (repo) await removeDirs(repo).catch((error) => failures.push(error));
    if (failures.length) throw new AggregateError(failures, 'cleanup failed');
  })();
  return cleaning;
}

async function findSwarmService(id: string): Promise<Docker.Service | undefined> {
  const name = swarmServiceName(id);
  return (await testDocker.listServices({ filters: { name: [name] } })).find((s) => s.Spec?.Name === name);
}

await runBench(main, cleanUp);

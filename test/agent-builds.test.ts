// Builds on worker agents: a real agent process takes the build job through GraphQL (workerJobs,
// claimJob), builds with real Nix against the local Docker engine, streams its log and reports the
// result; killed mid-build, the job goes back to the queue and the restarted agent completes it.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { commitFiles, initRepo, removeDirs, tempDir } from './helpers/git.js';
import { httpAppExpression, nonce, processesMentioning } from './helpers/nix.js';
import { waitFor } from './helpers/wait.js';
import { uniqueName } from './helpers/swarm.js';
import { subscribe } from './helpers/subscribe.js';
import { createServiceThroughApi, joinTokenThroughApi, startBuildThroughApi } from './helpers/builds.js';

let api: TestApi;
let admin: TestUser;
let dir: string;
const repos: string[] = [];
const agents: ResultPromise[] = [];

const HEALTH = { type: 'HTTP', path: '/healthz', port: 8080, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 };

beforeAll(async () => {
  api = await startTestApi(
    { ...DEPLOY_TEST_SETTINGS, CONVOY_ALLOW_FILE_GIT_URLS: 'true', CONVOY_BUILD_EXECUTOR: 'agents', CONVOY_WORKER_HEARTBEAT_SECONDS: '1', CONVOY_JOB_LEASE_SECONDS: '4' },
    { controller: true },
  );
  admin = await api.register('Platform Admin');
  dir = await mkdtemp(join(tmpdir(), 'convoy-agent-builds-'));
});

afterAll(async () => {
  for (const agent of agents) agent.kill('SIGKILL');
  await Promise.allSettled(agents);
  await api?.close();
  await removeDirs(...repos);
  if (dir) await rm(dir, { recursive: true, force: true });
});

const joinToken = () => joinTokenThroughApi(api, admin.accessToken);

function startAgent(env: Record<string, string>): ResultPromise {
  const child = execa('node', ['--import', 'tsx', 'worker-agent/src/main.ts'], {
    cwd: new URL('..', import.meta.url),
    env: { CONVOY_HEARTBEAT_SECONDS: '1', LOG_LEVEL: 'info', CONVOY_AGENT_JOIN_SWARM: 'false', NIX_SUBSTITUTERS: '', ...env },
    extendEnv: true,
    reject: false,
    buffer: false,
  });
  child.stdout?.resume();
  child.stderr?.resume();
  agents.push(child);
  return child;
}

async function gitService(script: string, marker: string): Promise<string> {
  const repo = await tempDir('agent-build-repo');
  repos.push(repo);
  await initRepo(repo);
  await commitFiles(repo, { 'default.nix': httpAppExpression(marker, script) });
  return createServiceThroughApi(api, admin.accessToken, { name: uniqueName('agent-built'), source: { gitUrl: `file://${repo}`, gitBranch: 'main' }, ports: [{ target: 8080 }], healthCheck: HEALTH });
}

const startBuild = (serviceId: string) => startBuildThroughApi(api, admin.accessToken, serviceId);

async function finishedBuild(id: string, timeoutMs = 90_000) {
  let build = await api.app.db.build.findUniqueOrThrow({ where: { id } });
  await waitFor(`build ${id} to finish`, async () => {
    build = await api.app.db.build.findUniqueOrThrow({ where: { id } });
    return ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(build.status);
  }, timeoutMs);
  return build;
}

describe('build jobs on worker agents', () => {
  const stateFile = () => join(dir, 'builder', 'state.json');
  const hostname = uniqueName('builder');
  let token: string;

  it('an agent takes the build, its log lines stream to subscribers, and the result deploys', async () => {
    token = await joinToken();
    startAgent({ CONVOY_API_URL: api.url, CONVOY_JOIN_TOKEN: token, CONVOY_AGENT_STATE: stateFile(), CONVOY_AGENT_HOSTNAME: hostname });
    await waitFor('the agent to register', async () => (await api.app.db.worker.count({ where: { hostname, agentSession: { not: null } } })) > 0, 30_000);
    const worker = await api.app.db.worker.findFirstOrThrow({ where: { hostname } });

    const marker = `agent-${nonce()}`;
    const serviceId = await gitService(`echo step-one ${marker}; sleep 1; echo step-two ${marker}`, marker);
    const buildId = await startBuild(serviceId);
    const live = subscribe(api.url, admin.accessToken, `subscription($id: ID!) { buildLogs(buildId: $id) { seq line } }`, { id: buildId }, 'buildLogs');
    const build = await finishedBuild(buildId);
    expect(build.status, build.logs).toBe('SUCCEEDED');
    expect(build.workerId).toBe(worker.id);
    expect(build.logs).toContain(`worker ${hostname} took the build (attempt 1)`);
    expect(build.logs).toContain(`step-two ${marker}`);
    const lines = (await live.waitFor((events) => events.some((l) => l.line.includes(`step-two ${marker}`)))) as { seq: number; line: string }[];
    await live.close();
    expect(lines.map((l) => l.seq)).toEqual(lines.map((_, i) => i));
    expect(lines.some((l) => l.line.includes(`step-one ${marker}`))).toBe(true);

    const job = await api.app.db.workerJob.findUniqueOrThrow({ where: { buildId } });
    expect(job).toMatchObject({ status: 'SUCCEEDED', attempt: 1, workerId: worker.id });
    await waitFor('the build to deploy', async () => (await api.app.db.service.findUniqueOrThrow({ where: { id: serviceId } })).status === 'RUNNING', 60_000);
  });

  it('an agent killed mid-build loses the job; restarted, it takes the job again and completes it', async () => {
    const [first] = agents;
    const marker = `retry-${nonce()}`;
    const serviceId = await gitService(`echo started ${marker}; sleep 3; echo done ${marker}`, marker);
    const buildId = await startBuild(serviceId);
    await waitFor('the build to start on the agent', async () => (await api.app.db.build.findUniqueOrThrow({ where: { id: buildId } })).logs.includes(`started ${marker}`), 60_000);
    first.kill('SIGKILL');
    await first;

    // Same state file (same worker), new process: a new session, so the old claim is void.
    startAgent({ CONVOY_API_URL: api.url, CONVOY_AGENT_STATE: stateFile(), CONVOY_AGENT_HOSTNAME: hostname });
    const build = await finishedBuild(buildId);
    expect(build.status, build.logs).toBe('SUCCEEDED');
    expect(build.logs).toContain('retrying the build (attempt 2 of 3)');
    expect(build.logs).toContain(`worker ${hostname} took the build (attempt 2)`);
    const job = await api.app.db.workerJob.findUniqueOrThrow({ where: { buildId } });
    expect(job).toMatchObject({ status: 'SUCCEEDED', attempt: 2 });
  });

  it('cancelBuild stops the build running on the agent within seconds', async () => {
    const marker = `cancel-${nonce()}`;
    const serviceId = await gitService(`echo started ${marker}; sleep 120`, marker);
    const buildId = await startBuild(serviceId);
    await waitFor('the build to start on the agent', async () => (await api.app.db.build.findUniqueOrThrow({ where: { id: buildId } })).logs.includes(`started ${marker}`), 60_000);
    const asked = Date.now();
    const result = await api.gql(`mutation($b: ID!) { cancelBuild(buildId: $b) { __typename } }`, { b: buildId }, { token: admin.accessToken });
    expect(result.data.cancelBuild.__typename).toBe('Build');
    const build = await finishedBuild(buildId, 20_000);
    expect(build.status).toBe('CANCELLED');
    expect(Date.now() - asked).toBeLessThan(10_000);
    expect(await api.app.db.workerJob.findUniqueOrThrow({ where: { buildId } })).toMatchObject({ status: 'CANCELLED' });
    await waitFor('the build processes to end', async () => (await processesMentioning(marker)).length === 0, 10_000);
  });

  it('workers act only on the jobs they hold; users and forged credentials cannot act as agents', async () => {
    const job = await api.app.db.workerJob.findFirstOrThrow({ where: { status: 'SUCCEEDED' } });
    const other = await api.gql(
      `mutation($i: RegisterWorkerInput!) { registerWorker(input: $i) { ... on RegisterWorkerPayload { credential } } }`,
      { i: { joinToken: await joinToken(), hostname: uniqueName('other'), cpuCores: 1, memoryMb: 512, diskGb: 10, agentVersion: '1.0.0' } },
    );
    const credential = other.data.registerWorker.credential as string;
    const append = await api.gql(`mutation($j: ID!) { appendJobLogs(jobId: $j, attempt: ${job.attempt}, lines: ["forged"]) }`, { j: job.id }, { token: credential });
    expect(append.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const complete = await api.gql(`mutation($j: ID!) { completeJob(jobId: $j, attempt: ${job.attempt}, outcome: { status: FAILED, error: "x" }) { id } }`, { j: job.id }, { token: credential });
    expect(complete.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const claim = await api.gql(`mutation($j: ID!) { claimJob(jobId: $j, agentSession: "session-abcdef") { job { id } } }`, { j: job.id }, { token: credential });
    expect(claim.errors?.[0]?.extensions?.code).toBe('CONFLICT');
    const asUser = await api.gql(`mutation($j: ID!) { claimJob(jobId: $j, agentSession: "session-abcdef") { job { id } } }`, { j: job.id }, { token: admin.accessToken });
    expect(asUser.errors?.length).toBeGreaterThan(0);
    const forged = await api.gql(`mutation($j: ID!) { claimJob(jobId: $j, agentSession: "session-abcdef") { job { id } } }`, { j: job.id }, { token: `cvy_wrk_${'A'.repeat(43)}` });
    expect(forged.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    const after = await api.app.db.build.findUniqueOrThrow({ where: { id: job.buildId! } });
    expect(after.logs).not.toContain('forged');
    expect(after.status).toBe('SUCCEEDED');
  });
});

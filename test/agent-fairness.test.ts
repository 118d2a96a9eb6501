// Builds on worker agents, between hostile tenants: an agent runs more than one job at once (one
// tenant's long build does not hold the node), a claim carries no Git token (the agent fetches it once,
// for the clone, with jobGitCredential), and a worker restricted to some organizations never gets
// another's job. A real agent process plus workers driven by hand through GraphQL.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { commitFiles, initRepo, removeDirs, tempDir } from './helpers/git.js';
import { httpAppExpression, nonce } from './helpers/nix.js';
import { uniqueName } from './helpers/swarm.js';
import { subscribe } from './helpers/subscribe.js';
import { waitFor } from './helpers/wait.js';
import { createServiceThroughApi, joinTokenThroughApi, startBuildThroughApi } from './helpers/builds.js';

let api: TestApi;
let admin: TestUser;
let tenantA: TestUser;
let tenantB: TestUser;
let tenantC: TestUser;
let tenantD: TestUser;
let dir: string;
let agentWorkerId: string;
const repos: string[] = [];
const agents: ResultPromise[] = [];

const HEALTH = { type: 'HTTP', path: '/healthz', port: 8080, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 };

beforeAll(async () => {
  api = await startTestApi(
    { ...DEPLOY_TEST_SETTINGS, CONVOY_ALLOW_FILE_GIT_URLS: 'true', CONVOY_BUILD_EXECUTOR: 'agents', CONVOY_BUILD_CONCURRENCY: '4', CONVOY_WORKER_HEARTBEAT_SECONDS: '1', CONVOY_JOB_LEASE_SECONDS: '120' },
    { controller: true },
  );
  admin = await api.register('Platform Admin');
  [tenantA, tenantB, tenantC, tenantD] = [await api.register('Tenant A'), await api.register('Tenant B'), await api.register('Tenant C'), await api.register('Tenant D')];
  dir = await mkdtemp(join(tmpdir(), 'convoy-agent-fairness-'));

  // One real agent, restricted to tenants A and B: tenant C's jobs are left to the workers driven by hand.
  const hostname = uniqueName('fair-agent');
  const child = execa('node', ['--import', 'tsx', 'worker-agent/src/main.ts'], {
    cwd: new URL('..', import.meta.url),
    env: { CONVOY_API_URL: api.url, CONVOY_JOIN_TOKEN: await joinToken(), CONVOY_AGENT_STATE: join(dir, 'state.json'), CONVOY_AGENT_HOSTNAME: hostname, CONVOY_HEARTBEAT_SECONDS: '1', LOG_LEVEL: 'info', CONVOY_AGENT_JOIN_SWARM: 'false', NIX_SUBSTITUTERS: '' },
    extendEnv: true,
    reject: false,
    buffer: false,
  });
  child.stdout?.resume();
  child.stderr?.resume();
  agents.push(child);
  await waitFor('the agent to register', async () => (await api.app.db.worker.count({ where: { hostname, agentSession: { not: null } } })) > 0, 30_000);
  agentWorkerId = (await api.app.db.worker.findFirstOrThrow({ where: { hostname } })).id;
  const restricted = await setWorkerOrganizations(admin, agentWorkerId, [tenantA.organizationId, tenantB.organizationId]);
  expect(restricted.data?.setWorkerOrganizations.__typename, JSON.stringify(restricted)).toBe('Worker');
});

afterAll(async () => {
  for (const agent of agents) agent.kill('SIGKILL');
  await Promise.allSettled(agents);
  await api?.close();
  await removeDirs(...repos);
  if (dir) await rm(dir, { recursive: true, force: true });
});

const joinToken = () => joinTokenThroughApi(api, admin.accessToken);

/** A worker with no agent process: the test speaks for it. */
async function handDrivenWorker(): Promise<{ id: string; credential: string }> {
  const registered = await api.gql(
    `mutation($i: RegisterWorkerInput!) { registerWorker(input: $i) { ... on RegisterWorkerPayload { worker { id } credential } } }`,
    { i: { joinToken: await joinToken(), hostname: uniqueName('by-hand'), cpuCores: 1, memoryMb: 512, diskGb: 10, agentVersion: '1.0.0' } },
  );
  return { id: registered.data.registerWorker.worker.id, credential: registered.data.registerWorker.credential };
}

function setWorkerOrganizations(user: TestUser, workerId: string, organizationIds: string[]) {
  return api.gql(
    `mutation($w: ID!, $o: [ID!]!) { setWorkerOrganizations(workerId: $w, organizationIds: $o) { __typename ... on Worker { id buildOrganizationIds } ... on ValidationError { message fieldErrors { path message } } ... on Error { message } } }`,
    { w: workerId, o: organizationIds },
    { token: user.accessToken },
  );
}

const createService = (user: TestUser, source: Record<string, unknown>) =>
  createServiceThroughApi(api, user.accessToken, { name: uniqueName('agent-fair'), source, ports: [{ target: 8080 }], healthCheck: HEALTH });
const startBuild = (user: TestUser, serviceId: string) => startBuildThroughApi(api, user.accessToken, serviceId);

const build = (id: string) => api.app.db.build.findUniqueOrThrow({ where: { id } });

async function queuedJobOf(buildId: string) {
  await waitFor('the build to be offered to agents', async () => (await api.app.db.workerJob.count({ where: { buildId } })) > 0, 20_000);
  return api.app.db.workerJob.findUniqueOrThrow({ where: { buildId } });
}

async function gitServiceWithToken(user: TestUser, token: string): Promise<string> {
  const repo = await tempDir('agent-fair-repo');
  repos.push(repo);
  await initRepo(repo);
  await commitFiles(repo, { 'default.nix': httpAppExpression(`private ${nonce()}`) });
  return createService(user, { gitUrl: `file://${repo}`, gitBranch: 'main', gitToken: token });
}

describe('fair builds on worker agents', () => {
  it("one agent runs another organization's quick build while one organization's long build runs", async () => {
    const marker = `stuck-${nonce()}`;
    const longA = await createService(tenantA, { nixExpression: httpAppExpression(`long ${nonce()}`, `echo building ${marker}; sleep 60`) });
    const quickB = await createService(tenantB, { nixExpression: httpAppExpression(`quick ${nonce()}`, 'sleep 1') });
    const a = await startBuild(tenantA, longA);
    await waitFor("A's build to run on the agent", async () => (await build(a)).logs.includes(`building ${marker}`), 60_000);

    const b = await startBuild(tenantB, quickB);
    await waitFor("B's build to end", async () => ['SUCCEEDED', 'FAILED'].includes((await build(b)).status), 30_000);
    const doneB = await build(b);
    expect(doneB.status, doneB.logs).toBe('SUCCEEDED');
    expect(doneB.workerId).toBe(agentWorkerId);
    expect(doneB.finishedAt!.getTime() - doneB.queuedAt.getTime()).toBeLessThan(20_000);
    expect((await build(a)).status).toBe('RUNNING');

    const cancelled = await api.gql(`mutation($b: ID!) { cancelBuild(buildId: $b) { __typename } }`, { b: a }, { token: tenantA.accessToken });
    expect(cancelled.data.cancelBuild.__typename).toBe('Build');
    await waitFor("A's build to end", async () => (await build(a)).status === 'CANCELLED', 20_000);
  });

  it("the agent fetches a private repository's token for the clone only, and the build succeeds", async () => {
    const token = `ghp_${nonce()}${nonce()}PRIVATE`;
    const buildId = await startBuild(tenantA, await gitServiceWithToken(tenantA, token));
    await waitFor('the build to end', async () => ['SUCCEEDED', 'FAILED'].includes((await build(buildId)).status), 60_000);
    const done = await build(buildId);
    expect(done.status, done.logs).toBe('SUCCEEDED');
    expect(done.workerId).toBe(agentWorkerId);
    expect(done.logs).toContain('the agent fetched the repository credential for the clone');
    const job = await api.app.db.workerJob.findUniqueOrThrow({ where: { buildId } });
    expect(job.gitCredentialIssuedAt).not.toBeNull();
    expect(JSON.stringify([job, done], (_k, v) => (typeof v === 'bigint' ? String(v) : v))).not.toContain(token);
  });

  it('a claim carries no Git token: the agent gets it once for the clone, and never after the job ended', async () => {
    const token = `ghp_${nonce()}${nonce()}SECRET`;
    const serviceId = await gitServiceWithToken(tenantC, token);
    const buildId = await startBuild(tenantC, serviceId);
    const job = await queuedJobOf(buildId);
    expect(JSON.stringify(job)).not.toContain(token);

    const worker = await handDrivenWorker();
    const claim = await api.gql(`mutation($j: ID!) { claimJob(jobId: $j, agentSession: "session-fairness-1") { job { id attempt } spec } }`, { j: job.id }, { token: worker.credential });
    expect(claim.errors, JSON.stringify(claim)).toBeUndefined();
    expect(JSON.stringify(claim)).not.toContain(token);
    const claimedFields = await api.gql(`{ __type(name: "ClaimedJob") { fields { name } } }`, {}, { token: worker.credential });
    expect(claimedFields.data.__type.fields.map((f: { name: string }) => f.name).sort()).toEqual(['job', 'spec']);
    const attempt = claim.data.claimJob.job.attempt as number;

    const credential = `mutation($j: ID!, $a: Int!) { jobGitCredential(jobId: $j, attempt: $a) }`;
    // Only the current claim of the worker holding the job.
    const stale = await api.gql(credential, { j: job.id, a: attempt + 1 }, { token: worker.credential });
    expect(stale.errors?.[0]?.extensions?.code).toBe('CONFLICT');
    const other = await handDrivenWorker();
    const notHeld = await api.gql(credential, { j: job.id, a: attempt }, { token: other.credential });
    expect(notHeld.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const asTenant = await api.gql(credential, { j: job.id, a: attempt }, { token: tenantC.accessToken });
    expect(asTenant.data?.jobGitCredential ?? null).toBeNull();
    expect(asTenant.errors?.length).toBeGreaterThan(0);

    const first = await api.gql(credential, { j: job.id, a: attempt }, { token: worker.credential });
    expect(first.data.jobGitCredential).toBe(token);
    const again = await api.gql(credential, { j: job.id, a: attempt }, { token: worker.credential });
    expect(again.errors?.[0]?.extensions?.code).toBe('CONFLICT');
    expect(JSON.stringify(again)).not.toContain(token);

    const completed = await api.gql(`mutation($j: ID!, $a: Int!) { completeJob(jobId: $j, attempt: $a, outcome: { status: FAILED, error: "stopped by the test" }) { id status } }`, { j: job.id, a: attempt }, { token: worker.credential });
    expect(completed.data.completeJob.status).toBe('FAILED');
    const afterEnd = await api.gql(credential, { j: job.id, a: attempt }, { token: worker.credential });
    expect(afterEnd.errors?.[0]?.extensions?.code).toBe('CONFLICT');

    await waitFor('the build to end', async () => (await build(buildId)).status === 'FAILED', 10_000);
    const rows = JSON.stringify([await api.app.db.workerJob.findMany(), await api.app.db.build.findMany(), await api.app.db.auditLogEntry.findMany()], (_k, v) => (typeof v === 'bigint' ? String(v) : v));
    expect(rows).not.toContain(token);
  });

  it("a worker restricted to some organizations is neither offered nor given another organization's job", async () => {
    const serviceId = await gitServiceWithToken(tenantC, `ghp_${nonce()}`);
    const buildId = await startBuild(tenantC, serviceId);
    const job = await queuedJobOf(buildId);

    const restricted = await handDrivenWorker();
    // Only platform admins set it, and only to organizations that exist.
    const byTenant = await setWorkerOrganizations(tenantD, restricted.id, [tenantD.organizationId]);
    expect(byTenant.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    const unknown = await setWorkerOrganizations(admin, restricted.id, [tenantD.organizationId, 'no-such-organization']);
    expect(unknown.data.setWorkerOrganizations).toMatchObject({ __typename: 'ValidationError', fieldErrors: [{ path: ['organizationIds', '1'] }] });
    const set = await setWorkerOrganizations(admin, restricted.id, [tenantD.organizationId]);
    expect(set.data.setWorkerOrganizations).toEqual({ __typename: 'Worker', id: restricted.id, buildOrganizationIds: [tenantD.organizationId] });

    // Its offers are D's jobs only: C's queued job is left out; an unrestricted worker's offers include it.
    const offers = `subscription { workerJobs { action jobId } }`;
    const restrictedOffers = subscribe(api.url, restricted.credential, offers, {}, 'workerJobs');
    const free = await handDrivenWorker();
    const freeOffers = subscribe(api.url, free.credential, offers, {}, 'workerJobs');
    await freeOffers.waitFor((events) => events.some((e) => e.jobId === job.id));
    const buildOfD = await startBuild(tenantD, await gitServiceWithToken(tenantD, `ghp_${nonce()}`));
    const jobOfD = await queuedJobOf(buildOfD);
    await restrictedOffers.waitFor((events) => events.some((e) => e.jobId === jobOfD.id), 20_000);
    expect(restrictedOffers.events.map((e) => e.jobId)).not.toContain(job.id);
    await Promise.all([restrictedOffers.close(), freeOffers.close()]);

    // Claiming it anyway: NOT_FOUND, as for a job that does not exist; the job stays queued.
    const claim = `mutation($j: ID!, $s: String!) { claimJob(jobId: $j, agentSession: $s) { job { id } } }`;
    const refused = await api.gql(claim, { j: job.id, s: 'session-restricted' }, { token: restricted.credential });
    expect(refused.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');
    const missing = await api.gql(claim, { j: 'no-such-job', s: 'session-restricted' }, { token: restricted.credential });
    expect(refused.errors?.[0]?.message.replace(job.id, 'ID')).toBe(missing.errors?.[0]?.message.replace('no-such-job', 'ID'));
    expect(await api.app.db.workerJob.findUniqueOrThrow({ where: { id: job.id } })).toMatchObject({ status: 'QUEUED', workerId: null });
    // The real agent (restricted to A and B) has not taken it either.
    expect((await build(buildId)).workerId).toBeNull();

    const complete = `mutation($j: ID!) { completeJob(jobId: $j, attempt: 1, outcome: { status: FAILED, error: "stopped by the test" }) { id status } }`;
    const taken = await api.gql(claim, { j: job.id, s: 'session-unrestricted' }, { token: free.credential });
    expect(taken.data.claimJob.job.id).toBe(job.id);
    expect((await api.gql(complete, { j: job.id }, { token: free.credential })).data.completeJob.status).toBe('FAILED');
    // Its own organizations' jobs it takes.
    const own = await api.gql(claim, { j: jobOfD.id, s: 'session-restricted' }, { token: restricted.credential });
    expect(own.data.claimJob.job.id).toBe(jobOfD.id);
    expect((await api.gql(complete, { j: jobOfD.id }, { token: restricted.credential })).data.completeJob.status).toBe('FAILED');
  });
});

// Template saves evaluate tenant Nix code where builds run, never in the API process: with no build
// executor the API cannot evaluate at all and says so; with a controller (executor `controller`) or a
// worker agent (executor `agents`) the same save succeeds, the job records who evaluated it, and an
// agent busy with a long build still answers evaluations at once.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from './helpers/api.js';
import { busyboxExpression, nonce, testNixBuilder } from './helpers/nix.js';
import { waitFor } from './helpers/wait.js';
import { uniqueName } from './helpers/swarm.js';
import { createApp } from '../src/app.js';
import { startControllers } from '../src/controller.js';
import { createQueue, QUEUES } from '../src/platform/queue/queues.js';
import { publishJob } from '../src/modules/builds/agent-jobs.js';
import type { EvaluationAnswer } from '../src/modules/builds/evaluations.js';
import { WorkerAgent } from '../worker-agent/src/agent.js';
import { joinTokenThroughApi } from './helpers/builds.js';

const CREATE = `mutation($i: CreateTemplateInput!) { createTemplate(input: $i) { __typename ... on Template { id slug } ... on ValidationError { fieldErrors { path message } } ... on Error { message } } }`;
const PLAIN_DERIVATION = `builtins.derivation { name = "plain-${nonce()}"; system = builtins.currentSystem; builder = "/bin/sh"; }`;
const TIMEOUT_SECONDS = 2;
const NO_EXECUTOR = `the expression could not be evaluated: no build executor answered within ${TIMEOUT_SECONDS} s`;

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

async function apiWith(executor: 'controller' | 'agents'): Promise<TestApi> {
  const api = await startTestApi({ CONVOY_BUILD_EXECUTOR: executor, CONVOY_EVALUATION_TIMEOUT_SECONDS: String(TIMEOUT_SECONDS), CONVOY_WORKER_HEARTBEAT_SECONDS: '1' });
  cleanups.push(() => api.close());
  return api;
}

async function createTemplate(api: TestApi, token: string, slug: string, expression = PLAIN_DERIVATION) {
  const result = await api.gql(CREATE, { i: { slug, name: slug, category: 'WEB', components: [{ name: 'app', expression, port: 8080 }] } }, { token });
  return result.data?.createTemplate ?? result;
}

describe('executor controller', () => {
  it('the API alone cannot evaluate; a controller process evaluates, and its job says so', async () => {
    const api = await apiWith('controller');
    const owner = await api.register('Owner');

    const started = Date.now();
    const refused = await createTemplate(api, owner.accessToken, 'no-executor');
    expect(refused).toMatchObject({ __typename: 'ValidationError', fieldErrors: [{ path: ['components', '0', 'expression'], message: NO_EXECUTOR }] });
    expect(Date.now() - started).toBeGreaterThanOrEqual(TIMEOUT_SECONDS * 1000);
    expect(await api.app.db.template.count({ where: { slug: 'no-executor' } })).toBe(0);
    // The request it gave up on does not wait for a controller that starts later.
    const queue = createQueue(QUEUES.evaluations, { redisUrl: api.config.redisUrl, prefix: api.config.redisPrefix, onError: () => {} });
    cleanups.push(() => queue.close());
    expect(await queue.getJobCounts('waiting', 'delayed', 'active')).toEqual({ waiting: 0, delayed: 0, active: 0 });

    // A controller of its own (another App, as another process would be), against the same database and Redis.
    const controllerApp = await createApp(api.config, { builder: testNixBuilder(), log: pino({ level: 'silent' }) });
    const controller = await startControllers(controllerApp);
    cleanups.push(async () => {
      await controller.close();
      await controllerApp.close();
    });
    const saved = await createTemplate(api, owner.accessToken, 'with-controller');
    expect(saved).toMatchObject({ __typename: 'Template', slug: 'with-controller' });
    const broken = await createTemplate(api, owner.accessToken, 'broken', 'notDefinedAnywhere + 1');
    expect(broken.fieldErrors).toEqual([{ path: ['components', '0', 'expression'], message: expect.stringMatching(/^error: undefined variable 'notDefinedAnywhere'/) }]);

    const answers = (await queue.getCompleted()).map((job) => job.returnvalue as EvaluationAnswer);
    expect(answers).toHaveLength(2);
    expect(answers).toContainEqual({ ok: true, drvPath: expect.stringMatching(/^\/nix\/store\/[a-z0-9]{32}-plain-[0-9a-f]+\.drv$/), evaluatedBy: expect.stringMatching(/^controller /) });
    expect(answers).toContainEqual({ ok: false, error: expect.stringContaining('notDefinedAnywhere'), evaluatedBy: expect.stringMatching(/^controller /) });
  });
});

describe('executor agents', () => {
  it('the API alone cannot evaluate; an agent evaluates beside a long build, and the job names its worker', async () => {
    const api = await apiWith('agents');
    const admin = await api.register('Platform Admin');

    const refused = await createTemplate(api, admin.accessToken, 'no-agent');
    expect(refused).toMatchObject({ __typename: 'ValidationError', fieldErrors: [{ path: ['components', '0', 'expression'], message: NO_EXECUTOR }] });
    expect(await api.app.db.template.count({ where: { slug: 'no-agent' } })).toBe(0);
    // Given up on: no agent connecting later takes it.
    expect(await api.app.db.workerJob.findMany({ where: { kind: 'EVALUATE' } })).toEqual([
      expect.objectContaining({ status: 'FAILED', error: NO_EXECUTOR, workerId: null, organizationId: admin.organizationId }),
    ]);

    const joinToken = await joinTokenThroughApi(api, admin.accessToken);
    const dir = await mkdtemp(join(tmpdir(), 'convoy-evaluation-agent-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const hostname = uniqueName('evaluator');
    // One build at a time: the long build below holds the agent's only build slot.
    const agent = new WorkerAgent({
      apiUrl: api.url, joinToken, stateFile: join(dir, 'state.json'), hostname, heartbeatSeconds: 1,
      docker: api.app.docker, swarmNodeId: null, joinSwarm: false, log: pino({ level: 'silent' }),
      jobs: { builder: testNixBuilder(), docker: api.app.docker, concurrency: 1 },
    });
    cleanups.push(() => agent.stop());
    void agent.wait().catch(() => {});
    await waitFor('the agent to be ONLINE', async () => (await api.app.db.worker.count({ where: { hostname, status: 'ONLINE' } })) > 0, 20_000);
    const worker = await api.app.db.worker.findFirstOrThrow({ where: { hostname } });

    // A build job as the controller offers one (runOnAgent), sleeping far longer than a save may wait.
    const marker = nonce();
    const build = await api.app.db.workerJob.create({
      data: {
        kind: 'BUILD', organizationId: admin.organizationId,
        payload: { buildId: `build-${marker}`, serviceId: `service-${marker}`, source: { kind: 'expression', expression: busyboxExpression(`slow-${marker}`, 'sleep 60; mkdir -p $out') }, ports: [], imageTag: `convoy/test/${marker}:slow`, registryUrl: null, timeoutMs: 120_000 },
      },
    });
    await publishJob(api.app, { action: 'OFFER', jobId: build.id, kind: build.kind, workerId: null, organizationId: admin.organizationId });
    await waitFor('the agent to take the build', async () => (await api.app.db.workerJob.findUniqueOrThrow({ where: { id: build.id } })).status === 'CLAIMED', 10_000);

    // Old evaluation jobs (finished, or left unfinished by an API that crashed) are removed by the next save.
    const hourAndMinuteAgo = new Date(Date.now() - 61 * 60_000);
    const stale = await Promise.all([
      api.app.db.workerJob.create({ data: { kind: 'EVALUATE', organizationId: admin.organizationId, payload: { expression: 'old' }, status: 'SUCCEEDED', createdAt: hourAndMinuteAgo, finishedAt: hourAndMinuteAgo } }),
      api.app.db.workerJob.create({ data: { kind: 'EVALUATE', organizationId: admin.organizationId, payload: { expression: 'abandoned' }, createdAt: hourAndMinuteAgo } }),
    ]);
    const saved = await createTemplate(api, admin.accessToken, 'with-agent');
    expect(await api.app.db.workerJob.count({ where: { id: { in: stale.map((j) => j.id) } } })).toBe(0);
    expect(saved).toMatchObject({ __typename: 'Template', slug: 'with-agent' });
    const broken = await createTemplate(api, admin.accessToken, 'broken', '{ a = ; }');
    expect(broken.fieldErrors).toEqual([{ path: ['components', '0', 'expression'], message: expect.stringMatching(/^error: syntax error, unexpected ';'/) }]);
    // The build still runs: evaluations did not wait for its slot.
    expect(await api.app.db.workerJob.findUniqueOrThrow({ where: { id: build.id } })).toMatchObject({ status: 'CLAIMED', workerId: worker.id });

    const evaluations = await api.app.db.workerJob.findMany({ where: { kind: 'EVALUATE', workerId: { not: null } }, orderBy: { createdAt: 'asc' } });
    expect(evaluations).toEqual([
      expect.objectContaining({ status: 'SUCCEEDED', workerId: worker.id, result: { derivation: expect.stringMatching(/^\/nix\/store\/[a-z0-9]{32}-plain-[0-9a-f]+\.drv$/) } }),
      expect.objectContaining({ status: 'FAILED', workerId: worker.id, error: expect.stringMatching(/^error: syntax error/) }),
    ]);
  });
});

describe('what an agent may answer', () => {
  it('an evaluation succeeds only with its derivation and keeps nothing else; a build only with its image', async () => {
    const api = await apiWith('agents');
    const admin = await api.register('Platform Admin');
    const joinToken = await joinTokenThroughApi(api, admin.accessToken);
    const registered = await api.gql(
      `mutation($i: RegisterWorkerInput!) { registerWorker(input: $i) { ... on RegisterWorkerPayload { credential } } }`,
      { i: { joinToken, hostname: uniqueName('by-hand'), cpuCores: 1, memoryMb: 512, diskGb: 10, agentVersion: '1.0.0' } },
    );
    const worker = { token: registered.data.registerWorker.credential as string };
    const claim = `mutation($j: ID!) { claimJob(jobId: $j, agentSession: "session-evaluation-1") { job { attempt kind } spec } }`;
    const complete = `mutation($j: ID!, $o: BuildOutcomeInput!) { completeJob(jobId: $j, attempt: 1, outcome: $o) { status } }`;
    const derivation = `/nix/store/${'a'.repeat(32)}-plain.drv`;

    const evaluation = await api.app.db.workerJob.create({ data: { kind: 'EVALUATE', organizationId: admin.organizationId, payload: { expression: '1' }, maxAttempts: 1 } });
    expect((await api.gql(claim, { j: evaluation.id }, worker)).data.claimJob).toEqual({ job: { attempt: 1, kind: 'EVALUATE' }, spec: { expression: '1' } });
    const bare = await api.gql(complete, { j: evaluation.id, o: { status: 'SUCCEEDED' } }, worker);
    expect(bare.errors?.[0].message).toMatch(/a successful evaluation names its derivation/);
    const answered = await api.gql(complete, { j: evaluation.id, o: { status: 'SUCCEEDED', derivation, imageRef: 'convoy/x/y:z', storePath: `/nix/store/${'b'.repeat(32)}-out` } }, worker);
    expect(answered.data.completeJob).toEqual({ status: 'SUCCEEDED' });
    const stored = await api.app.db.workerJob.findUniqueOrThrow({ where: { id: evaluation.id } });
    expect([stored.status, stored.result]).toEqual(['SUCCEEDED', { derivation }]);

    const build = await api.app.db.workerJob.create({ data: { kind: 'BUILD', organizationId: admin.organizationId, payload: {} } });
    await api.gql(claim, { j: build.id }, worker);
    const imageless = await api.gql(complete, { j: build.id, o: { status: 'SUCCEEDED', derivation } }, worker);
    expect(imageless.errors?.[0].message).toMatch(/a successful build names its image/);
    expect(await api.app.db.workerJob.findUniqueOrThrow({ where: { id: build.id } })).toMatchObject({ status: 'CLAIMED' });
  });
});

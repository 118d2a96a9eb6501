// The controller-kill rig shared by test/controller-chaos.test.ts (short form) and bench/chaos.ts (long
// form): the API and the controller(s) as real child processes on a database and Redis prefix of their
// own, one service with 2 replicas, and rounds of "change env, deploy, kill -9 a controller at a random
// moment, start a new one", each checked against what Swarm runs.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEPLOY_TEST_SETTINGS } from './api.js';
import { createTestDatabase, deleteRedisPrefix, REDIS_URL, uniqueRedisPrefix } from './database.js';
import { buildTestImage, removeTestImages, TEST_APP_PORT } from './images.js';
import { startConvoyProcess, type ConvoyProcess } from './private-services.js';
import { freeHostPort, SwarmCleanup, testDocker, uniqueName } from './swarm.js';
import { waitFor } from './wait.js';
import { createDb, type Db } from '../../src/platform/db/client.js';
import { organizationNetworkName, swarmServiceName } from '../../src/modules/deployments/spec.js';
import { DeploymentStatus } from '../../src/generated/prisma/enums.js';

const HEALTH = { type: 'HTTP', path: '/health', port: TEST_APP_PORT, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 };
const REPLICAS = 2;
const UNFINISHED: DeploymentStatus[] = [DeploymentStatus.QUEUED, DeploymentStatus.DEPLOYING];

export type ChaosRound = {
  round: number;
  controllers: number;
  /** How long after the deployService answer the controller was killed. */
  killAfterMs: number;
  /** The deployment's status at the kill (a late kill can find it RUNNING already). */
  statusAtKill: string;
  /** From the kill until the deployment was RUNNING with the new env on every task. */
  convergedMs: number;
  /** From the kill until the replacement controller said it runs (its boot, part of convergedMs). */
  replacementReadyMs: number | null;
  problems: string[];
};

export type ChaosRig = {
  /** One round: update env, deploy, kill -9 one controller mid-deploy, start a new one, check the outcome. */
  round(round: number, options?: { maxKillDelayMs?: number }): Promise<ChaosRound>;
  /** Runs this many controllers from now on (starting or stopping some). */
  useControllers(count: number): Promise<void>;
  /** Everything the processes printed (for a failure message). */
  output(): string;
  close(): Promise<void>;
};

export async function startChaosRig(options: { controllers?: number } = {}): Promise<ChaosRig> {
  const database = await createTestDatabase();
  const prefix = uniqueRedisPrefix();
  const port = await freeHostPort();
  const env: Record<string, string> = {
    ...DEPLOY_TEST_SETTINGS,
    NODE_ENV: 'test',
    DATABASE_URL: database.url,
    REDIS_URL,
    REDIS_PREFIX: prefix,
    CONVOY_SECRET_KEY: randomBytes(32).toString('hex'),
    MIGRATE_ON_START: 'false',
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'info',
  };
  const tag = `${uniqueName('convoy-chaos')}:app`;
  const cleanup = new SwarmCleanup();
  const { db } = createDb({ connectionString: database.url, poolSize: 2 });
  const processes: ConvoyProcess[] = [];
  let controllers: ConvoyProcess[] = [];
  const url = `http://127.0.0.1:${port}`;
  let token = '';
  let serviceId = '';

  const close = async () => {
    await Promise.allSettled(processes.map((p) => p.kill()));
    await cleanup.run().catch(() => undefined);
    await db.$disconnect().catch(() => undefined);
    await database.drop().catch(() => undefined);
    await deleteRedisPrefix(prefix).catch(() => undefined);
    await removeTestImages([tag]).catch(() => undefined);
  };

  const gql = async (query: string, variables: Record<string, unknown> = {}) => {
    const response = await fetch(`${url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify({ query, variables }),
    });
    const result = (await response.json()) as { data?: any; errors?: unknown };
    if (result.errors) throw new Error(`GraphQL errors: ${JSON.stringify(result.errors)}`);
    return result.data;
  };

  const startController = () => {
    const controller = startConvoyProcess('controller', env);
    processes.push(controller);
    controllers.push(controller);
    return controller;
  };

  const deploy = async (version: string) => {
    await gql(`mutation($id: ID!, $v: String!) { updateService(id: $id, input: { env: [{ name: "VERSION", value: $v }] }) { __typename } }`, { id: serviceId, v: version });
    const data = await gql(`mutation($s: ID!) { deployService(serviceId: $s) { __typename ... on Deployment { id } ... on Error { message } } }`, { s: serviceId });
    if (data.deployService.__typename !== 'Deployment') throw new Error(`deployService: ${JSON.stringify(data.deployService)}`);
    return data.deployService.id as string;
  };

  const waitFinished = async (deploymentId: string, timeoutMs: number) => {
    let status = '';
    await waitFor(`deployment ${deploymentId} to finish`, async () => {
      status = (await db.deployment.findUniqueOrThrow({ where: { id: deploymentId } })).status;
      return !UNFINISHED.includes(status as DeploymentStatus);
    }, timeoutMs, 50);
    return status;
  };

  /** What a user would check: the new env on every task, one Swarm service, nothing left unfinished. */
  const check = async (deploymentId: string, version: string): Promise<string[]> => {
    const problems: string[] = [];
    const swarmServices = await testDocker.listServices({ filters: { label: [`convoy.service-id=${serviceId}`] } });
    if (swarmServices.length !== 1) problems.push(`${swarmServices.length} Swarm services`);
    const tasks = swarmServices.length ? await testDocker.listTasks({ filters: { service: [swarmServices[0].ID!], 'desired-state': ['running'] } }) : [];
    const running = tasks.filter((t) => t.Status?.State === 'running');
    if (running.length !== REPLICAS) problems.push(`${running.length} running tasks, wanted ${REPLICAS}`);
    for (const task of running) {
      const taskEnv = (task.Spec?.ContainerSpec?.Env ?? []) as string[];
      if (!taskEnv.includes(`VERSION=${version}`)) problems.push(`task ${task.ID} runs ${taskEnv.find((e) => e.startsWith('VERSION=')) ?? 'no VERSION'}`);
    }
    const service = await db.service.findUniqueOrThrow({ where: { id: serviceId } });
    if (service.currentDeploymentId !== deploymentId) problems.push(`current deployment is ${service.currentDeploymentId}, not ${deploymentId}`);
    if (service.status !== 'RUNNING') problems.push(`service is ${service.status}`);
    const stuck = await db.deployment.count({ where: { serviceId, status: { in: UNFINISHED } } });
    if (stuck) problems.push(`${stuck} deployment(s) still queued or deploying`);
    return problems;
  };

  try {
    const api = startConvoyProcess('api', env);
    processes.push(api);
    // Booting takes seconds under tsx: the controllers start meanwhile.
    for (let i = 0; i < (options.controllers ?? 1); i++) startController();
    await waitFor('the API to answer /healthz', async () => (await fetch(`${url}/healthz`).catch(() => null))?.ok === true, 60_000, 200);
    const image = await buildTestImage(tag, { body: 'chaos' });
    const registered = await gql(
      `mutation($input: RegisterInput!) { register(input: $input) { __typename ... on AuthPayload { user { memberships { organization { id } } } tokens { accessToken } } } }`,
      { input: { email: `chaos-${randomBytes(4).toString('hex')}@example.com`, password: 'correct horse battery staple', name: 'Chaos' } },
    );
    token = registered.register.tokens.accessToken;
    cleanup.network(organizationNetworkName(registered.register.user.memberships[0].organization.id));
    const created = await gql(`mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on Service { id } ... on Error { message } } }`, {
      i: { name: uniqueName('chaos'), source: { image }, healthCheck: HEALTH, replicas: REPLICAS, env: [{ name: 'VERSION', value: '0' }] },
    });
    if (created.createService.__typename !== 'Service') throw new Error(`createService: ${JSON.stringify(created.createService)}`);
    serviceId = created.createService.id;
    cleanup.service(swarmServiceName(serviceId));
    const first = await deploy('0');
    const status = await waitFinished(first, 90_000);
    if (status !== 'RUNNING') throw new Error(`the first deployment ended ${status}`);
  } catch (error) {
    await close();
    throw error;
  }

  return {
    async useControllers(count) {
      while (controllers.length < count) startController();
      while (controllers.length > count) await controllers.pop()!.kill();
    },
    async round(round, { maxKillDelayMs = 2500 } = {}) {
      const version = `r${round}-${randomBytes(3).toString('hex')}`;
      const deploymentId = await deploy(version);
      const killAfterMs = Math.floor(Math.random() * maxKillDelayMs);
      await sleep(killAfterMs);
      const victim = controllers.splice(Math.floor(Math.random() * controllers.length), 1)[0];
      await victim.kill();
      const killedAt = Date.now();
      const statusAtKill = (await db.deployment.findUniqueOrThrow({ where: { id: deploymentId } })).status;
      const replacement = startController();
      let replacementReadyMs: number | null = null;
      const ready = waitFor('the replacement controller', () => replacement.output().includes('Convoy controller running'), 90_000, 50).then(() => (replacementReadyMs = Date.now() - killedAt), () => undefined);
      const final = await waitFinished(deploymentId, 90_000).catch((error: Error) => `not finished (${error.message})`);
      const convergedMs = Date.now() - killedAt;
      await Promise.race([ready, sleep(100)]);
      const problems = final === 'RUNNING' ? await check(deploymentId, version) : [`deployment ended ${final}`];
      return { round, controllers: controllers.length, killAfterMs, statusAtKill, convergedMs, replacementReadyMs, problems };
    },
    output: () => processes.map((p) => `--- ${p.kind}\n${p.output()}`).join('\n'),
    close,
  };
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

// Failover on a real three-node swarm (test/helpers/swarm-lab.ts), with one real agent process per
// node and the API's orchestrator on node 1, the manager: a node lost, an agent lost while its engine
// runs, a node drained and removed. Alice's organization moves services automatically, Bob's manually,
// Carol's not at all.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa, type ResultPromise } from 'execa';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { addMemberByInvitation } from './helpers/members.js';
import { subscribe } from './helpers/subscribe.js';
import { startSwarmLab, type SwarmLab } from './helpers/swarm-lab.js';
import { uniqueName } from './helpers/swarm.js';
import { swarmServiceName } from '../src/modules/deployments/spec.js';
import { EXCLUDED_NODES_LABEL } from '../src/platform/orchestrator/orchestrator.js';
import { MIGRATION_NOTIFICATIONS } from '../src/modules/workers/failover.js';

const APP_IMAGE = 'convoy-lab/app:1';
const UNHEALTHY_SECONDS = 3;
const SWEEP_SECONDS = 1;
const FAILOVER_TIMEOUT_SECONDS = 45;
// Room for a rollout of three replicas on a loaded 2-core machine (vfs nodes, parallel suites).
const DEPLOY_TIMEOUT_SECONDS = 150;
// What Swarm itself needs to settle a change on a loaded machine: a task stopping (grace period plus the
// 2 s Docker waits on an overlay network), a Down node's tasks rescheduled, a new task started.
const SWARM_SETTLE_MS = 60_000;
// How long a state Convoy writes right after Swarm settles (a service's status, a label) may lag.
const CONVOY_FOLLOWS_MS = 30_000;
// Each test is a chain of such waits.
const FAILOVER_TEST_TIMEOUT_MS = 480_000;

let lab: SwarmLab;
let api: TestApi;
let admin: TestUser;
let alice: TestUser;
let bob: TestUser;
let carol: TestUser;
let stateDir: string;
const agents = new Map<number, Agent>();
const workerIds = new Map<number, string>();
let aliceService: string;
let bobService: string;
let carolService: string;

beforeAll(async () => {
  lab = await startSwarmLab({ images: [{ tag: APP_IMAGE, body: 'cluster app' }] });
  api = await startTestApi(
    {
      ...DEPLOY_TEST_SETTINGS,
      DOCKER_HOST: lab.dockerHost(1),
      CONVOY_WORKER_HEARTBEAT_SECONDS: '1',
      CONVOY_WORKER_SWEEP_SECONDS: String(SWEEP_SECONDS),
      CONVOY_WORKER_UNHEALTHY_SECONDS: String(UNHEALTHY_SECONDS),
      CONVOY_WORKER_OFFLINE_SECONDS: '120',
      CONVOY_FAILOVER_WAIT_SECONDS: '2',
      CONVOY_FAILOVER_TIMEOUT_SECONDS: String(FAILOVER_TIMEOUT_SECONDS),
      CONVOY_DEPLOY_TIMEOUT_SECONDS: String(DEPLOY_TIMEOUT_SECONDS),
    },
    { controller: true },
  );
  stateDir = await mkdtemp(join(tmpdir(), 'convoy-cluster-test-'));
  // The first account is the platform admin.
  admin = await api.register('Admin');
  [alice, bob, carol] = await Promise.all([api.register('Alice'), api.register('Bob'), api.register('Carol')]);
  const SET_POLICY = `mutation($p: MigrationPolicy!) { setMigrationPolicy(policy: $p) { __typename ... on Organization { migrationPolicy } } }`;
  expect((await api.gql(SET_POLICY, { p: 'MANUAL' }, { token: bob.accessToken })).data.setMigrationPolicy).toEqual({ __typename: 'Organization', migrationPolicy: 'MANUAL' });
  expect((await api.gql(SET_POLICY, { p: 'NONE' }, { token: carol.accessToken })).data.setMigrationPolicy).toEqual({ __typename: 'Organization', migrationPolicy: 'NONE' });

  const tokens = await Promise.all([1, 2, 3].map(() => joinToken()));
  await Promise.all([1, 2, 3].map((n) => startAgent(n, tokens[n - 1])));
  for (const n of [1, 2, 3]) {
    const worker = await api.app.db.worker.findUniqueOrThrow({ where: { id: workerIds.get(n)! } });
    expect(worker.swarmNodeId).toBe(lab.swarmNodeId(n));
  }
  [aliceService, bobService, carolService] = await Promise.all([deployService(alice, 'web'), deployService(bob, 'api'), deployService(carol, 'db')]);
}, 120_000 + (DEPLOY_TIMEOUT_SECONDS + 60) * 1000);

afterAll(async () => {
  for (const agent of agents.values()) agent.process.kill('SIGKILL');
  await Promise.allSettled([...agents.values()].map((agent) => agent.process));
  await api?.close();
  await lab?.down();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- agents

type Agent = { process: ResultPromise; lines: Record<string, any>[] };

async function joinToken(): Promise<string> {
  const result = await api.gql(`mutation { createWorkerJoinToken(ttlSeconds: 600) { ... on CreateWorkerJoinTokenPayload { token } } }`, {}, { token: admin.accessToken });
  return result.data.createWorkerJoinToken.token;
}

/** A real agent process for node n, reporting from that node's engine; resumes from its state file when it has one. */
async function startAgent(n: number, token?: string): Promise<void> {
  const child = execa('node', ['--import', 'tsx', 'worker-agent/src/main.ts'], {
    cwd: new URL('..', import.meta.url),
    env: {
      CONVOY_API_URL: api.url,
      CONVOY_JOIN_TOKEN: token ?? '',
      CONVOY_AGENT_STATE: join(stateDir, `node-${n}.json`),
      CONVOY_AGENT_HOSTNAME: lab.hostname(n),
      CONVOY_HEARTBEAT_SECONDS: '1',
      CONVOY_AGENT_JOIN_SWARM: 'false',
      DOCKER_HOST: lab.dockerHost(n),
      LOG_LEVEL: 'info',
    },
    extendEnv: true,
    reject: false,
    buffer: false,
  });
  const agent: Agent = { process: child, lines: [] };
  child.stdout!.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) if (line.trim()) agent.lines.push(parseLine(line));
  });
  child.stderr!.on('data', (chunk: Buffer) => agent.lines.push({ stderr: chunk.toString() }));
  agents.set(n, agent);
  const identified = await eventually(`agent ${n} to start`, 30_000, async () => {
    if (child.exitCode !== null) throw new Error(`agent ${n} exited with ${child.exitCode}: ${JSON.stringify(agent.lines).slice(-1500)}`);
    return agent.lines.find((l) => l.msg === 'registered; state saved' || l.msg?.startsWith('resuming as a registered worker'));
  });
  workerIds.set(n, identified.workerId);
  await waitForWorkerStatus(n, 'ONLINE', 30_000);
}

function parseLine(line: string): Record<string, any> {
  try {
    return JSON.parse(line);
  } catch {
    return { raw: line };
  }
}

async function killAgent(n: number): Promise<void> {
  const agent = agents.get(n)!;
  agent.process.kill('SIGKILL');
  await agent.process;
  agents.delete(n);
}

// ---------------------------------------------------------------- helpers

async function eventually<T>(what: string, timeoutMs: number, check: () => Promise<T | null | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      if ((error as Error).message.includes('exited with')) throw error;
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(200);
  }
}

async function waitForWorkerStatus(n: number, status: string, timeoutMs: number) {
  return eventually(`worker ${n} to be ${status}`, timeoutMs, async () => {
    const worker = await api.app.db.worker.findUniqueOrThrow({ where: { id: workerIds.get(n)! } });
    return worker.status === status ? worker : null;
  });
}

async function deployService(owner: TestUser, name: string): Promise<string> {
  const created = await api.gql(
    `mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on Service { id } ... on Error { message } } }`,
    { i: { name: uniqueName(name), source: { image: APP_IMAGE }, replicas: 3 } },
    { token: owner.accessToken },
  );
  expect(created.data.createService.__typename, JSON.stringify(created)).toBe('Service');
  const id = created.data.createService.id as string;
  await deploy(owner, id);
  return id;
}

/**
 * Deploys the service again and follows its deploymentEvents until Convoy says the rollout ended, so the
 * wait is Convoy's own deploy timeout (plus room for the last event), not a guess of the test's.
 */
async function deploy(owner: TestUser, serviceId: string): Promise<void> {
  const deployed = await api.gql(`mutation($s: ID!) { deployService(serviceId: $s) { __typename ... on Deployment { id } } }`, { s: serviceId }, { token: owner.accessToken });
  const deploymentId = deployed.data.deployService.id as string;
  const events = subscribe(api.url, owner.accessToken, `subscription($id: ID!) { deploymentEvents(deploymentId: $id) { status message } }`, { id: deploymentId }, 'deploymentEvents');
  try {
    const seen = await events.waitFor((e) => e.some((x: any) => FINAL_DEPLOYMENT_STATUSES.includes(x.status)), (DEPLOY_TIMEOUT_SECONDS + 30) * 1000);
    const final = seen.find((x: any) => FINAL_DEPLOYMENT_STATUSES.includes(x.status));
    if (final.status !== 'RUNNING') throw new Error(`deployment ${deploymentId} of ${serviceId} ended ${final.status}: ${final.message}`);
  } finally {
    await events.close();
  }
}

const FINAL_DEPLOYMENT_STATUSES = ['RUNNING', 'COMPLETED', 'FAILED', 'ROLLED_BACK', 'SUPERSEDED', 'CANCELLED'];

/** Node number -> running replicas of the service, from Swarm (through node 1). */
async function placement(serviceId: string): Promise<Record<number, number>> {
  const swarm = await api.app.orchestrator.findServiceByName(swarmServiceName(serviceId));
  const tasks = await api.app.orchestrator.listTasks(swarm!.id);
  const counts: Record<number, number> = {};
  for (const task of tasks.filter((t) => t.desiredState === 'running' && t.state === 'running')) {
    const n = lab.nodeNumberOf(task.nodeId)!;
    counts[n] = (counts[n] ?? 0) + 1;
  }
  return counts;
}

const total = (counts: Record<number, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

/**
 * The placement once Swarm has settled on three running replicas that `accept` allows: right after a
 * migration or a rollout, a replaced task may still be stopping (or a new one starting) for a while.
 */
async function settledPlacement(serviceId: string, what: string, accept: (counts: Record<number, number>) => boolean): Promise<Record<number, number>> {
  return eventually(`${what} (three running replicas of ${serviceId})`, SWARM_SETTLE_MS, async () => {
    const counts = await placement(serviceId);
    return total(counts) === 3 && accept(counts) ? counts : undefined;
  });
}

async function waitForServiceStatus(serviceId: string, status: string) {
  await eventually(`service ${serviceId} to be ${status}`, CONVOY_FOLLOWS_MS, async () => (await serviceStatus(serviceId)) === status);
}

const MIGRATIONS = `query($s: ID!) { serviceMigrations(serviceId: $s, first: 10) { edges { node {
  id policy status fromWorkerId fromHostname fromNodeId message finishedAt
  moves { taskId slot fromNodeId toNodeId toWorkerId toHostname }
} } } }`;

async function migrations(owner: TestUser, serviceId: string): Promise<any[]> {
  const result = await api.gql(MIGRATIONS, { s: serviceId }, { token: owner.accessToken });
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  return result.data.serviceMigrations.edges.map((e: any) => e.node);
}

// A migration ends within Convoy's failover timeout; more room for the sweep that opens it on a loaded machine.
async function migrationFrom(owner: TestUser, serviceId: string, n: number, status: string, timeoutMs = (FAILOVER_TIMEOUT_SECONDS + 30) * 1000) {
  return eventually(`a ${status} migration of ${serviceId} from node ${n}`, timeoutMs, async () =>
    (await migrations(owner, serviceId)).find((m) => m.fromWorkerId === workerIds.get(n) && m.status === status),
  );
}

async function serviceStatus(serviceId: string) {
  return (await api.app.db.service.findUniqueOrThrow({ where: { id: serviceId } })).status;
}

function notifications(kind: string, serviceId: string) {
  return api.app.db.notification.findMany({ where: { kind, data: { path: ['serviceId'], equals: serviceId } } });
}

// ---------------------------------------------------------------- the tests

describe('failover on a three-node swarm', () => {
  it('a node lost: its worker turns UNHEALTHY, services return to their replica count on the other nodes, owners hear of it; back ONLINE on restart', async () => {
    expect(await placement(aliceService)).toEqual({ 1: 1, 2: 1, 3: 1 });
    await Promise.all([killAgent(3), lab.killNode(3)]);
    // Silent from now at the latest (killing can itself take a while on a loaded machine).
    const lostAt = Date.now();

    await waitForWorkerStatus(3, 'UNHEALTHY', 30_000);
    // Silent for UNHEALTHY_SECONDS, noticed by the next sweep; slack for a loaded machine, where a sweep
    // can start seconds late, yet well below the 120 s after which a worker counts as OFFLINE.
    expect(Date.now() - lostAt).toBeLessThan((UNHEALTHY_SECONDS + SWEEP_SECONDS + 8) * 1000);

    // AUTOMATIC (Alice): back to three replicas on nodes 1 and 2, with a record of where they went.
    const migrated = await migrationFrom(alice, aliceService, 3, 'MIGRATED');
    expect(migrated).toMatchObject({ policy: 'AUTOMATIC', fromNodeId: lab.swarmNodeId(3), fromHostname: lab.hostname(3), finishedAt: expect.any(String) });
    expect(migrated.moves).toHaveLength(1);
    const [move] = migrated.moves;
    const target = lab.nodeNumberOf(move.toNodeId)!;
    expect([1, 2]).toContain(target);
    expect(move).toMatchObject({ fromNodeId: lab.swarmNodeId(3), toWorkerId: workerIds.get(target), toHostname: lab.hostname(target) });
    const placed = await settledPlacement(aliceService, 'Alice\'s tasks to run off node 3', (counts) => counts[3] === undefined);
    expect(total(placed)).toBe(3);
    expect(placed[3]).toBeUndefined();
    await waitForServiceStatus(aliceService, 'RUNNING');
    const viaService = await api.gql(`query($id: ID!) { service(id: $id) { migrations(first: 5) { edges { node { id status } } } } }`, { id: aliceService }, { token: alice.accessToken });
    expect(viaService.data.service.migrations.edges.map((e: any) => e.node)).toEqual([{ id: migrated.id, status: 'MIGRATED' }]);

    const aliceNotes = await notifications(MIGRATION_NOTIFICATIONS.migrated, aliceService);
    expect(aliceNotes.map((n) => n.userId)).toEqual([alice.id]);
    expect(aliceNotes[0]).toMatchObject({ organizationId: alice.organizationId, data: expect.objectContaining({ migrationId: migrated.id }) });

    // MANUAL (Bob): told that action is needed, nothing moved by Convoy; Swarm reschedules a Down
    // node's tasks by itself, and the service's status follows.
    const waiting = await migrationFrom(bob, bobService, 3, 'WAITING_FOR_OWNER');
    expect(waiting.policy).toBe('MANUAL');
    const needed = await notifications(MIGRATION_NOTIFICATIONS.actionNeeded, bobService);
    expect(needed.map((n) => n.userId)).toEqual([bob.id]);
    expect(needed[0]!.title).toMatch(/^Action needed/);
    await settledPlacement(bobService, 'Bob\'s service back to three replicas', () => true);
    await waitForServiceStatus(bobService, 'RUNNING');

    // NONE (Carol): recorded, nobody told; Swarm brings it back and the status follows.
    const leftAlone = await migrationFrom(carol, carolService, 3, 'LEFT_ALONE');
    expect(leftAlone).toMatchObject({ policy: 'NONE', finishedAt: expect.any(String) });
    await settledPlacement(carolService, 'Carol\'s service back to three replicas', () => true);
    await waitForServiceStatus(carolService, 'RUNNING');

    // Owners hear of their own services only; another organization's migrations are NOT_FOUND.
    expect(await notifications(MIGRATION_NOTIFICATIONS.migrated, bobService)).toEqual([]);
    for (const kind of Object.values(MIGRATION_NOTIFICATIONS)) expect(await notifications(kind, carolService)).toEqual([]);
    const forCarol = await api.app.db.notification.count({ where: { userId: carol.id, kind: { in: Object.values(MIGRATION_NOTIFICATIONS) } } });
    expect(forCarol).toBe(0);
    const crossOrg = await api.gql(MIGRATIONS, { s: aliceService }, { token: bob.accessToken });
    expect(crossOrg.errors?.[0]?.extensions?.code).toBe('NOT_FOUND');

    await lab.startNode(3);
    await startAgent(3);
    expect((await api.app.db.worker.findUniqueOrThrow({ where: { id: workerIds.get(3)! } })).status).toBe('ONLINE');
  }, FAILOVER_TEST_TIMEOUT_MS);

  it('an agent lost while its engine runs: AUTOMATIC moves the tasks off itself, MANUAL waits for migrateService, NONE stays DEGRADED until redeployed, off that node', async () => {
    // Swarm does not rebalance onto the node that came back: node 1 runs tasks of both services.
    expect((await placement(aliceService))[1]).toBeGreaterThan(0);
    expect((await placement(bobService))[1]).toBeGreaterThan(0);
    await killAgent(1);
    await waitForWorkerStatus(1, 'UNHEALTHY', 30_000);

    // Swarm sees node 1 as fine and keeps its tasks there; Convoy moves Alice's away itself.
    const migrated = await migrationFrom(alice, aliceService, 1, 'MIGRATED');
    expect(migrated.moves.length).toBeGreaterThan(0);
    expect(migrated.moves.every((m: any) => m.fromNodeId === lab.swarmNodeId(1) && [2, 3].includes(lab.nodeNumberOf(m.toNodeId)!))).toBe(true);
    // The replaced task on node 1 may take a moment to stop on a loaded machine: follow Swarm, not a clock.
    const placed = await settledPlacement(aliceService, "Alice's tasks to run off node 1 only", (counts) => counts[1] === undefined);
    expect(total(placed)).toBe(3);
    expect(placed[1]).toBeUndefined();
    const swarm = await api.app.orchestrator.findServiceByName(swarmServiceName(aliceService));
    expect(swarm!.labels[EXCLUDED_NODES_LABEL]).toBe(lab.swarmNodeId(1));
    await waitForServiceStatus(aliceService, 'RUNNING');
    const history = await api.app.db.serviceStatusChange.findMany({ where: { serviceId: aliceService }, orderBy: { createdAt: 'asc' } });
    expect(history.slice(-2).map((h) => h.toStatus)).toEqual(['DEGRADED', 'RUNNING']);

    // Bob's waits for him, DEGRADED meanwhile: its replica on node 1 is on an unhealthy worker.
    const waiting = await migrationFrom(bob, bobService, 1, 'WAITING_FOR_OWNER');
    expect(await serviceStatus(bobService)).toBe('DEGRADED');
    expect((await placement(bobService))[1]).toBeGreaterThan(0);
    expect((await notifications(MIGRATION_NOTIFICATIONS.actionNeeded, bobService)).filter((n) => (n.data as any).migrationId === waiting.id).map((n) => n.userId)).toEqual([bob.id]);

    const MIGRATE = `mutation($s: ID!) { migrateService(serviceId: $s) { __typename ... on ServiceMigration { id status } ... on Error { message } } }`;
    expect((await api.gql(MIGRATE, { s: bobService }, { token: alice.accessToken })).data.migrateService.__typename).toBe('NotFoundError');
    // A plain member of Bob's organization may not.
    await addMemberByInvitation(api, bob, admin, 'MEMBER');
    expect((await api.gql(MIGRATE, { s: bobService }, { token: admin.accessToken, org: bob.organizationId })).data.migrateService.__typename).toBe('ForbiddenError');
    const started = await api.gql(MIGRATE, { s: bobService }, { token: bob.accessToken });
    expect(started.data.migrateService).toEqual({ __typename: 'ServiceMigration', id: waiting.id, status: 'MIGRATING' });
    const done = await migrationFrom(bob, bobService, 1, 'MIGRATED');
    expect(done.moves.every((m: any) => [2, 3].includes(lab.nodeNumberOf(m.toNodeId)!))).toBe(true);
    const bobPlaced = await settledPlacement(bobService, "Bob's tasks to run off node 1", (counts) => counts[1] === undefined);
    expect(total(bobPlaced)).toBe(3);
    expect(bobPlaced[1]).toBeUndefined();
    await waitForServiceStatus(bobService, 'RUNNING');
    expect(await api.app.db.auditLogEntry.count({ where: { action: 'service.migrate', resourceId: bobService, actorUserId: bob.id } })).toBe(1);

    // NONE: Carol's replica stays on node 1, and the service DEGRADED, until the worker is back.
    await migrationFrom(carol, carolService, 1, 'LEFT_ALONE');
    expect(await serviceStatus(carolService)).toBe('DEGRADED');
    expect((await placement(carolService))[1]).toBeGreaterThan(0);

    // A deploy meanwhile, whatever the policy, places no task on the unhealthy worker's node (Swarm
    // alone would spread the three replicas over all three nodes).
    await deploy(carol, carolService);
    const redeployed = await settledPlacement(carolService, "Carol's redeployed tasks to run off node 1", (counts) => counts[1] === undefined);
    expect(total(redeployed)).toBe(3);
    expect(redeployed[1]).toBeUndefined();
    expect((await api.app.orchestrator.findServiceByName(swarmServiceName(carolService)))!.labels[EXCLUDED_NODES_LABEL]).toBe(lab.swarmNodeId(1));
    await waitForServiceStatus(carolService, 'RUNNING');

    // The agent comes back: Convoy lifts its exclusions, the deploy's included; the tasks stay where they are.
    await startAgent(1);
    await eventually('the exclusions to be lifted', CONVOY_FOLLOWS_MS, async () => {
      const services = await Promise.all([aliceService, bobService, carolService].map((id) => api.app.orchestrator.findServiceByName(swarmServiceName(id))));
      return services.every((s) => !s!.labels[EXCLUDED_NODES_LABEL]);
    });
    expect((await placement(aliceService))[1]).toBeUndefined();
  }, FAILOVER_TEST_TIMEOUT_MS);

  it('drains a node: its tasks move; removeWorker refuses while they run, then removes the worker and its Swarm node', async () => {
    const REMOVE = `mutation($id: ID!, $force: Boolean) { removeWorker(id: $id, force: $force) { __typename ... on Worker { removedAt } ... on Error { message } } }`;
    const worker2 = workerIds.get(2)!;
    expect((await placement(aliceService))[2]).toBeGreaterThan(0);
    const refused = await api.gql(REMOVE, { id: worker2 }, { token: admin.accessToken });
    expect(refused.data.removeWorker).toMatchObject({ __typename: 'ConflictError', message: expect.stringMatching(/still runs \d+ Convoy container/) });

    const drained = await api.gql(`mutation($id: ID!) { drainWorker(id: $id) { __typename ... on Worker { status } } }`, { id: worker2 }, { token: admin.accessToken });
    expect(drained.data.drainWorker).toEqual({ __typename: 'Worker', status: 'DRAINING' });
    for (const serviceId of [aliceService, bobService, carolService]) {
      await settledPlacement(serviceId, 'the tasks to leave node 2', (counts) => counts[2] === undefined);
    }
    // Empty: no Convoy container left on its engine, and its agent says so too.
    await eventually('node 2 to run no containers', SWARM_SETTLE_MS, async () => {
      const containers = await lab.dockerFor(2).listContainers({ filters: { label: ['convoy.service-id'] } });
      const worker = await api.app.db.worker.findUniqueOrThrow({ where: { id: worker2 } });
      return containers.length === 0 && (worker.lastMetrics as { containerCount?: number } | null)?.containerCount === 0 && worker.status === 'DRAINING';
    });
    // Swarm removes only a node that is down: it leaves the swarm, as an operator would have it do.
    await lab.dockerFor(2).swarmLeave({});
    await eventually('node 2 to be down', SWARM_SETTLE_MS, async () => (await api.app.orchestrator.listNodes()).find((n) => n.id === lab.swarmNodeId(2))?.state === 'down');
    const removed = await api.gql(REMOVE, { id: worker2 }, { token: admin.accessToken });
    expect(removed.data.removeWorker).toMatchObject({ __typename: 'Worker', removedAt: expect.any(String) });
    expect((await api.app.orchestrator.listNodes()).map((n) => n.id)).not.toContain(lab.swarmNodeId(2));
    expect(await api.app.db.workerCredential.count({ where: { workerId: worker2, revokedAt: null } })).toBe(0);
    expect(await serviceStatus(aliceService)).toBe('RUNNING');
  }, FAILOVER_TEST_TIMEOUT_MS);
});

// The worker agent as a real process against a real API: joining with a token, heartbeats, restarts
// from its state file, clean shutdown; and its metric collection on this machine's /proc and Docker.
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { Writable } from 'node:stream';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa, type ResultPromise } from 'execa';
import { pino } from 'pino';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { buildTestImage } from './helpers/images.js';
import { testDocker, uniqueName } from './helpers/swarm.js';
import { subscribe, waitForListeners } from './helpers/subscribe.js';
import { collectContainerStats, MetricsCollector, SERVICE_ID_LABEL } from '../worker-agent/src/metrics.js';
import { WorkerAgent, type HeartbeatReport } from '../worker-agent/src/agent.js';
import { saveState } from '../worker-agent/src/state.js';
import { startEmbeddedAgent } from '../worker-agent/src/embedded.js';

let api: TestApi;
let devApi: TestApi;
let admin: TestUser;
let dir: string;
const agents: AgentProcess[] = [];
const containers: string[] = [];
const tag = uniqueName('convoy-test-agent');

beforeAll(async () => {
  // The API asks agents for a heartbeat every second, as the agents are configured here.
  // The embedded agent gets an API of its own: this node's Swarm id can only be registered once.
  [api, devApi] = await Promise.all([startTestApi({ CONVOY_WORKER_HEARTBEAT_SECONDS: '1' }), startTestApi({ CONVOY_WORKER_HEARTBEAT_SECONDS: '1' })]);
  admin = await api.register('Platform Admin');
  dir = await mkdtemp(join(tmpdir(), 'convoy-agent-test-'));
});

afterAll(async () => {
  for (const agent of agents) agent.process.kill('SIGKILL');
  await Promise.allSettled(agents.map((agent) => agent.process));
  for (const id of containers) await testDocker.getContainer(id).remove({ force: true }).catch(() => {});
  await testDocker.getImage(`${tag}:idle`).remove({ force: true }).catch(() => {});
  await Promise.all([api?.close(), devApi?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

type AgentProcess = { process: ResultPromise; lines: Record<string, any>[]; waitForLog(predicate: (line: Record<string, any>) => boolean, timeoutMs?: number): Promise<Record<string, any>> };

function startAgent(env: Record<string, string>): AgentProcess {
  const child = execa('node', ['--import', 'tsx', 'worker-agent/src/main.ts'], {
    cwd: new URL('..', import.meta.url),
    env: { CONVOY_HEARTBEAT_SECONDS: '1', LOG_LEVEL: 'debug', CONVOY_AGENT_JOIN_SWARM: 'false', ...env },
    extendEnv: true,
    reject: false,
    buffer: false,
  });
  const lines: Record<string, any>[] = [];
  let partial = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const text = partial + chunk.toString();
    const parts = text.split('\n');
    partial = parts.pop()!;
    for (const part of parts) if (part.trim()) lines.push(parseLine(part));
  });
  child.stderr!.on('data', (chunk: Buffer) => lines.push({ stderr: chunk.toString() }));
  const agent: AgentProcess = {
    process: child,
    lines,
    // Starting an agent compiles it first (tsx): on a loaded machine that alone takes seconds.
    async waitForLog(predicate, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = lines.find(predicate);
        if (found) return found;
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`log line not seen (exit ${child.exitCode}): ${JSON.stringify(lines).slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
  agents.push(agent);
  return agent;
}

function parseLine(line: string): Record<string, any> {
  try {
    return JSON.parse(line);
  } catch {
    return { raw: line };
  }
}

async function createJoinToken(ttlSeconds = 600): Promise<{ token: string; id: string }> {
  const result = await api.gql(
    `mutation($ttl: Int!) { createWorkerJoinToken(ttlSeconds: $ttl, labels: [{ key: "zone", value: "test" }]) { __typename ... on CreateWorkerJoinTokenPayload { token joinToken { id } } ... on Error { message } } }`,
    { ttl: ttlSeconds },
    { token: admin.accessToken },
  );
  const payload = result.data?.createWorkerJoinToken;
  if (!payload?.token) throw new Error(`createWorkerJoinToken failed: ${JSON.stringify(result)}`);
  return { token: payload.token, id: payload.joinToken.id };
}

async function worker(id: string) {
  const result = await api.gql(
    `query($id: ID!) { worker(id: $id) { id hostname status lastHeartbeatAt swarmNodeId agentVersion cpuCores memoryMb labels { key value } lastMetrics { cpuPercent memoryTotalMb containerCount } } }`,
    { id },
    { token: admin.accessToken },
  );
  if (!result.data?.worker) throw new Error(`worker(${id}) failed: ${JSON.stringify(result)}`);
  return result.data.worker as Record<string, any> & { id: string; hostname: string; status: string; lastHeartbeatAt: string | null };
}

async function exitWithin(agent: AgentProcess, ms: number) {
  const timer = setTimeout(() => agent.process.kill('SIGKILL'), ms);
  const result = await agent.process;
  clearTimeout(timer);
  return result;
}

describe('worker agent process', () => {
  const stateFile = () => join(dir, 'node-a', 'state.json');
  const hostname = uniqueName('node-a');
  let token: string;
  let workerId: string;

  it('joins with a token, saves its state privately, heartbeats every second with its containers\' stats', async () => {
    ({ token } = await createJoinToken());
    // A Convoy service, and a container on this node labelled as one of its tasks.
    const image = await buildTestImage(`${tag}:idle`, { body: 'agent metrics' });
    const created = await api.gql(`mutation($i: CreateServiceInput!) { createService(input: $i) { ... on Service { id } } }`, { i: { name: uniqueName('metered'), source: { image } } }, { token: admin.accessToken });
    const serviceId = created.data.createService.id as string;
    const containerId = await startContainer(image, { [SERVICE_ID_LABEL]: serviceId });
    const listeners = api.app.bus.listenerCount();
    const serviceMetrics = subscribe(api.url, admin.accessToken, `subscription($id: ID!) { serviceMetrics(serviceId: $id) { serviceId containers { containerId cpuPercent memoryUsedMb networkRxBytes } } }`, { id: serviceId }, 'serviceMetrics');
    const heartbeats = subscribe(api.url, admin.accessToken, `subscription { workerHeartbeats { workerId hostname status cpuPercent memoryTotalMb containerCount at } }`, {}, 'workerHeartbeats');
    // Both subscriptions are live on the server before the agent starts, so no heartbeat is missed.
    await waitForListeners(api.app.bus, listeners + 2, 10_000);
    const agent = startAgent({ CONVOY_API_URL: api.url, CONVOY_JOIN_TOKEN: token, CONVOY_AGENT_STATE: stateFile(), CONVOY_AGENT_HOSTNAME: hostname, CONVOY_AGENT_LABELS: 'disk=ssd' });
    const registered = await agent.waitForLog((l) => l.msg === 'registered; state saved');
    workerId = registered.workerId;

    const state = JSON.parse(await readFile(stateFile(), 'utf8'));
    expect(state).toMatchObject({ workerId, apiUrl: api.url });
    expect(state.credential).toEqual(expect.any(String));
    expect((await stat(stateFile())).mode & 0o777).toBe(0o600);
    // Neither the join token nor the credential ever appears in the agent's logs.
    expect(JSON.stringify(agent.lines)).not.toContain(token);
    expect(JSON.stringify(agent.lines)).not.toContain(state.credential);

    const events = await heartbeats.waitFor((e) => e.filter((x: any) => x.workerId === workerId).length >= 2, 30_000);
    await heartbeats.close();
    // Docker's stats take a second or more; on a loaded machine some heartbeats go without them.
    const [sample] = await serviceMetrics.waitFor((e) => e.length >= 1, 30_000);
    await serviceMetrics.close();
    const stats = sample.containers.find((c: any) => c.containerId === containerId);
    expect(stats.memoryUsedMb).toBeGreaterThan(0);
    expect(stats.cpuPercent).toBeGreaterThanOrEqual(0);
    const mine = events.filter((x: any) => x.workerId === workerId);
    expect(mine[0]).toMatchObject({ hostname, status: 'ONLINE' });
    expect(mine.some((x: any) => x.containerCount >= 1)).toBe(true);
    expect(mine[0].cpuPercent).toBeGreaterThanOrEqual(0);
    expect(mine[0].cpuPercent).toBeLessThanOrEqual(100);
    expect(mine[0].memoryTotalMb).toBeGreaterThan(0);
    // About one a second (the agent's setting and the API's nextHeartbeatInSeconds agree); a loaded
    // machine may delay one, still far from the default interval.
    const gapMs = Date.parse(mine[1].at) - Date.parse(mine[0].at);
    expect(gapMs).toBeGreaterThan(500);
    expect(gapMs).toBeLessThan(5000);

    const seen = await worker(workerId);
    expect(seen).toMatchObject({ id: workerId, hostname, status: 'ONLINE', swarmNodeId: (await testDocker.info()).Swarm.NodeID, agentVersion: expect.any(String) });
    // The token's labels and the node's own.
    expect(seen.labels).toEqual(expect.arrayContaining([{ key: 'zone', value: 'test' }, { key: 'disk', value: 'ssd' }]));
    expect(seen.cpuCores).toBeGreaterThan(0);
    expect(seen.memoryMb).toBeGreaterThan(0);
    expect(seen.lastMetrics).toMatchObject({ memoryTotalMb: seen.memoryMb });
    expect(Date.now() - Date.parse(seen.lastHeartbeatAt!)).toBeLessThan(10_000);
  });

  it('a second node with the same token, a node with an expired token and a revoked credential are refused with exit code 3', async () => {
    const second = startAgent({ CONVOY_API_URL: api.url, CONVOY_JOIN_TOKEN: token, CONVOY_AGENT_STATE: join(dir, 'node-b', 'state.json'), CONVOY_AGENT_HOSTNAME: uniqueName('node-b') });
    // The shortest TTL the API accepts is a minute; this one ran out a second ago.
    const { token: expiredToken, id: expiredId } = await createJoinToken(60);
    await api.app.db.workerJoinToken.update({ where: { id: expiredId }, data: { expiresAt: new Date(Date.now() - 1000) } });
    const third = startAgent({ CONVOY_API_URL: api.url, CONVOY_JOIN_TOKEN: expiredToken, CONVOY_AGENT_STATE: join(dir, 'node-c', 'state.json'), CONVOY_AGENT_HOSTNAME: uniqueName('node-c') });
    // A node whose worker was removed: its saved credential no longer works.
    const revokedState = join(dir, 'node-d', 'state.json');
    await writeFileDeep(revokedState, JSON.stringify({ workerId: workerId, credential: `cvy_wrk_${'x'.repeat(43)}`, apiUrl: api.url }));
    // Without a Docker engine, too: it reports node metrics only.
    const fourth = startAgent({ CONVOY_AGENT_STATE: revokedState, CONVOY_AGENT_HOSTNAME: uniqueName('node-d'), DOCKER_HOST: `unix://${join(dir, 'no-docker.sock')}` });

    for (const [agent, reason, message] of [
      [second, 'INVALID_JOIN_TOKEN', /refused the join token/],
      [third, 'INVALID_JOIN_TOKEN', /refused the join token/],
      [fourth, 'CREDENTIAL_REJECTED', /rejects this worker's credential.*Delete .*state\.json and join again/],
    ] as const) {
      // Generous: three agent processes start at once, and a loaded CI machine starts them slowly.
      const result = await exitWithin(agent, 45_000);
      expect(result.exitCode).toBe(3);
      const fatal = agent.lines.find((l) => l.level === 60);
      expect(fatal).toMatchObject({ reason });
      expect(fatal!.msg).toMatch(message);
    }
    await expect(stat(join(dir, 'node-b', 'state.json'))).rejects.toThrow(/ENOENT/);
  });

  it('exits 0 promptly on SIGTERM, and after a restart resumes from its state file without registering again', async () => {
    const first = agents[0]!;
    const startedAt = Date.now();
    first.process.kill('SIGTERM');
    const result = await exitWithin(first, 10_000);
    expect(result.exitCode).toBe(0);
    // Promptly: not after a heartbeat's request timeout; room for a loaded machine.
    expect(Date.now() - startedAt).toBeLessThan(5000);
    const lastBefore = (await worker(workerId)).lastHeartbeatAt!;

    // Same settings as before, join token included (as a service unit would have them).
    const restarted = startAgent({ CONVOY_API_URL: api.url, CONVOY_JOIN_TOKEN: token, CONVOY_AGENT_STATE: stateFile(), CONVOY_AGENT_HOSTNAME: hostname });
    const resumed = await restarted.waitForLog((l) => l.msg?.startsWith('resuming as a registered worker'));
    expect(resumed.workerId).toBe(workerId);
    await restarted.waitForLog((l) => l.msg === 'first heartbeat accepted');
    expect(restarted.lines.some((l) => /registering/.test(l.msg ?? ''))).toBe(false);

    const deadline = Date.now() + 10_000;
    while ((await worker(workerId)).lastHeartbeatAt === lastBefore) {
      if (Date.now() > deadline) throw new Error('no heartbeat after the restart');
      await new Promise((r) => setTimeout(r, 200));
    }
    const list = await api.gql(`{ workers(first: 50) { edges { node { id hostname } } } }`, {}, { token: admin.accessToken });
    const hosts = list.data.workers.edges.map((e: any) => e.node.hostname);
    expect(hosts.filter((h: string) => h === hostname)).toHaveLength(1);
    expect(list.data.workers.edges).toHaveLength(1);

    restarted.process.kill('SIGINT');
    expect((await exitWithin(restarted, 10_000)).exitCode).toBe(0);
  });

  it('keeps running while the API is unreachable, and stop() aborts a heartbeat the API never answers', async () => {
    // A port that accepts connections and never answers: the heartbeat hangs until stop().
    const connections: net.Socket[] = [];
    const silent = net.createServer((socket) => connections.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentUrl = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    const state = JSON.parse(await readFile(stateFile(), 'utf8'));
    const hangingState = join(dir, 'hanging', 'state.json');
    await writeFileDeep(hangingState, JSON.stringify({ ...state, apiUrl: silentUrl }));

    const warnings: string[] = [];
    const log = pino({ level: 'warn' }, new Writable({ write: (chunk, _encoding, done) => { warnings.push(JSON.parse(chunk.toString()).msg); done(); } }));
    const hanging = new WorkerAgent({ stateFile: hangingState, hostname, heartbeatSeconds: 1, docker: null, log, requestTimeoutMs: 60_000 });
    await hanging.start();
    const deadline = Date.now() + 10_000;
    while (!connections.length) {
      if (Date.now() > deadline) throw new Error('the agent never connected');
      await new Promise((r) => setTimeout(r, 20));
    }
    const stopping = Date.now();
    await hanging.stop();
    // The request would hang for its 60 s timeout: stop() aborts it at once (a loaded machine adds a little).
    expect(Date.now() - stopping).toBeLessThan(1000);
    await hanging.wait();
    for (const socket of connections) socket.destroy();
    silent.close();

    // Nothing listens on the closed port any more: heartbeats fail, are logged and retried.
    const refusedState = join(dir, 'refused', 'state.json');
    await writeFileDeep(refusedState, JSON.stringify({ ...state, apiUrl: silentUrl }));
    const refused = new WorkerAgent({ stateFile: refusedState, hostname, heartbeatSeconds: 1, docker: null, log });
    await refused.start();
    const until = Date.now() + 5000;
    while (warnings.filter((w) => w === 'heartbeat failed; retrying').length < 2) {
      if (Date.now() > until) throw new Error(`no retries: ${JSON.stringify(warnings)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await refused.stop();
    await refused.wait();
  });
});

describe('a node that joined the swarm after registering', () => {
  it('reports its Swarm node when the agent starts, so the worker can be drained and removed', async () => {
    // An API of its own: this machine's Swarm node can belong to one live worker per installation.
    const own = await startTestApi({ CONVOY_WORKER_HEARTBEAT_SECONDS: '1' });
    let agent: WorkerAgent | null = null;
    try {
      const ownAdmin = await own.register('Admin');
      const created = await own.gql(`mutation { createWorkerJoinToken(ttlSeconds: 600) { ... on CreateWorkerJoinTokenPayload { token } } }`, {}, { token: ownAdmin.accessToken });
      // Registered before its engine was in the swarm, as the install script's agent does before joining.
      const input = { joinToken: created.data.createWorkerJoinToken.token, hostname: uniqueName('joined'), cpuCores: 2, memoryMb: 4096, diskGb: 50, agentVersion: '0.1.0' };
      const registered = (await own.gql(`mutation($input: RegisterWorkerInput!) { registerWorker(input: $input) { ... on RegisterWorkerPayload { worker { id swarmNodeId } credential } } }`, { input })).data.registerWorker;
      expect(registered.worker.swarmNodeId).toBeNull();
      const stateFile = join(dir, 'joined', 'state.json');
      await mkdir(join(dir, 'joined'), { recursive: true });
      await saveState(stateFile, { workerId: registered.worker.id, credential: registered.credential, apiUrl: own.url });

      agent = new WorkerAgent({ stateFile, hostname: input.hostname, heartbeatSeconds: 1, docker: testDocker, log: pino({ level: 'silent' }) });
      expect(await agent.start()).toEqual({ workerId: registered.worker.id, registered: false });
      const node = (await testDocker.info()).Swarm.NodeID as string;
      const deadline = Date.now() + 10_000;
      while ((await own.app.db.worker.findUniqueOrThrow({ where: { id: registered.worker.id } })).swarmNodeId !== node) {
        if (Date.now() > deadline) throw new Error('the agent did not report its Swarm node');
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      await agent?.stop();
      await own.close();
    }
  });
});

describe('embedded agent (npm run dev)', () => {
  it('prepares the swarm, registers this machine as dev-<hostname> and heartbeats until stopped', async () => {
    const devAdmin = await devApi.register('Dev Admin');
    const created = await devApi.gql(`mutation { createWorkerJoinToken(ttlSeconds: 600) { ... on CreateWorkerJoinTokenPayload { token } } }`, {}, { token: devAdmin.accessToken });
    const heartbeats: HeartbeatReport[] = [];
    const embedded = await startEmbeddedAgent({
      orchestrator: devApi.app.orchestrator,
      log: pino({ level: 'silent' }),
      initSwarm: false,
      apiUrl: devApi.url,
      joinToken: created.data.createWorkerJoinToken.token,
      stateFile: join(dir, 'dev', 'state.json'),
      heartbeatSeconds: 1,
      onHeartbeat: (report) => heartbeats.push(report),
    });
    const deadline = Date.now() + 10_000;
    while (heartbeats.length < 2) {
      if (Date.now() > deadline) throw new Error('the embedded agent sent no heartbeats');
      await new Promise((r) => setTimeout(r, 50));
    }
    const listed = await devApi.gql(`{ workers(first: 5) { edges { node { id hostname swarmNodeId status } } } }`, {}, { token: devAdmin.accessToken });
    expect(listed.data.workers.edges.map((e: any) => e.node)).toEqual([{ id: embedded.workerId, hostname: `dev-${hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-')}`, swarmNodeId: embedded.nodeId, status: 'ONLINE' }]);
    const stopping = Date.now();
    await embedded.stop();
    expect(Date.now() - stopping).toBeLessThan(3000);
    const count = heartbeats.length;
    await new Promise((r) => setTimeout(r, 1200));
    expect(heartbeats.length).toBe(count);
  });
});

describe('metric collection on this machine', () => {
  it('reads CPU, memory, load and disk from /proc and statfs', async () => {
    const collector = new MetricsCollector({ diskPath: '/', docker: null, containerStatsTimeoutMs: 3000 });
    for (let i = 0; i < 2; i++) {
      const metrics = await collector.collect();
      expect(metrics.cpuPercent).toBeGreaterThanOrEqual(0);
      expect(metrics.cpuPercent).toBeLessThanOrEqual(100);
      expect(metrics.memoryTotalMb).toBeGreaterThan(0);
      expect(metrics.memoryUsedMb).toBeGreaterThan(0);
      expect(metrics.memoryUsedMb).toBeLessThanOrEqual(metrics.memoryTotalMb);
      expect(metrics.diskTotalGb).toBeGreaterThan(0);
      expect(metrics.diskUsedGb).toBeLessThanOrEqual(metrics.diskTotalGb);
      expect(metrics.load1).toBeGreaterThanOrEqual(0);
      expect(metrics.containers).toEqual([]);
    }
  });

  it("reports a Convoy task container's CPU, memory and network, and no other containers", async () => {
    const image = await buildTestImage(`${tag}:idle`, { body: 'agent metrics' });
    const serviceId = uniqueName('svc');
    const [labelled, unlabelled] = await Promise.all([startContainer(image, { [SERVICE_ID_LABEL]: serviceId }), startContainer(image, {})]);

    const stats = await collectContainerStats(testDocker, { timeoutMs: 5000 });
    const mine = stats.find((s) => s.containerId === labelled);
    expect(mine).toMatchObject({ serviceId, taskId: null });
    expect(mine!.cpuPercent).toBeGreaterThanOrEqual(0);
    expect(mine!.memoryUsedMb).toBeGreaterThan(0);
    expect(mine!.networkRxBytes).toBeGreaterThanOrEqual(0);
    expect(stats.some((s) => s.containerId === unlabelled)).toBe(false);

    // The time bound holds even when the engine takes its usual second per stats call.
    const started = Date.now();
    await collectContainerStats(testDocker, { timeoutMs: 200 });
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

/** A plain container (not a Swarm task), removed after the file. */
async function startContainer(image: string, labels: Record<string, string>): Promise<string> {
  const container = await testDocker.createContainer({ Image: image, Labels: { ...labels, 'convoy.test': 'agent' } });
  containers.push(container.id);
  await container.start();
  return container.id;
}

async function writeFileDeep(path: string, content: string) {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, content, { mode: 0o600 });
}

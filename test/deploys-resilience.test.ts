// What happens around deploys: a controller killed mid-rollout, drift repaired by the reconciler,
// network isolation between organizations, and runtime logs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa, type ResultPromise } from 'execa';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { buildTestImage, TEST_APP_PORT } from './helpers/images.js';
import { ncGet, runProbeContainer, SwarmCleanup, uniqueName } from './helpers/swarm.js';
import { subscribe, waitForListeners } from './helpers/subscribe.js';
import { organizationNetworkName, swarmServiceName } from '../src/modules/deployments/spec.js';

let api: TestApi;
let alice: TestUser;
let bob: TestUser;
const cleanup = new SwarmCleanup();
const tag = uniqueName('convoy-test-res');
let app: string, slow: string;
const controllers: ResultPromise[] = [];

// The API runs in-process; controllers run as real processes so they can be killed.
beforeAll(async () => {
  api = await startTestApi(DEPLOY_TEST_SETTINGS);
  [alice, bob] = await Promise.all([api.register(), api.register()]);
  [app, slow] = await Promise.all([
    buildTestImage(`${tag}:app`, { body: 'resilient app' }),
    buildTestImage(`${tag}:slow`, { body: 'slow app', healthyAfterMs: 5000 }),
  ]);
});
afterAll(async () => {
  for (const c of controllers) c.kill('SIGKILL');
  await cleanup.run();
  await api?.close();
});

function startController(): ResultPromise {
  const env = {
    ...process.env,
    ...DEPLOY_TEST_SETTINGS,
    NODE_ENV: 'test',
    DATABASE_URL: api.config.databaseUrl,
    REDIS_URL: api.config.redisUrl,
    REDIS_PREFIX: api.config.redisPrefix,
    CONVOY_SECRET_KEY: api.config.secretKey,
    MIGRATE_ON_START: 'false',
    LOG_LEVEL: 'warn',
  };
  const child = execa('node', ['--import', 'tsx', 'src/main/controller.ts'], { env, reject: false, cwd: new URL('..', import.meta.url) });
  controllers.push(child);
  return child;
}

const HEALTH = { type: 'HTTP', path: '/health', port: TEST_APP_PORT, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 };

async function createAndDeploy(user: TestUser, name: string, image: string, healthCheck: Record<string, unknown> = HEALTH) {
  const created = await api.gql(`mutation($i: CreateServiceInput!) { createService(input: $i) { ... on Service { id } } }`, { i: { name, source: { image }, healthCheck } }, { token: user.accessToken });
  const id = created.data.createService.id as string;
  const deployed = await api.gql(`mutation($s: ID!) { deployService(serviceId: $s) { ... on Deployment { id } } }`, { s: id }, { token: user.accessToken });
  return { id, deploymentId: deployed.data.deployService.id as string };
}

async function waitForStatus(deploymentId: string, statuses: string[], timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = await api.app.db.deployment.findUniqueOrThrow({ where: { id: deploymentId } });
    if (statuses.includes(d.status)) return d;
    if (Date.now() > deadline) throw new Error(`deployment ${deploymentId} still ${d.status}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('crash safety', () => {
  it('a controller killed during a deploy is replaced and the deploy converges, with one Swarm service', async () => {
    const first = startController();
    const { id, deploymentId } = await createAndDeploy(alice, uniqueName('crash'), slow, { ...HEALTH, startPeriodSeconds: 20 });
    await waitForStatus(deploymentId, ['DEPLOYING']);
    // Wait until Swarm has the service, then kill the controller while it watches the slow start.
    const deadline = Date.now() + 20_000;
    while (!(await api.app.orchestrator.findServiceByName(swarmServiceName(id)))) {
      if (Date.now() > deadline) throw new Error('Swarm service never created');
      await new Promise((r) => setTimeout(r, 100));
    }
    first.kill('SIGKILL');
    await first;
    expect((await api.app.db.deployment.findUniqueOrThrow({ where: { id: deploymentId } })).status).toBe('DEPLOYING');

    startController();
    const final = await waitForStatus(deploymentId, ['RUNNING', 'FAILED']);
    expect(final.status).toBe('RUNNING');
    const swarmServices = await api.app.orchestrator.findServicesByLabel('convoy.service-id', id);
    expect(swarmServices).toHaveLength(1);
    expect((await api.app.db.service.findUniqueOrThrow({ where: { id } })).status).toBe('RUNNING');
  });

  it('recreates a Swarm service removed by hand', async () => {
    if (controllers.every((c) => c.exitCode !== null)) startController();
    const { id, deploymentId } = await createAndDeploy(alice, uniqueName('drift'), app);
    await waitForStatus(deploymentId, ['RUNNING']);
    const swarm = await api.app.orchestrator.findServiceByName(swarmServiceName(id));
    await api.app.orchestrator.removeService(swarm!.id);

    const deadline = Date.now() + 60_000;
    for (;;) {
      const redeploy = await api.app.db.deployment.findFirst({ where: { serviceId: id, kind: 'REDEPLOY' } });
      if (redeploy?.status === 'RUNNING') {
        expect(redeploy.reason).toMatch(/removed outside Convoy/);
        break;
      }
      if (Date.now() > deadline) throw new Error('drift was not repaired');
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(await api.app.orchestrator.findServicesByLabel('convoy.service-id', id)).toHaveLength(1);
  });
});

describe('network isolation', () => {
  it("a container on organization A's network reaches A's service by name and cannot reach B's", async () => {
    if (controllers.every((c) => c.exitCode !== null)) startController();
    const aName = uniqueName('iso-a');
    const bName = uniqueName('iso-b');
    const a = await createAndDeploy(alice, aName, app);
    const b = await createAndDeploy(bob, bName, (await buildTestImage(`${tag}:b`, { body: 'secret of b' })));
    await Promise.all([waitForStatus(a.deploymentId, ['RUNNING']), waitForStatus(b.deploymentId, ['RUNNING'])]);

    const bTask = (await api.app.orchestrator.listTasks((await api.app.orchestrator.findServiceByName(swarmServiceName(b.id)))!.id)).find((t) => t.state === 'running')!;
    const bContainer = await (await import('./helpers/swarm.js')).testDocker.getContainer(bTask.containerId!).inspect();
    const bAddress = Object.values(bContainer.NetworkSettings.Networks)[0]!.IPAddress;

    const probe = await runProbeContainer(
      organizationNetworkName(alice.organizationId),
      [`echo "A: $(${ncGet(aName)} | tail -n 1)"`, `nslookup ${bName} >/dev/null 2>&1 && echo "B resolves" || echo "B unknown"`, `echo "B by address: $(${ncGet(bAddress)} 2>&1 | tail -n 1)"`].join('; '),
    );
    expect(probe.stdout).toContain('A: resilient app');
    expect(probe.stdout).toContain('B unknown');
    expect(probe.stdout).not.toContain('secret of b');
  });
});

describe('runtime logs', () => {
  it('streams log lines with their replica by subscription, then downloads them as text, JSON and CSV', async () => {
    if (controllers.every((c) => c.exitCode !== null)) startController();
    const name = uniqueName('logs');
    const { id, deploymentId } = await createAndDeploy(alice, name, app);
    await waitForStatus(deploymentId, ['RUNNING']);

    const lines = subscribe(api.url, alice.accessToken, `subscription($id: ID!) { serviceLogs(serviceId: $id, tail: 50) { line replica taskId stream timestamp } }`, { id }, 'serviceLogs');
    await lines.waitFor((l) => l.some((x: any) => x.line.includes('test app listening')));
    const startLine = lines.events.find((x: any) => x.line.includes('test app listening'));
    expect(startLine).toMatchObject({ replica: 1, stream: 'stdout' });
    expect(startLine.taskId).toMatch(/^[a-z0-9]{25}$/);

    // A request for a missing page from another container now produces a new line (httpd logs the
    // client address and status); it arrives because the subscription follows the log.
    const fromNetwork = /\[::ffff:10\.[0-9.]+\]:\d+: response:404/;
    expect(lines.events.some((x: any) => fromNetwork.test(x.line))).toBe(false);
    await runProbeContainer(organizationNetworkName(alice.organizationId), `${ncGet(name, TEST_APP_PORT, '/missing-page')} >/dev/null`);
    await lines.waitFor((l) => l.some((x: any) => fromNetwork.test(x.line)));
    expect(lines.events.find((x: any) => fromNetwork.test(x.line))).toMatchObject({ stream: 'stderr', replica: 1 });
    await lines.close();

    const download = async (format: string) => {
      const response = await fetch(`${api.url}/api/services/${id}/logs?format=${format}`, { headers: { authorization: `Bearer ${alice.accessToken}` } });
      expect(response.status).toBe(200);
      return { type: response.headers.get('content-type'), body: await response.text() };
    };
    const text = await download('text');
    expect(text.body).toMatch(/replica=1 task=\w+ stdout: test app listening/);
    const json = await download('json');
    expect(json.type).toContain('ndjson');
    const records = json.body.trim().split('\n').map((l) => JSON.parse(l));
    expect(records.find((r) => r.line.includes('test app listening'))).toMatchObject({ stream: 'stdout', replica: 1 });
    const csv = await download('csv');
    expect(csv.body.split('\n')[0]).toBe('timestamp,stream,task_id,replica,line');
    expect(csv.body).toMatch(/,stderr,\w+,1,\[::ffff:10\.[0-9.]+\]:\d+: response:404/);

    const filtered = await api.gql(`query($id: ID!) { serviceLogLines(serviceId: $id, search: "RESPONSE:404") { line } }`, { id }, { token: alice.accessToken });
    expect(filtered.data.serviceLogLines.length).toBe(1);
    expect(filtered.data.serviceLogLines[0].line).toMatch(fromNetwork);

    // Another organization gets nothing, not even an empty file.
    const foreign = await fetch(`${api.url}/api/services/${id}/logs?format=text`, { headers: { authorization: `Bearer ${bob.accessToken}` } });
    expect(foreign.status).toBe(404);
    const foreignSub = await api.gql(`subscription($id: ID!) { serviceLogs(serviceId: $id) { line } }`, { id }, { token: bob.accessToken });
    expect(foreignSub.errors?.[0].extensions?.code).toBe('NOT_FOUND');
  });
});

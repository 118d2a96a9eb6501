// Each organisation gets its own overlay network: a container on A's network reaches A's services by
// name and can neither resolve nor reach B's.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { SwarmOrchestrator } from '../../src/platform/orchestrator/swarm.js';
import { buildTestImage, removeTestImages } from '../helpers/images.js';
import { inMs, ncGet, runProbeContainer, SwarmCleanup, testDocker, testServiceSpec, uniqueName } from '../helpers/swarm.js';

const orchestrator = new SwarmOrchestrator(testDocker);
const cleanup = new SwarmCleanup();
const tags = { a: `convoy-test/iso:${uniqueName('a')}`, b: `convoy-test/iso:${uniqueName('b')}` };
const orgA = { network: uniqueName('org-a'), service: uniqueName('app-a') };
const orgB = { network: uniqueName('org-b'), service: uniqueName('app-b') };
let serviceBId: string;

beforeAll(async () => {
  await Promise.all([buildTestImage(tags.a, { body: 'org a app' }), buildTestImage(tags.b, { body: 'org b app' })]);
  for (const [org, image] of [[orgA, tags.a], [orgB, tags.b]] as const) {
    cleanup.network(org.network);
    await orchestrator.ensureNetwork(org.network, { 'convoy.test': 'true' });
    const spec = testServiceSpec({ name: org.service, image, deploymentId: `dep-${org.service}`, networkName: org.network });
    const { id } = await orchestrator.createService(spec);
    cleanup.service(id);
    if (org === orgB) serviceBId = id;
  }
  for (const org of [orgA, orgB]) {
    const service = await orchestrator.findServiceByName(org.service);
    const rollout = await orchestrator.waitForRollout(service!.id, {
      deploymentId: `dep-${org.service}`,
      desiredReplicas: 1,
      deadline: inMs(60_000),
    });
    expect(rollout.outcome).toBe('healthy');
  }
});

afterAll(async () => {
  await cleanup.run();
  await removeTestImages(Object.values(tags));
});

it("reaches its own organisation's service by name", async () => {
  const fromA = await runProbeContainer(orgA.network, ncGet(orgA.service));
  const fromB = await runProbeContainer(orgB.network, ncGet(orgB.service));

  expect(fromA.stdout).toMatch(/^HTTP\/1\.[01] 200 OK\r\n[\s\S]*\r\n\r\norg a app\n$/);
  expect(fromB.stdout).toMatch(/\r\n\r\norg b app\n$/);
});

it("cannot resolve another organisation's service name", async () => {
  const probe = await runProbeContainer(orgA.network, `${ncGet(orgB.service)}; echo "exit=$?"`);

  expect(probe.stdout).toMatch(/exit=1\n$/);
  expect(probe.stdout).not.toContain('org b app');
  expect(probe.stderr).toContain(`bad address '${orgB.service}'`);
});

it("cannot reach another organisation's task by its address", async () => {
  const addressOfB = await taskAddress(serviceBId, orgB.network);
  const sameNetwork = await runProbeContainer(orgB.network, ncGet(addressOfB));
  const otherNetwork = await runProbeContainer(orgA.network, `${ncGet(addressOfB)}; echo "exit=$?"`);

  expect(sameNetwork.stdout).toContain('org b app');
  // Off its own overlay the address means nothing: the packet leaves by the default route (on this machine
  // something upstream may even answer), so only "B's app did not answer" is a stable assertion.
  expect(otherNetwork.stdout).not.toContain('org b app');
  expect(otherNetwork.stdout).toMatch(/exit=\d+\n$/);
});

/** The overlay address of the service's running task on that network (outside the orchestrator API). */
async function taskAddress(serviceId: string, networkName: string): Promise<string> {
  const [task] = (await orchestrator.listTasks(serviceId)).filter((t) => t.state === 'running');
  const container = await testDocker.getContainer(task.containerId!).inspect();
  return container.NetworkSettings.Networks[networkName].IPAddress;
}

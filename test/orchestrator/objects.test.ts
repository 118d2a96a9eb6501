// Swarm, network and service bookkeeping, and how failures surface as OrchestratorError codes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOYMENT_LABEL, OrchestratorError } from '../../src/platform/orchestrator/orchestrator.js';
import { SwarmOrchestrator } from '../../src/platform/orchestrator/swarm.js';
import { buildTestImage, removeTestImages } from '../helpers/images.js';
import { SwarmCleanup, testDocker, testServiceSpec, uniqueName } from '../helpers/swarm.js';

const orchestrator = new SwarmOrchestrator(testDocker);
const cleanup = new SwarmCleanup();
const tag = `convoy-test/objects:${uniqueName('v1')}`;
const networkName = uniqueName('obj-net');
// Services here never need to run: a constraint no node meets keeps their tasks pending and cleanup quick.
const unschedulable = { placementConstraints: ['node.labels.convoy-test-missing==yes'] };

beforeAll(async () => {
  cleanup.network(networkName);
  await buildTestImage(tag, { body: 'objects' });
});

afterAll(async () => {
  await cleanup.run();
  await removeTestImages([tag]);
});

describe('swarm', () => {
  it('reports the local manager node', async () => {
    const info = await testDocker.info();
    expect(await orchestrator.ensureSwarm({ initIfMissing: false })).toEqual({ nodeId: info.Swarm.NodeID });
  });

  it('reports an unreachable engine as UNAVAILABLE', async () => {
    const nowhere = new SwarmOrchestrator('unix:///tmp/convoy-no-such-docker.sock');
    await expect(nowhere.ensureSwarm({ initIfMissing: false })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringContaining('cannot reach the Docker engine'),
    });
  });
});

describe('networks', () => {
  it('creates an attachable overlay network once, even when asked concurrently', async () => {
    const ids = await Promise.all([1, 2, 3].map(() => orchestrator.ensureNetwork(networkName, { 'convoy.org': 'org-1' })));

    expect(new Set(ids.map((network) => network.id)).size).toBe(1);
    const network = await testDocker.getNetwork(networkName).inspect();
    expect(network).toMatchObject({ Id: ids[0].id, Driver: 'overlay', Scope: 'swarm', Attachable: true });
    expect(network.Labels).toEqual({ 'convoy.org': 'org-1' });
  });

  it('refuses a name taken by a network that is not a swarm overlay', async () => {
    const name = cleanup.network(uniqueName('bridge'));
    await testDocker.createNetwork({ Name: name, Driver: 'bridge' });

    await expect(orchestrator.ensureNetwork(name, {})).rejects.toMatchObject({ code: 'CONFLICT' });
  });

  it('keeps a network that is in use, and removes it once free', async () => {
    const name = cleanup.network(uniqueName('busy'));
    await orchestrator.ensureNetwork(name, {});
    const spec = testServiceSpec({ name: uniqueName('user'), image: tag, deploymentId: 'dep-1', networkName: name, ...unschedulable });
    const { id } = await orchestrator.createService(spec);
    cleanup.service(id);

    expect(await orchestrator.removeNetwork(name)).toBe(false);
    await orchestrator.removeService(id);
    expect(await orchestrator.removeNetwork(name)).toBe(true);
    expect(await orchestrator.removeNetwork(name)).toBe(true);
  });
});

describe('services', () => {
  it('finds services by exact name and by label', async () => {
    const name = uniqueName('findme');
    const spec = testServiceSpec({ name, image: tag, deploymentId: 'dep-7', networkName, ...unschedulable });
    await orchestrator.ensureNetwork(networkName, {});
    const { id } = await orchestrator.createService({ ...spec, labels: { 'convoy.service-id': name } });
    cleanup.service(id);

    const found = await orchestrator.findServiceByName(name);
    expect(found).toEqual({
      id,
      name,
      version: expect.any(Number),
      image: tag,
      replicas: 1,
      labels: { 'convoy.service-id': name },
      deploymentLabel: 'dep-7',
    });
    expect(await orchestrator.findServiceByName(name.slice(0, -1))).toBeNull();
    expect((await orchestrator.findServicesByLabel('convoy.service-id', name)).map((s) => s.id)).toEqual([id]);
    expect(await orchestrator.findServicesByLabel('convoy.service-id', `${name}-other`)).toEqual([]);
  });

  it('maps Docker refusals to error codes', async () => {
    await orchestrator.ensureNetwork(networkName, {});
    const spec = testServiceSpec({ name: uniqueName('dup'), image: tag, deploymentId: 'dep-1', networkName, ...unschedulable });
    cleanup.service((await orchestrator.createService(spec)).id);

    await expect(orchestrator.createService(spec)).rejects.toMatchObject({ code: 'CONFLICT' });
    await expect(orchestrator.createService({ ...spec, name: 'Not A DNS Name!' })).rejects.toMatchObject({ code: 'INVALID' });
    await expect(orchestrator.createService({ ...spec, containerLabels: {} })).rejects.toMatchObject({
      code: 'INVALID',
      message: expect.stringContaining(DEPLOYMENT_LABEL),
    });
    await expect(orchestrator.inspectService('no-such-service-xyz')).rejects.toBeInstanceOf(OrchestratorError);
    await expect(orchestrator.inspectService('no-such-service-xyz')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(orchestrator.removeService('no-such-service-xyz')).resolves.toBeUndefined();
  });
});

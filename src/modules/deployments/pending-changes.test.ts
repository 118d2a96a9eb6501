// Which of a service's fields differ from what its current deployment runs: the rules that the API's
// Service.pendingChanges reports (the Swarm-backed behaviour is in test/deploys-lifecycle-model.test.ts).
import { describe, expect, it } from 'vitest';
import { pendingChanges, snapshotConfig, type ServiceConfiguration } from './service.js';
import type { Service } from '../../generated/prisma/client.js';

const HEALTH = { type: 'HTTP', path: '/health', port: 8080, command: null, intervalSeconds: 5, timeoutSeconds: 2, retries: 3, startPeriodSeconds: 0 };

function service(overrides: Partial<Service> = {}): Service {
  return {
    id: 's1', organizationId: 'o1', name: 'web', status: 'RUNNING', sourceType: 'IMAGE', image: 'app:1', templateId: null, nixExpression: null,
    gitUrl: null, gitBranch: null, gitTokenEnc: null, env: { A: '1', B: '2' }, cpuLimit: 0.5, memoryLimitMb: 256, cpuReservation: null,
    memoryReservationMb: null, replicas: 2, ports: [{ target: 8080, published: null, protocol: 'TCP', mode: 'INGRESS' }], healthCheck: HEALTH,
    hostname: 'web-o.example.test', groupId: null, webhookSecretEnc: null, currentDeploymentId: 'd1', createdAt: new Date(), updatedAt: new Date(), deletedAt: null,
    ...overrides,
  } as Service;
}

/** What a deploy of `from` would have recorded. */
function deployedFrom(from: Service) {
  return { image: from.image ?? 'built:1', replicas: from.replicas, config: snapshotConfig(from) as never };
}

describe('pendingChanges', () => {
  it('is null before anything was deployed and empty right after a deploy', () => {
    expect(pendingChanges(service(), null)).toBeNull();
    expect(pendingChanges(service(), deployedFrom(service()))).toEqual([]);
  });

  it('ignores the key order jsonb gives back', () => {
    const running = deployedFrom(service());
    const reordered: ServiceConfiguration = service({ env: { B: '2', A: '1' }, healthCheck: Object.fromEntries(Object.entries(HEALTH).reverse()) });
    expect(pendingChanges(reordered, running)).toEqual([]);
  });

  it('names each changed field by its Service field name', () => {
    const running = deployedFrom(service());
    const changed = service({ image: 'app:2', env: { A: '1' }, ports: [], healthCheck: null, memoryLimitMb: 512, replicas: 3 });
    expect(pendingChanges(changed, running)).toEqual(['source', 'env', 'ports', 'healthCheck', 'resources', 'replicas']);
  });

  it('counts a built source as changed when its repository or branch changed, not for a new image of it', () => {
    const git = service({ sourceType: 'GIT', image: null, gitUrl: 'https://git.example.test/app.git', gitBranch: 'main' });
    const running = { ...deployedFrom(git), image: 'convoy/built:abc' };
    expect(pendingChanges(git, running)).toEqual([]);
    expect(pendingChanges({ ...git, gitBranch: 'next' }, running)).toEqual(['source']);
    // A deployment recorded before sources were snapshotted: nothing to compare with.
    const { source: _source, ...oldSnapshot } = running.config as Record<string, unknown>;
    expect(pendingChanges({ ...git, gitBranch: 'next' }, { ...running, config: oldSnapshot as never })).toEqual([]);
  });
});

// Compares desired state in PostgreSQL with what Swarm runs and repairs the difference. Runs on a
// schedule and when the controller starts, so a crash mid-deploy always converges.
import { DeploymentKind, DeploymentStatus, ServiceStatus } from '../../generated/prisma/enums.js';
import type { Deployment, Service } from '../../generated/prisma/client.js';
import { publishServiceEvent, transitionServiceStatus } from '../services/service.js';
import { deployJobId, queueDeployment, type DeployDeps } from './service.js';
import { removeServiceRuntime, specFor, type RunnerDeps } from './runner.js';
import { swarmServiceName, type DeploymentConfig } from './spec.js';
import { pruneBuiltImages } from './images.js';
import { pullAuthFor } from './registry-credentials.js';
import { ensureJobRunnable } from '../../platform/queue/queues.js';
import { excludedNodesOf, specDrift, type DriftField } from '../../platform/orchestrator/index.js';
import { tryLock } from '../../platform/redis/lock.js';
import type { Redis } from '../../platform/redis/connection.js';
import type Docker from 'dockerode';

export type ReconcileDeps = RunnerDeps & DeployDeps & { docker: Docker; redis: Redis };

export type ReconcileReport = {
  resumed: string[];
  recreated: string[];
  markedFailed: string[];
  removed: string[];
  prunedImages: string[];
  /** Services whose Swarm spec was changed outside Convoy: restored (recreate) or recorded (mark). */
  driftRestored: string[];
  driftMarked: string[];
};

/**
 * Re-queues unfinished deployments whose job is gone or already ended: lost with a crashed controller,
 * or with Redis's data. PostgreSQL says what must run; Redis only carries the work.
 */
async function resumeUnfinishedDeployments(deps: ReconcileDeps): Promise<string[]> {
  const unfinished = await deps.db.deployment.findMany({ where: { status: { in: [DeploymentStatus.QUEUED, DeploymentStatus.DEPLOYING] } }, select: { id: true }, orderBy: { createdAt: 'asc' } });
  const resumed: string[] = [];
  for (const { id } of unfinished) {
    // A delayed job waits for its service's lock or a retry's backoff: it runs in its time.
    const ensured = await ensureJobRunnable(deps.queues.deployments, deployJobId(id), { name: 'deploy', data: { kind: 'deploy', deploymentId: id } }, { promoteDelayed: false });
    if (ensured === 'added') resumed.push(id);
  }
  return resumed;
}

/** The spec Convoy applied last: the current deployment's, at zero replicas once stopped. */
async function appliedSpec(deps: ReconcileDeps, service: Service, current: Deployment) {
  const spec = await specFor(deps, service, current);
  return service.status === ServiceStatus.STOPPED ? { ...spec, replicas: 0 } : spec;
}

/** A line in the service's status history (the status itself stays): what drifted and what was done. */
async function recordDrift(deps: ReconcileDeps, service: Service, reason: string, onlyIfNew: boolean) {
  if (onlyIfNew) {
    const last = await deps.db.serviceStatusChange.findFirst({ where: { serviceId: service.id }, orderBy: { createdAt: 'desc' }, select: { reason: true } });
    if (last?.reason === reason) return false;
  }
  await deps.db.serviceStatusChange.create({ data: { serviceId: service.id, fromStatus: service.status, toStatus: service.status, reason } });
  await publishServiceEvent(deps.bus, 'STATUS_CHANGED', service, service.status, reason);
  return true;
}

/**
 * Compares what Swarm runs with the current deployment's spec (see specDrift) and, per
 * CONVOY_DRIFT_POLICY, re-applies it or records the drift once. Re-applying keeps the running tasks
 * when only the replica count drifted (same task template).
 */
async function handleSpecDrift(deps: ReconcileDeps, service: Service, current: Deployment, swarmServiceId: string): Promise<'restored' | 'marked' | null> {
  const desired = await appliedSpec(deps, service, current);
  const observed = await deps.orchestrator.inspectOwnedSpec(swarmServiceId);
  const drift: DriftField[] = specDrift(desired, observed);
  if (drift.length === 0) return null;
  const fields = drift.join(', ');
  if (deps.config.deploy.driftPolicy === 'mark') {
    const recorded = await recordDrift(deps, service, `the Swarm service was changed outside Convoy (${fields}): it differs from deployment ${current.id}`, true);
    return recorded ? 'marked' : null;
  }
  // The deploy worker's per-service lock: a rollout that starts meanwhile wins, the next run checks again.
  const lock = await tryLock(deps.redis, `${deps.config.redisPrefix}:lock:service:${service.id}`, deps.config.deploy.jobLockSeconds * 1000);
  if (!lock) return null;
  try {
    const busy = await deps.db.deployment.count({ where: { serviceId: service.id, status: { in: [DeploymentStatus.QUEUED, DeploymentStatus.DEPLOYING] } } });
    if (busy > 0) return null;
    // Node exclusions are failover's to set and lift (releaseNodeExclusions): keep the ones Swarm has.
    const restored = { ...desired, excludedNodes: excludedNodesOf(observed) };
    await deps.orchestrator.updateService(swarmServiceId, restored, { registryAuth: await pullAuthFor(deps, service.organizationId, current.image) });
  } finally {
    await lock.release();
  }
  await recordDrift(deps, service, `the Swarm service was changed outside Convoy (${fields}): re-applied deployment ${current.id}`, false);
  deps.log.warn({ serviceId: service.id, drift }, 'restored a Swarm service changed outside Convoy');
  return 'restored';
}

export async function reconcile(deps: ReconcileDeps): Promise<ReconcileReport> {
  const report: ReconcileReport = { resumed: await resumeUnfinishedDeployments(deps), recreated: [], markedFailed: [], removed: [], prunedImages: [], driftRestored: [], driftMarked: [] };

  const settled = await deps.db.service.findMany({
    where: { deletedAt: null, currentDeploymentId: { not: null }, status: { in: [ServiceStatus.RUNNING, ServiceStatus.STOPPED] } },
    include: { currentDeployment: true },
  });
  for (const service of settled) {
    const busy = await deps.db.deployment.count({ where: { serviceId: service.id, status: { in: [DeploymentStatus.QUEUED, DeploymentStatus.DEPLOYING] } } });
    if (busy > 0 || !service.currentDeployment) continue;
    const swarm = await deps.orchestrator.findServiceByName(swarmServiceName(service.id));
    if (swarm) {
      // One service's Swarm trouble must not stop the others' reconciliation.
      const outcome = await handleSpecDrift(deps, service, service.currentDeployment, swarm.id).catch((error: unknown) => {
        deps.log.warn({ err: error, serviceId: service.id }, 'could not check the Swarm service for drift');
        return null;
      });
      if (outcome === 'restored') report.driftRestored.push(service.id);
      if (outcome === 'marked') report.driftMarked.push(service.id);
      continue;
    }
    if (deps.config.deploy.driftPolicy === 'recreate') {
      const current = service.currentDeployment;
      await queueDeployment(deps, null, service, {
        kind: DeploymentKind.REDEPLOY,
        image: current.image,
        replicas: service.status === ServiceStatus.STOPPED ? 0 : service.replicas,
        config: current.config as unknown as DeploymentConfig,
        reason: 'the Swarm service was removed outside Convoy: recreating it',
        buildId: current.buildId,
      });
      report.recreated.push(service.id);
    } else {
      await transitionServiceStatus(deps, service.id, ServiceStatus.FAILED, 'the Swarm service was removed outside Convoy');
      report.markedFailed.push(service.id);
    }
  }

  // Deleted services whose runtime removal did not finish (or raced a deploy).
  const deleted = await deps.db.service.findMany({ where: { deletedAt: { not: null }, updatedAt: { gt: new Date(Date.now() - 7 * 86_400_000) } }, select: { id: true } });
  for (const { id } of deleted) {
    if (await deps.orchestrator.findServiceByName(swarmServiceName(id))) {
      await removeServiceRuntime(deps, id);
      report.removed.push(id);
    }
  }
  report.prunedImages = await pruneBuiltImages(deps, deps.config.deploy.keepImages);
  return report;
}

// Compares desired state in PostgreSQL with what Swarm runs and repairs the difference. Runs on a
// schedule and when the controller starts, so a crash mid-deploy always converges.
import { DeploymentKind, DeploymentStatus, ServiceStatus } from '../../generated/prisma/enums.js';
import { transitionServiceStatus } from '../services/service.js';
import { deployJobId, enqueueDeployment, queueDeployment, type DeployDeps } from './service.js';
import { removeServiceRuntime, type RunnerDeps } from './runner.js';
import { swarmServiceName, type DeploymentConfig } from './spec.js';
import { pruneBuiltImages } from './images.js';
import type Docker from 'dockerode';

export type ReconcileDeps = RunnerDeps & DeployDeps & { docker: Docker };

export type ReconcileReport = { resumed: string[]; recreated: string[]; markedFailed: string[]; removed: string[]; prunedImages: string[] };

/** Re-queues unfinished deployments whose job is gone or already ended (lost with a crashed controller). */
async function resumeUnfinishedDeployments(deps: ReconcileDeps): Promise<string[]> {
  const unfinished = await deps.db.deployment.findMany({ where: { status: { in: [DeploymentStatus.QUEUED, DeploymentStatus.DEPLOYING] } }, select: { id: true } });
  const resumed: string[] = [];
  for (const { id } of unfinished) {
    const job = await deps.queues.deployments.getJob(deployJobId(id));
    const state = job ? await job.getState() : 'missing';
    if (state === 'completed' || state === 'failed') await job!.remove();
    if (state === 'completed' || state === 'failed' || state === 'missing' || state === 'unknown') {
      await enqueueDeployment(deps, id);
      resumed.push(id);
    }
  }
  return resumed;
}

export async function reconcile(deps: ReconcileDeps): Promise<ReconcileReport> {
  const report: ReconcileReport = { resumed: await resumeUnfinishedDeployments(deps), recreated: [], markedFailed: [], removed: [], prunedImages: [] };

  const settled = await deps.db.service.findMany({
    where: { deletedAt: null, currentDeploymentId: { not: null }, status: { in: [ServiceStatus.RUNNING, ServiceStatus.STOPPED] } },
    include: { currentDeployment: true },
  });
  for (const service of settled) {
    const busy = await deps.db.deployment.count({ where: { serviceId: service.id, status: { in: [DeploymentStatus.QUEUED, DeploymentStatus.DEPLOYING] } } });
    if (busy > 0 || !service.currentDeployment) continue;
    if (await deps.orchestrator.findServiceByName(swarmServiceName(service.id))) continue;
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

// Images Convoy built are kept for rollback while one of a service's last N healthy deployments (or
// an unfinished one) uses them; older ones are removed from the node.
import type Docker from 'dockerode';
import type { Db } from '../../platform/db/client.js';
import { removeImage } from '../../platform/images/index.js';
import { DeploymentStatus } from '../../generated/prisma/enums.js';
import { HEALTHY_STATUSES } from './service.js';

export async function pruneBuiltImages(deps: { db: Db; docker: Docker }, keepHealthy: number): Promise<string[]> {
  const removed: string[] = [];
  const services = await deps.db.service.findMany({ where: { builds: { some: { imageRef: { not: null } } } }, select: { id: true, deletedAt: true } });
  for (const service of services) {
    const keep = new Set<string>();
    if (!service.deletedAt) {
      const healthy = await deps.db.deployment.findMany({ where: { serviceId: service.id, status: { in: HEALTHY_STATUSES } }, orderBy: { createdAt: 'desc' }, take: keepHealthy, select: { image: true } });
      const unfinished = await deps.db.deployment.findMany({ where: { serviceId: service.id, status: { in: [DeploymentStatus.QUEUED, DeploymentStatus.DEPLOYING] } }, select: { image: true } });
      for (const d of [...healthy, ...unfinished]) keep.add(d.image);
      // A build that just finished and whose deployment is not queued yet.
      const recent = await deps.db.build.findMany({ where: { serviceId: service.id, finishedAt: { gt: new Date(Date.now() - 10 * 60_000) }, deployments: { none: {} } }, select: { imageRef: true } });
      for (const b of recent) if (b.imageRef) keep.add(b.imageRef);
    }
    const built = await deps.db.build.findMany({ where: { serviceId: service.id, imageRef: { not: null } }, select: { imageRef: true } });
    for (const ref of new Set(built.map((b) => b.imageRef!))) {
      if (keep.has(ref)) continue;
      // Another service of the organization may deploy the same build's image (deployService with image).
      const usedElsewhere = await deps.db.deployment.count({ where: { image: ref, serviceId: { not: service.id }, service: { deletedAt: null }, status: { in: [...HEALTHY_STATUSES, DeploymentStatus.QUEUED, DeploymentStatus.DEPLOYING] } } });
      if (usedElsewhere) continue;
      if (await removeImage(deps.docker, ref)) removed.push(ref);
    }
  }
  return removed;
}

// deploymentEvents: a deployment's current status (its latest recorded event), then each change.
import type { Db } from '../../platform/db/client.js';
import type { ConvoyBus, DeploymentEvent } from '../../events.js';
import { DeploymentStatus } from '../../generated/prisma/enums.js';
import type { Actor } from '../auth/caller.js';
import { NotFoundError } from '../common/errors.js';
import { currentThenChanges } from '../common/current-then-changes.js';
import { FINISHED_STATUSES } from './service.js';

const DEPLOYMENT_STATUS_ORDER = [DeploymentStatus.QUEUED, DeploymentStatus.DEPLOYING, DeploymentStatus.RUNNING];

export async function followDeploymentStatus(deps: { db: Db; bus: ConvoyBus }, actor: Pick<Actor, 'organizationId'>, deploymentId: string): Promise<AsyncIterableIterator<DeploymentEvent>> {
  const id = String(deploymentId).slice(0, 64);
  const owned = await deps.db.deployment.count({ where: { id, service: { organizationId: actor.organizationId } } });
  if (!owned) throw new NotFoundError('Deployment', id);
  const live = await deps.bus.subscribe('deployment', id);
  try {
    const deployment = await deps.db.deployment.findUniqueOrThrow({
      where: { id },
      select: { status: true, serviceId: true, reason: true, updatedAt: true, events: { orderBy: { createdAt: 'desc' }, take: 1, select: { message: true, createdAt: true } } },
    });
    const latest = deployment.events[0];
    const current: DeploymentEvent = {
      deploymentId: id,
      serviceId: deployment.serviceId,
      organizationId: actor.organizationId,
      status: deployment.status,
      message: latest?.message ?? deployment.reason ?? deployment.status.toLowerCase(),
      at: (latest?.createdAt ?? deployment.updatedAt).toISOString(),
    };
    return currentThenChanges(live, current, { order: DEPLOYMENT_STATUS_ORDER, isFinal: (status) => FINISHED_STATUSES.includes(status as DeploymentStatus) });
  } catch (error) {
    await live.return?.();
    throw error;
  }
}

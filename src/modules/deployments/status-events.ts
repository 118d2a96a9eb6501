// deploymentEvents: a deployment's current status (its latest recorded event), then each change; or,
// for a client resuming after the last event it has, the stored events since, then each change.
import type { Db } from '../../platform/db/client.js';
import type { ConvoyBus, DeploymentEvent } from '../../events.js';
import { DeploymentStatus } from '../../generated/prisma/enums.js';
import type { Actor } from '../auth/caller.js';
import { NotFoundError } from '../common/errors.js';
import { currentThenChanges, missedThenChanges, type CurrentThenChangesOptions } from '../common/current-then-changes.js';
import { FINISHED_STATUSES } from './service.js';

const DEPLOYMENT_STATUS_ORDER = [DeploymentStatus.QUEUED, DeploymentStatus.DEPLOYING, DeploymentStatus.RUNNING];

export type FollowDeploymentOptions = {
  /** The id of the last event the client has (a DeploymentStatusEvent's eventId): only later ones are sent. */
  afterEventId?: string | null;
};

export async function followDeploymentStatus(deps: { db: Db; bus: ConvoyBus }, actor: Pick<Actor, 'organizationId'>, deploymentId: string, options: FollowDeploymentOptions = {}): Promise<AsyncIterableIterator<DeploymentEvent>> {
  const id = String(deploymentId).slice(0, 64);
  const owned = await deps.db.deployment.count({ where: { id, service: { organizationId: actor.organizationId } } });
  if (!owned) throw new NotFoundError('Deployment', id);
  const live = await deps.bus.subscribe('deployment', id);
  try {
    // A deployment has a handful of events: read them all with its status, in one go.
    const deployment = await deps.db.deployment.findUniqueOrThrow({
      where: { id },
      select: { status: true, serviceId: true, reason: true, updatedAt: true, events: { orderBy: [{ createdAt: 'asc' }, { id: 'asc' }], select: { id: true, status: true, message: true, createdAt: true } } },
    });
    const asEvent = (status: string, message: string, at: Date, eventId: string | undefined): DeploymentEvent => ({ deploymentId: id, serviceId: deployment.serviceId, organizationId: actor.organizationId, status, message, at: at.toISOString(), eventId });
    const latest = deployment.events.at(-1);
    const current = asEvent(deployment.status, latest?.message ?? deployment.reason ?? deployment.status.toLowerCase(), latest?.createdAt ?? deployment.updatedAt, latest?.id);
    const rule: CurrentThenChangesOptions<DeploymentEvent> = { order: DEPLOYMENT_STATUS_ORDER, isFinal: (status) => FINISHED_STATUSES.includes(status as DeploymentStatus) };
    if (options.afterEventId == null) return currentThenChanges(live, current, rule);

    const afterEventId = String(options.afterEventId).slice(0, 64);
    // Only this deployment's events count: any other id (another deployment's, another organization's) is missing.
    const anchor = deployment.events.findIndex((event) => event.id === afterEventId);
    if (anchor < 0) throw new NotFoundError('DeploymentEvent', afterEventId);
    const missed = deployment.events.slice(anchor + 1).map((event) => asEvent(event.status, event.message, event.createdAt, event.id));
    // A status reached without a stored event (superseded, cancelled with its service) still reaches the client.
    const lastStatus = missed.at(-1)?.status ?? deployment.events[anchor]!.status;
    if (lastStatus !== deployment.status) missed.push(current);
    const stored = new Set(deployment.events.map((event) => event.id));
    return missedThenChanges(live, missed, deployment.status, { ...rule, isAlreadySent: (event) => (event.eventId ? stored.has(event.eventId) : undefined) });
  } catch (error) {
    await live.return?.();
    throw error;
  }
}

// serviceEvents for one service: a CURRENT event with its status and the reason of its last transition,
// then every event. The organization-wide stream has no snapshot (it would be one per service).
import type { Db } from '../../platform/db/client.js';
import type { ConvoyBus, ServiceEvent } from '../../events.js';
import type { Actor } from '../auth/caller.js';
import { NotFoundError } from '../common/errors.js';
import { currentThenChanges } from '../common/current-then-changes.js';

export async function followServiceEvents(deps: { db: Db; bus: ConvoyBus }, actor: Pick<Actor, 'organizationId'>, serviceId: string | null): Promise<AsyncIterableIterator<ServiceEvent>> {
  if (!serviceId) return deps.bus.subscribe('organizationServices', actor.organizationId);
  const id = String(serviceId).slice(0, 64);
  const owned = await deps.db.service.count({ where: { id, organizationId: actor.organizationId, deletedAt: null } });
  if (!owned) throw new NotFoundError('Service', id);
  const live = await deps.bus.subscribe('service', id);
  try {
    const service = await deps.db.service.findUniqueOrThrow({
      where: { id },
      select: { name: true, status: true, updatedAt: true, statusHistory: { orderBy: { createdAt: 'desc' }, take: 1, select: { fromStatus: true, reason: true, createdAt: true } } },
    });
    const last = service.statusHistory[0];
    const current: ServiceEvent = {
      kind: 'CURRENT',
      serviceId: id,
      organizationId: actor.organizationId,
      name: service.name,
      status: service.status,
      previousStatus: last?.fromStatus ?? null,
      reason: last?.reason ?? null,
      at: (last?.createdAt ?? service.updatedAt).toISOString(),
    };
    // A service has no final status: the stream lasts until the client leaves.
    return currentThenChanges(live, current, { order: [], isFinal: () => false, isStatusEvent: (event) => event.kind === 'STATUS_CHANGED' });
  } catch (error) {
    await live.return?.();
    throw error;
  }
}

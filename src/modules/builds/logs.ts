import type { Db } from '../../platform/db/client.js';
import type { BuildEvent, ConvoyBus } from '../../events.js';
import { BuildStatus } from '../../generated/prisma/enums.js';
import { NotFoundError, ValidationError } from '../common/errors.js';
import { currentThenChanges } from '../common/current-then-changes.js';
import { releasingWith } from '../../platform/events/releasing.js';
import type { Actor } from '../auth/caller.js';
import { FINISHED_BUILD_STATUSES } from './service.js';

export type BuildLogLine = { seq: number; line: string };

/**
 * The build's stored log, then its live lines until it ends. Subscribing before reading the stored
 * log, and numbering lines, means no line is lost or repeated across the switch. A client that
 * reconnects passes `afterLine`, the last seq it has, and gets only the lines after it.
 */
export async function followBuildLogs(deps: { db: Db; bus: ConvoyBus }, actor: Pick<Actor, 'organizationId'>, buildId: string, options: { afterLine?: number | null } = {}): Promise<AsyncIterableIterator<BuildLogLine>> {
  const afterLine = options.afterLine ?? null;
  if (afterLine !== null && (!Number.isInteger(afterLine) || afterLine < 0)) throw ValidationError.single(['afterLine'], 'must be the seq of a line (0 or more)');
  const owned = await deps.db.build.count({ where: { id: String(buildId).slice(0, 64), service: { organizationId: actor.organizationId } } });
  if (!owned) throw new NotFoundError('Build', String(buildId).slice(0, 64));
  const live = await deps.bus.subscribe('buildLog', buildId);
  const lines = async function* () {
    try {
      const build = await deps.db.build.findUniqueOrThrow({ where: { id: buildId }, select: { logs: true, status: true } });
      const stored = build.logs ? build.logs.replace(/\n$/, '').split('\n') : [];
      // The seq of the next line to send: lines before it are stored ones the client already has.
      let next = afterLine === null ? 0 : afterLine + 1;
      for (const [seq, line] of stored.entries()) {
        if (seq < next) continue;
        next = seq + 1;
        yield { seq, line };
      }
      if (FINISHED_BUILD_STATUSES.includes(build.status)) return;
      for await (const event of live) {
        if ('done' in event) return;
        for (const [i, line] of event.lines.entries()) {
          const seq = event.firstSeq + i;
          if (seq < next) continue;
          next = seq + 1;
          yield { seq, line };
        }
      }
    } finally {
      await live.return?.();
    }
  };
  return releasingWith(lines(), live);
}

const BUILD_STATUS_ORDER = [BuildStatus.QUEUED, BuildStatus.RUNNING];

/** The build's current status, then its changes until it ends (see currentThenChanges). */
export async function followBuildStatus(deps: { db: Db; bus: ConvoyBus }, actor: Pick<Actor, 'organizationId'>, buildId: string): Promise<AsyncIterableIterator<BuildEvent>> {
  const id = String(buildId).slice(0, 64);
  const owned = await deps.db.build.count({ where: { id, service: { organizationId: actor.organizationId } } });
  if (!owned) throw new NotFoundError('Build', id);
  const live = await deps.bus.subscribe('build', id);
  try {
    const build = await deps.db.build.findUniqueOrThrow({ where: { id }, select: { status: true, serviceId: true, error: true, updatedAt: true } });
    const current: BuildEvent = { buildId: id, serviceId: build.serviceId, organizationId: actor.organizationId, status: build.status, message: build.error ?? build.status.toLowerCase(), at: build.updatedAt.toISOString() };
    return currentThenChanges(live, current, { order: BUILD_STATUS_ORDER, isFinal: (status) => FINISHED_BUILD_STATUSES.includes(status as BuildStatus) });
  } catch (error) {
    await live.return?.();
    throw error;
  }
}

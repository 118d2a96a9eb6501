import type { Db } from '../../platform/db/client.js';
import type { ConvoyBus } from '../../events.js';
import { NotFoundError } from '../common/errors.js';
import type { Actor } from '../auth/caller.js';
import { FINISHED_BUILD_STATUSES } from './service.js';

export type BuildLogLine = { seq: number; line: string };

/**
 * The build's stored log, then its live lines until it ends. Subscribing before reading the stored
 * log, and numbering lines, means no line is lost or repeated across the switch.
 */
export async function followBuildLogs(deps: { db: Db; bus: ConvoyBus }, actor: Pick<Actor, 'organizationId'>, buildId: string): Promise<AsyncGenerator<BuildLogLine>> {
  const owned = await deps.db.build.count({ where: { id: String(buildId).slice(0, 64), service: { organizationId: actor.organizationId } } });
  if (!owned) throw new NotFoundError('Build', String(buildId).slice(0, 64));
  const live = await deps.bus.subscribe('buildLog', buildId);
  return (async function* () {
    try {
      const build = await deps.db.build.findUniqueOrThrow({ where: { id: buildId }, select: { logs: true, status: true } });
      const stored = build.logs ? build.logs.replace(/\n$/, '').split('\n') : [];
      let next = 0;
      for (const line of stored) yield { seq: next++, line };
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
  })();
}

// The heartbeat sweep: workers that went silent become UNHEALTHY, then OFFLINE. Each transition is a
// conditional update, so concurrent sweeps (several controllers) and heartbeats never double-announce.
import type { Db } from '../../platform/db/client.js';
import type { Config } from '../../config.js';
import type { ConvoyBus } from '../../events.js';
import { WorkerStatus } from '../../generated/prisma/enums.js';
import { announceStatusChanges, type StatusChange } from './notify.js';

export type WorkerHealthDeps = { db: Db; bus: ConvoyBus; config: Pick<Config, 'workers'> };

/** `failed`: the workers that just left ONLINE (for UNHEALTHY or straight for OFFLINE), whose services need failover. */
export type SweepReport = { unhealthy: string[]; offline: string[]; failed: string[] };

const SUMMARY = { id: true, hostname: true, status: true, lastMetrics: true } as const;

/** DRAINING workers are left alone: an admin put them there, and heartbeats do not take them out. */
export async function sweepWorkerHealth(deps: WorkerHealthDeps, now: Date = new Date()): Promise<SweepReport> {
  const { unhealthySeconds, offlineSeconds } = deps.config.workers;
  const offlineBefore = new Date(now.getTime() - offlineSeconds * 1000);
  const unhealthyBefore = new Date(now.getTime() - unhealthySeconds * 1000);
  const move = (from: WorkerStatus, to: WorkerStatus, silentSince: Date) =>
    deps.db.worker.updateManyAndReturn({ where: { removedAt: null, status: from, lastHeartbeatAt: { lt: silentSince } }, data: { status: to }, select: SUMMARY });

  // OFFLINE first, so a worker silent past both limits (the controller was down) goes there directly.
  const offlineFromUnhealthy = await move(WorkerStatus.UNHEALTHY, WorkerStatus.OFFLINE, offlineBefore);
  const offlineFromOnline = await move(WorkerStatus.ONLINE, WorkerStatus.OFFLINE, offlineBefore);
  const unhealthy = await move(WorkerStatus.ONLINE, WorkerStatus.UNHEALTHY, unhealthyBefore);

  const silence = (seconds: number) => `no heartbeat for more than ${seconds} s`;
  const changes: StatusChange[] = [
    ...offlineFromUnhealthy.map((worker) => ({ worker, previousStatus: WorkerStatus.UNHEALTHY, reason: silence(offlineSeconds) })),
    ...offlineFromOnline.map((worker) => ({ worker, previousStatus: WorkerStatus.ONLINE, reason: silence(offlineSeconds) })),
    ...unhealthy.map((worker) => ({ worker, previousStatus: WorkerStatus.ONLINE, reason: silence(unhealthySeconds) })),
  ];
  await announceStatusChanges(deps, changes);
  return {
    unhealthy: unhealthy.map((w) => w.id),
    offline: [...offlineFromUnhealthy, ...offlineFromOnline].map((w) => w.id),
    failed: [...offlineFromOnline, ...unhealthy].map((w) => w.id),
  };
}

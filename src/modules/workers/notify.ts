// Worker status changes and resource alerts become Notification rows (for platform admins, and for the
// owners of organizations whose services the worker's last heartbeat reported) and events on the bus.
import type { Db } from '../../platform/db/client.js';
import type { Prisma, WorkerStatus } from '../../generated/prisma/client.js';
import { Role } from '../../generated/prisma/enums.js';
import type { ConvoyBus, WorkerEvent } from '../../events.js';
import { platformAdminIds } from '../auth/platform-admins.js';
import type { NodeMetricValues } from '../../shared/metrics.js';

/** What a heartbeat leaves in Worker.lastMetrics. */
export type MetricsSnapshot = NodeMetricValues & {
  at: string;
  containerCount: number;
  /** Live services with containers on the worker: whose owners hear about it. */
  serviceIds: string[];
};

export type WorkerSummary = { id: string; hostname: string; status: WorkerStatus; lastMetrics: Prisma.JsonValue | null };

export const RESOURCES = ['CPU', 'MEMORY', 'DISK'] as const;
export type Resource = (typeof RESOURCES)[number];

export const NOTIFICATION_KINDS = { statusChanged: 'WORKER_STATUS_CHANGED', resourceExhausted: 'WORKER_RESOURCE_EXHAUSTED' } as const;

type Notice = { worker: WorkerSummary; kind: string; title: string; body: string; data: Record<string, unknown> };

export function snapshotOf(value: Prisma.JsonValue | null | undefined): MetricsSnapshot | null {
  return value && typeof value === 'object' && !Array.isArray(value) ? (value as unknown as MetricsSnapshot) : null;
}

function serviceIdsOf(worker: WorkerSummary): string[] {
  return snapshotOf(worker.lastMetrics)?.serviceIds ?? [];
}

async function notify(db: Db, notices: Notice[]): Promise<void> {
  if (notices.length === 0) return;
  const serviceIds = [...new Set(notices.flatMap((n) => serviceIdsOf(n.worker)))];
  const [admins, services] = await Promise.all([
    platformAdminIds(db),
    serviceIds.length ? db.service.findMany({ where: { id: { in: serviceIds }, deletedAt: null }, select: { id: true, organizationId: true } }) : [],
  ]);
  const organizationOf = new Map(services.map((s) => [s.id, s.organizationId]));
  const organizationIds = [...new Set(services.map((s) => s.organizationId))];
  const owners = organizationIds.length
    ? await db.membership.findMany({ where: { organizationId: { in: organizationIds }, role: Role.OWNER }, select: { userId: true, organizationId: true } })
    : [];

  const rows: Prisma.NotificationCreateManyInput[] = [];
  for (const notice of notices) {
    const notified = new Set<string>();
    for (const userId of admins) {
      rows.push({ userId, organizationId: null, kind: notice.kind, title: notice.title, body: notice.body, data: notice.data as Prisma.InputJsonValue });
      notified.add(userId);
    }
    const affected = new Map<string, string[]>();
    for (const serviceId of serviceIdsOf(notice.worker)) {
      const organizationId = organizationOf.get(serviceId);
      if (organizationId) affected.set(organizationId, [...(affected.get(organizationId) ?? []), serviceId]);
    }
    for (const owner of owners) {
      const ownServices = affected.get(owner.organizationId);
      if (!ownServices || notified.has(owner.userId)) continue;
      notified.add(owner.userId);
      // An owner learns about their own services on the node, never about other organizations'.
      rows.push({
        userId: owner.userId,
        organizationId: owner.organizationId,
        kind: notice.kind,
        title: notice.title,
        body: notice.body,
        data: { ...notice.data, serviceIds: ownServices } as Prisma.InputJsonValue,
      });
    }
  }
  if (rows.length) await db.notification.createMany({ data: rows });
}

export async function publishWorkerEvent(bus: ConvoyBus, event: WorkerEvent): Promise<void> {
  await Promise.all([bus.publish('worker', event.workerId, event), bus.publish('workers', 'all', event)]);
}

export type StatusChange = { worker: WorkerSummary; previousStatus: WorkerStatus; reason: string };

export async function announceStatusChanges(deps: { db: Db; bus: ConvoyBus }, changes: StatusChange[]): Promise<void> {
  if (changes.length === 0) return;
  await notify(
    deps.db,
    changes.map(({ worker, previousStatus, reason }) => ({
      worker,
      kind: NOTIFICATION_KINDS.statusChanged,
      title: `Worker ${worker.hostname} is ${worker.status}`,
      body: `${worker.hostname} went from ${previousStatus} to ${worker.status}: ${reason}`,
      data: { workerId: worker.id, hostname: worker.hostname, status: worker.status, previousStatus },
    })),
  );
  const at = new Date().toISOString();
  await Promise.all(
    changes.map(({ worker, previousStatus, reason }) =>
      publishWorkerEvent(deps.bus, { kind: 'STATUS_CHANGED', workerId: worker.id, hostname: worker.hostname, status: worker.status, previousStatus, resources: [], reason, at }),
    ),
  );
}

export type AlertThresholds = { cpuPercent: number; memoryPercent: number; diskPercent: number };

export function exhaustedResources(metrics: MetricsSnapshot | null, thresholds: AlertThresholds): Resource[] {
  if (!metrics) return [];
  const exhausted: Resource[] = [];
  if (metrics.cpuPercent > thresholds.cpuPercent) exhausted.push('CPU');
  if (metrics.memoryTotalMb > 0 && (metrics.memoryUsedMb / metrics.memoryTotalMb) * 100 > thresholds.memoryPercent) exhausted.push('MEMORY');
  if (metrics.diskTotalGb > 0 && (metrics.diskUsedGb / metrics.diskTotalGb) * 100 > thresholds.diskPercent) exhausted.push('DISK');
  return exhausted;
}

/** Resources over their threshold now that were not before: what an alert is raised for (once). */
export function newlyExhausted(before: MetricsSnapshot | null, now: MetricsSnapshot, thresholds: AlertThresholds): Resource[] {
  const already = new Set(exhaustedResources(before, thresholds));
  return exhaustedResources(now, thresholds).filter((r) => !already.has(r));
}

function describe(resource: Resource, m: MetricsSnapshot): string {
  if (resource === 'CPU') return `CPU ${m.cpuPercent.toFixed(1)} %`;
  if (resource === 'MEMORY') return `memory ${((m.memoryUsedMb / m.memoryTotalMb) * 100).toFixed(1)} % (${m.memoryUsedMb} of ${m.memoryTotalMb} MB)`;
  return `disk ${((m.diskUsedGb / m.diskTotalGb) * 100).toFixed(1)} % (${m.diskUsedGb.toFixed(1)} of ${m.diskTotalGb.toFixed(1)} GB)`;
}

/** Alerts once when a resource crosses its threshold, not on every heartbeat while it stays over. */
export async function announceResourceExhaustion(deps: { db: Db; bus: ConvoyBus }, worker: WorkerSummary, resources: Resource[], metrics: MetricsSnapshot): Promise<void> {
  const summary = resources.map((r) => describe(r, metrics)).join(', ');
  const { serviceIds: _serviceIds, ...node } = metrics;
  await notify(deps.db, [
    {
      worker,
      kind: NOTIFICATION_KINDS.resourceExhausted,
      title: `Worker ${worker.hostname} is running out of ${resources.map((r) => r.toLowerCase()).join(', ')}`,
      body: `${worker.hostname}: ${summary}`,
      data: { workerId: worker.id, hostname: worker.hostname, resources, metrics: node },
    },
  ]);
  await publishWorkerEvent(deps.bus, { kind: 'RESOURCE_EXHAUSTED', workerId: worker.id, hostname: worker.hostname, status: worker.status, previousStatus: null, resources, reason: summary, at: new Date().toISOString() });
}

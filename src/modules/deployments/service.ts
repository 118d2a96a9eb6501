// The API side of deploys: every lifecycle mutation records a Deployment and queues a job for the
// controller, answering at once; progress arrives by subscription.
import type { Queue } from 'bullmq';
import type { Db } from '../../platform/db/client.js';
import type { Deployment, Prisma, Service } from '../../generated/prisma/client.js';
import { DeploymentKind, DeploymentStatus, ServiceStatus, SourceType } from '../../generated/prisma/enums.js';
import type { ConvoyBus } from '../../events.js';
import type { Config } from '../../config.js';
import { imageReference, replicas as replicasSchema } from '../../shared/validation.js';
import { parseInput } from '../common/parse.js';
import { ConflictError, NotFoundError, ValidationError } from '../common/errors.js';
import { recordAudit } from '../audit/audit.js';
import type { Actor } from '../auth/caller.js';
import { assertWithinQuota, getService } from '../services/service.js';
import type { DeploymentConfig } from './spec.js';
import type { HealthCheckSpec, PortSpec } from '../services/validation.js';

export type DeployJob = { kind: 'deploy'; deploymentId: string } | { kind: 'remove'; serviceId: string };
export type DeployDeps = { db: Db; bus: ConvoyBus; config: Config; queues: { deployments: Queue<DeployJob> } };

/** Statuses of deployments that became healthy at some point: valid rollback targets. */
export const HEALTHY_STATUSES: DeploymentStatus[] = [DeploymentStatus.RUNNING, DeploymentStatus.SUPERSEDED];
export const FINISHED_STATUSES: DeploymentStatus[] = [
  DeploymentStatus.RUNNING,
  DeploymentStatus.COMPLETED,
  DeploymentStatus.FAILED,
  DeploymentStatus.ROLLED_BACK,
  DeploymentStatus.SUPERSEDED,
  DeploymentStatus.CANCELLED,
];

export function snapshotConfig(service: Service): DeploymentConfig {
  return {
    name: service.name,
    hostname: service.hostname,
    customDomains: service.customDomains,
    env: (service.env ?? {}) as Record<string, string>,
    ports: (service.ports ?? []) as PortSpec[],
    healthCheck: (service.healthCheck ?? null) as HealthCheckSpec | null,
    cpuLimit: service.cpuLimit,
    memoryLimitMb: service.memoryLimitMb,
    cpuReservation: service.cpuReservation,
    memoryReservationMb: service.memoryReservationMb,
  };
}

export function deployJobId(deploymentId: string) {
  return `deploy-${deploymentId}`;
}

export async function enqueueDeployment(deps: Pick<DeployDeps, 'queues'>, deploymentId: string) {
  // The job id is the deployment's: queueing it twice (a retry, a resumed controller) is a no-op.
  await deps.queues.deployments.add('deploy', { kind: 'deploy', deploymentId }, { jobId: deployJobId(deploymentId) });
}

type NewDeployment = { kind: DeploymentKind; image: string; replicas: number; config: DeploymentConfig; reason: string; buildId?: string | null };

export async function queueDeployment(deps: DeployDeps, actor: Pick<Actor, 'userId' | 'organizationId' | 'requestId'> | null, service: Service, next: NewDeployment): Promise<Deployment> {
  const deployment = await deps.db.$transaction(async (tx) => {
    const created = await tx.deployment.create({
      data: {
        serviceId: service.id,
        kind: next.kind,
        status: DeploymentStatus.QUEUED,
        image: next.image,
        replicas: next.replicas,
        config: next.config as unknown as Prisma.InputJsonValue,
        reason: next.reason,
        buildId: next.buildId ?? null,
        previousDeploymentId: service.currentDeploymentId,
        triggeredById: actor?.userId ?? null,
        events: { create: { status: DeploymentStatus.QUEUED, message: next.reason } },
      },
    });
    if (actor) await recordAudit(tx, actor, `service.${next.kind.toLowerCase()}`, 'Service', service.id, { deploymentId: created.id, image: next.image, replicas: next.replicas });
    return created;
  });
  await deps.bus.publish('deployment', deployment.id, { deploymentId: deployment.id, serviceId: service.id, organizationId: service.organizationId, status: deployment.status, message: next.reason, at: new Date().toISOString() });
  await enqueueDeployment(deps, deployment.id);
  return deployment;
}

async function currentDeployment(db: Db, service: Service): Promise<Deployment | null> {
  return service.currentDeploymentId ? db.deployment.findUnique({ where: { id: service.currentDeploymentId } }) : null;
}

function imageFor(service: Service, given: string | null | undefined): string {
  if (given) return parseInput(imageReference, given);
  if (service.sourceType === SourceType.IMAGE && service.image) return service.image;
  throw ValidationError.single(['image'], 'this service builds from source: give an image or run a build');
}

function assertNotDeleting(service: Service) {
  if (service.status === ServiceStatus.DELETING) throw new ConflictError('The service is being deleted');
}

async function quotaForReplicas(db: Db, service: Service, replicas: number) {
  await assertWithinQuota(db, service.organizationId, {
    addServices: 1,
    replicas,
    cpu: (service.cpuLimit ?? 0) * replicas,
    memoryMb: (service.memoryLimitMb ?? 0) * replicas,
    excludeServiceId: service.id,
  });
}

export async function deployService(deps: DeployDeps, actor: Actor, serviceId: string, image?: string | null) {
  const service = await getService(deps, actor, serviceId);
  assertNotDeleting(service);
  const chosen = imageFor(service, image);
  await quotaForReplicas(deps.db, service, service.replicas);
  // A deploy of a new image makes it the service's image from now on.
  const updated = image && service.sourceType === SourceType.IMAGE ? await deps.db.service.update({ where: { id: service.id }, data: { image: chosen } }) : service;
  return queueDeployment(deps, actor, updated, { kind: DeploymentKind.DEPLOY, image: chosen, replicas: updated.replicas, config: snapshotConfig(updated), reason: `deploy ${chosen}` });
}

/** Re-applies the current configuration with the current image; new tasks, no build. */
export async function redeployService(deps: DeployDeps, actor: Actor, serviceId: string) {
  const service = await getService(deps, actor, serviceId);
  assertNotDeleting(service);
  const current = await currentDeployment(deps.db, service);
  const image = current?.image ?? imageFor(service, null);
  await quotaForReplicas(deps.db, service, service.replicas);
  return queueDeployment(deps, actor, service, { kind: DeploymentKind.REDEPLOY, image, replicas: service.replicas, config: snapshotConfig(service), reason: 'redeploy with the current configuration', buildId: current?.buildId });
}

async function requireCurrent(db: Db, service: Service, action: string): Promise<Deployment> {
  const current = await currentDeployment(db, service);
  if (!current) throw new ConflictError(`The service has never been deployed; deploy it before you ${action} it`);
  return current;
}

/** New tasks with the same image and configuration as the running deployment. */
export async function restartService(deps: DeployDeps, actor: Actor, serviceId: string) {
  const service = await getService(deps, actor, serviceId);
  assertNotDeleting(service);
  const current = await requireCurrent(deps.db, service, 'restart');
  return queueDeployment(deps, actor, service, { kind: DeploymentKind.RESTART, image: current.image, replicas: service.replicas, config: current.config as unknown as DeploymentConfig, reason: 'restart', buildId: current.buildId });
}

export async function scaleService(deps: DeployDeps, actor: Actor, serviceId: string, replicas: number) {
  const count = parseInput(replicasSchema, replicas);
  const service = await getService(deps, actor, serviceId);
  assertNotDeleting(service);
  const current = await requireCurrent(deps.db, service, 'scale');
  await quotaForReplicas(deps.db, service, count);
  const updated = await deps.db.service.update({ where: { id: service.id }, data: { replicas: count } });
  return queueDeployment(deps, actor, updated, { kind: DeploymentKind.SCALE, image: current.image, replicas: count, config: current.config as unknown as DeploymentConfig, reason: `scale to ${count}`, buildId: current.buildId });
}

/** Zero replicas; configuration, data and history are kept. */
export async function stopService(deps: DeployDeps, actor: Actor, serviceId: string) {
  const service = await getService(deps, actor, serviceId);
  assertNotDeleting(service);
  const current = await requireCurrent(deps.db, service, 'stop');
  return queueDeployment(deps, actor, service, { kind: DeploymentKind.STOP, image: current.image, replicas: 0, config: current.config as unknown as DeploymentConfig, reason: 'stop', buildId: current.buildId });
}

export async function startService(deps: DeployDeps, actor: Actor, serviceId: string) {
  const service = await getService(deps, actor, serviceId);
  assertNotDeleting(service);
  const current = await requireCurrent(deps.db, service, 'start');
  await quotaForReplicas(deps.db, service, service.replicas);
  return queueDeployment(deps, actor, service, { kind: DeploymentKind.START, image: current.image, replicas: service.replicas, config: current.config as unknown as DeploymentConfig, reason: 'start', buildId: current.buildId });
}

/** Rolls back to the given earlier healthy deployment, or by default to the one before the current. */
export async function rollbackService(deps: DeployDeps, actor: Actor, serviceId: string, toDeploymentId?: string | null) {
  const service = await getService(deps, actor, serviceId);
  assertNotDeleting(service);
  const target = toDeploymentId
    ? await deps.db.deployment.findFirst({ where: { id: toDeploymentId, serviceId: service.id } })
    : await deps.db.deployment.findFirst({
        where: { serviceId: service.id, status: { in: HEALTHY_STATUSES }, kind: { not: DeploymentKind.STOP }, ...(service.currentDeploymentId ? { id: { not: service.currentDeploymentId } } : {}) },
        orderBy: { createdAt: 'desc' },
      });
  if (!target) {
    if (toDeploymentId) throw new NotFoundError('Deployment', toDeploymentId);
    throw new ConflictError('There is no earlier healthy deployment to roll back to');
  }
  if (!HEALTHY_STATUSES.includes(target.status)) throw new ConflictError('Only a deployment that became healthy can be rolled back to');
  await quotaForReplicas(deps.db, service, service.replicas);
  return queueDeployment(deps, actor, service, {
    kind: DeploymentKind.ROLLBACK,
    image: target.image,
    replicas: service.replicas,
    config: target.config as unknown as DeploymentConfig,
    reason: `roll back to deployment ${target.id}`,
    buildId: target.buildId,
  });
}

/** Called after the service row is marked deleted: the controller removes what runs. */
export async function queueRemoval(deps: Pick<DeployDeps, 'queues'>, serviceId: string) {
  await deps.queues.deployments.add('remove', { kind: 'remove', serviceId }, { jobId: `remove-${serviceId}` });
}

// The API side of deploys: every lifecycle mutation records a Deployment and queues a job for the
// controller, answering at once; progress arrives by subscription.
import type { Queue } from 'bullmq';
import type { Db } from '../../platform/db/client.js';
import type { Deployment, Prisma, Service } from '../../generated/prisma/client.js';
import { DeploymentKind, DeploymentStatus, ServiceStatus, SourceType } from '../../generated/prisma/enums.js';
import type { ConvoyBus } from '../../events.js';
import type { Config } from '../../config.js';
import type { Logger } from '../../platform/logging/logger.js';
import { withinRedisDeadline } from '../../platform/redis/connection.js';
import { imageReference, replicas as replicasSchema } from '../../shared/validation.js';
import { parseInput } from '../common/parse.js';
import { ConflictError, NotFoundError, ValidationError } from '../common/errors.js';
import { recordAudit } from '../audit/audit.js';
import type { Actor } from '../auth/caller.js';
import { assertWithinQuota, getService } from '../services/service.js';
import { assertImageUsable } from '../services/image-ownership.js';
import type { DeploymentConfig, DeploymentSource } from './spec.js';
import type { HealthCheckSpec, PortSpec } from '../services/validation.js';

export type DeployJob = { kind: 'deploy'; deploymentId: string } | { kind: 'remove'; serviceId: string };
export type DeployDeps = { db: Db; bus: ConvoyBus; config: Config; queues: { deployments: Queue<DeployJob> }; log?: Pick<Logger, 'warn'> };

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

/**
 * The service's configuration is what the next deploy (or redeploy, or build) applies; a deployment
 * keeps a snapshot of what it ran. Nothing else reads the service's configuration into Swarm.
 */
export function snapshotConfig(service: Service): DeploymentConfig {
  return {
    source: sourceOf(service),
    name: service.name,
    hostname: service.hostname,
    env: (service.env ?? {}) as Record<string, string>,
    ports: (service.ports ?? []) as PortSpec[],
    healthCheck: (service.healthCheck ?? null) as HealthCheckSpec | null,
    cpuLimit: service.cpuLimit,
    memoryLimitMb: service.memoryLimitMb,
    cpuReservation: service.cpuReservation,
    memoryReservationMb: service.memoryReservationMb,
  };
}

type ServiceSourceColumns = Pick<Service, 'sourceType' | 'image' | 'templateId' | 'nixExpression' | 'gitUrl' | 'gitBranch'>;

function sourceOf(service: ServiceSourceColumns): DeploymentSource {
  return { type: service.sourceType, image: service.image, templateId: service.templateId, nixExpression: service.nixExpression, gitUrl: service.gitUrl, gitBranch: service.gitBranch };
}

/** The configuration columns of a service that a deploy applies. */
export type ServiceConfiguration = ServiceSourceColumns &
  Pick<Service, 'env' | 'ports' | 'healthCheck' | 'cpuLimit' | 'memoryLimitMb' | 'cpuReservation' | 'memoryReservationMb' | 'replicas'>;

/** The Service fields (GraphQL names) whose value a deploy would change. */
export type PendingField = 'source' | 'env' | 'ports' | 'healthCheck' | 'resources' | 'replicas';

/** JSON with object keys sorted: jsonb does not keep the order the values were written in. */
function canonical(value: unknown): string {
  return JSON.stringify(value ?? null, (_key, v) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b))) : v));
}

/**
 * What differs between the service's configuration and what its current deployment runs: empty when
 * they match, null when nothing has been deployed. A built source counts as changed when the
 * repository, branch, expression or template changed (a new commit on the same branch does not).
 */
export function pendingChanges(service: ServiceConfiguration, running: Pick<Deployment, 'image' | 'replicas' | 'config'> | null): PendingField[] | null {
  if (!running) return null;
  const ran = running.config as unknown as DeploymentConfig;
  const fields: PendingField[] = [];
  const sourceChanged =
    service.sourceType === SourceType.IMAGE ? service.image !== running.image : ran.source !== undefined && canonical({ ...ran.source, image: null }) !== canonical({ ...sourceOf(service), image: null });
  if (sourceChanged) fields.push('source');
  if (canonical(service.env ?? {}) !== canonical(ran.env ?? {})) fields.push('env');
  if (canonical(service.ports ?? []) !== canonical(ran.ports ?? [])) fields.push('ports');
  if (canonical(service.healthCheck) !== canonical(ran.healthCheck)) fields.push('healthCheck');
  const resources = (c: Pick<ServiceConfiguration, 'cpuLimit' | 'memoryLimitMb' | 'cpuReservation' | 'memoryReservationMb'>) => canonical([c.cpuLimit ?? null, c.memoryLimitMb ?? null, c.cpuReservation ?? null, c.memoryReservationMb ?? null]);
  if (resources(service) !== resources(ran)) fields.push('resources');
  if (service.replicas !== running.replicas) fields.push('replicas');
  return fields;
}

/** The convoy.deployment-id label its tasks carry: its own id unless it kept an earlier deployment's tasks. */
export function taskLabelOf(deployment: Pick<Deployment, 'id' | 'taskLabel'>): string {
  return deployment.taskLabel ?? deployment.id;
}

export function deployJobId(deploymentId: string) {
  return `deploy-${deploymentId}`;
}

export async function enqueueDeployment(deps: Pick<DeployDeps, 'queues'>, deploymentId: string) {
  // The job id is the deployment's: queueing it twice (a retry, a resumed controller) is a no-op.
  await deps.queues.deployments.add('deploy', { kind: 'deploy', deploymentId }, { jobId: deployJobId(deploymentId) });
}

type NewDeployment = {
  kind: DeploymentKind;
  image: string;
  replicas: number;
  config: DeploymentConfig;
  reason: string;
  buildId?: string | null;
  /**
   * A change of the replica count only (scale, stop, start): it keeps this deployment's task template,
   * label included, so Swarm leaves the running tasks alone. Its image and config must be this one's.
   */
  keepsTasksOf?: Deployment;
};

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
        taskLabel: next.keepsTasksOf ? taskLabelOf(next.keepsTasksOf) : null,
        previousDeploymentId: service.currentDeploymentId,
        triggeredById: actor?.userId ?? null,
        events: { create: { status: DeploymentStatus.QUEUED, message: next.reason } },
      },
    });
    if (actor) await recordAudit(tx, actor, `service.${next.kind.toLowerCase()}`, 'Service', service.id, { deploymentId: created.id, image: next.image, replicas: next.replicas });
    return created;
  });
  await deps.bus.publish('deployment', deployment.id, { deploymentId: deployment.id, serviceId: service.id, organizationId: service.organizationId, status: deployment.status, message: next.reason, at: new Date().toISOString() });
  await enqueueAccepted(deps, deployment.id);
  return deployment;
}

// How long a deploy mutation waits for Redis to take its job before answering anyway.
const ENQUEUE_WAIT_MS = 1000;

/**
 * The deployment is accepted once its row is stored (QUEUED in PostgreSQL): a Redis that is down does
 * not fail or stall the mutation. The job is queued when Redis answers (ioredis keeps the command), and
 * the reconciler queues any QUEUED deployment that has no job, so it runs either way.
 */
async function enqueueAccepted(deps: DeployDeps, deploymentId: string) {
  try {
    await withinRedisDeadline(enqueueDeployment(deps, deploymentId), ENQUEUE_WAIT_MS, 'enqueue deployment');
  } catch (error) {
    deps.log?.warn({ err: error, deploymentId }, 'deployment accepted but not queued yet: the reconciler will queue it');
  }
}

async function currentDeployment(db: Db, service: Service): Promise<Deployment | null> {
  return service.currentDeploymentId ? db.deployment.findUnique({ where: { id: service.currentDeploymentId } }) : null;
}

/**
 * The image to deploy: the one given or the service's own. An image in Convoy's namespace must be one
 * this organization built (its build is returned); another organization's is refused as not found.
 */
async function imageFor(deps: Pick<DeployDeps, 'db' | 'config'>, service: Service, given: string | null | undefined): Promise<{ image: string; buildId: string | null }> {
  const image = given ? parseInput(imageReference, given) : service.sourceType === SourceType.IMAGE ? service.image : null;
  if (!image) throw ValidationError.single(['image'], 'this service builds from source: give an image or run a build');
  const built = await assertImageUsable(deps, service.organizationId, image);
  return { image, buildId: built?.buildId ?? null };
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
  const { image: chosen, buildId } = await imageFor(deps, service, image);
  await quotaForReplicas(deps.db, service, service.replicas);
  // A deploy of a new image makes it the service's image from now on.
  const updated = image && service.sourceType === SourceType.IMAGE ? await deps.db.service.update({ where: { id: service.id }, data: { image: chosen } }) : service;
  return queueDeployment(deps, actor, updated, { kind: DeploymentKind.DEPLOY, image: chosen, replicas: updated.replicas, config: snapshotConfig(updated), reason: `deploy ${chosen}`, buildId });
}

/** Re-applies the current configuration with the current image; new tasks, no build. */
export async function redeployService(deps: DeployDeps, actor: Actor, serviceId: string) {
  const service = await getService(deps, actor, serviceId);
  assertNotDeleting(service);
  const current = await currentDeployment(deps.db, service);
  const { image, buildId } = current ? { image: current.image, buildId: current.buildId } : await imageFor(deps, service, null);
  await quotaForReplicas(deps.db, service, service.replicas);
  return queueDeployment(deps, actor, service, { kind: DeploymentKind.REDEPLOY, image, replicas: service.replicas, config: snapshotConfig(service), reason: 'redeploy with the current configuration', buildId });
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
  return queueDeployment(deps, actor, updated, { kind: DeploymentKind.SCALE, image: current.image, replicas: count, config: current.config as unknown as DeploymentConfig, reason: `scale to ${count}`, buildId: current.buildId, keepsTasksOf: current });
}

/** Zero replicas; configuration, data and history are kept. */
export async function stopService(deps: DeployDeps, actor: Actor, serviceId: string) {
  const service = await getService(deps, actor, serviceId);
  assertNotDeleting(service);
  const current = await requireCurrent(deps.db, service, 'stop');
  return queueDeployment(deps, actor, service, { kind: DeploymentKind.STOP, image: current.image, replicas: 0, config: current.config as unknown as DeploymentConfig, reason: 'stop', buildId: current.buildId, keepsTasksOf: current });
}

export async function startService(deps: DeployDeps, actor: Actor, serviceId: string) {
  const service = await getService(deps, actor, serviceId);
  assertNotDeleting(service);
  const current = await requireCurrent(deps.db, service, 'start');
  await quotaForReplicas(deps.db, service, service.replicas);
  return queueDeployment(deps, actor, service, { kind: DeploymentKind.START, image: current.image, replicas: service.replicas, config: current.config as unknown as DeploymentConfig, reason: 'start', buildId: current.buildId, keepsTasksOf: current });
}

/**
 * Rolls back to the given earlier healthy deployment, or by default to the one before the current: new
 * tasks with that deployment's image and configuration. The service's own configuration stays as it is
 * (it is what the next deploy applies), so pendingChanges then names what differs from what runs.
 */
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
  // Deployments recorded before images were owned may name another organization's image.
  await assertImageUsable(deps, service.organizationId, target.image);
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

// The controller side of deploys: applies a deployment to Swarm and decides its outcome from what
// Swarm reports about the new spec's tasks, never from an API call returning.
import type { Db } from '../../platform/db/client.js';
import type { Deployment, Service } from '../../generated/prisma/client.js';
import { DeploymentKind, DeploymentStatus, ServiceStatus } from '../../generated/prisma/enums.js';
import type { ConvoyBus } from '../../events.js';
import type { Config } from '../../config.js';
import type { Logger } from '../../platform/logging/logger.js';
import { OrchestratorError, type Orchestrator, type RolloutResult, type ServiceInfo, type SwarmServiceSpec } from '../../platform/orchestrator/index.js';
import { nodesToAvoid } from '../workers/failover.js';
import { routedDomains, transitionServiceStatus } from '../services/service.js';
import { FINISHED_STATUSES, taskLabelOf } from './service.js';
import { pullAuthFor } from './registry-credentials.js';
import { organizationNetworkName, swarmServiceName, toSwarmSpec, type DeploymentConfig } from './spec.js';

export type RunnerDeps = { db: Db; bus: ConvoyBus; config: Config; orchestrator: Orchestrator; log: Logger };

/**
 * Writes a status once: a finished deployment stays finished (a late mark from a job that lost its lock
 * never turns a SUPERSEDED deployment back into RUNNING). Returns whether it was written.
 */
async function recordDeploymentStatus(deps: RunnerDeps, deployment: Deployment, organizationId: string, status: DeploymentStatus, message: string, extra: { startedAt?: Date; deadlineAt?: Date; reason?: string } = {}): Promise<boolean> {
  const finished = FINISHED_STATUSES.includes(status);
  const reason = extra.reason ?? (status === DeploymentStatus.FAILED ? message : undefined);
  // The stored event's id goes out with the live one, so a client can resume after it (deploymentEvents afterEventId).
  let eventId: string | undefined;
  const written = await deps.db.$transaction(async (tx) => {
    const { count } = await tx.deployment.updateMany({
      where: { id: deployment.id, status: { notIn: FINISHED_STATUSES } },
      data: { status, ...(finished ? { finishedAt: new Date() } : {}), ...(reason ? { reason: reason.slice(0, 2000) } : {}), startedAt: extra.startedAt, deadlineAt: extra.deadlineAt },
    });
    if (count > 0) eventId = (await tx.deploymentEvent.create({ data: { deploymentId: deployment.id, status, message: message.slice(0, 2000) }, select: { id: true } })).id;
    return count > 0;
  });
  if (written) await deps.bus.publish('deployment', deployment.id, { deploymentId: deployment.id, serviceId: deployment.serviceId, organizationId, status, message, at: new Date().toISOString(), eventId });
  return written;
}

/**
 * Of the deployments of a service, the one created last wins: an older one (a job retried, stalled and
 * taken over, or released late) never applies its spec or becomes current. Returns the newer one, if any.
 */
async function newerDeploymentThan(db: Pick<Db, 'deployment'>, deployment: Deployment): Promise<{ id: string } | null> {
  const newest = await db.deployment.findFirst({ where: { serviceId: deployment.serviceId }, orderBy: [{ createdAt: 'desc' }, { id: 'desc' }], select: { id: true } });
  return newest && newest.id !== deployment.id ? newest : null;
}

type Fenced<T> = { newer: { id: string } } | { newer: null; value: T };

/**
 * Runs `act` only while the deployment is its service's newest, holding a PostgreSQL lock per service
 * meanwhile: the check and the change it guards (a Swarm update, the current deployment) are one step
 * for every controller, even when the Redis lock that normally serialises them was lost or expired.
 */
async function whileNewest<T>(deps: RunnerDeps, deployment: Deployment, act: (tx: Parameters<Parameters<Db['$transaction']>[0]>[0]) => Promise<T>): Promise<Fenced<T>> {
  return deps.db.$transaction(
    async (tx) => {
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`convoy:deploy:${deployment.serviceId}`}::text))`;
      const newer = await newerDeploymentThan(tx, deployment);
      if (newer) return { newer };
      return { newer: null, value: await act(tx) };
    },
    { maxWait: 15_000, timeout: 60_000 },
  );
}

/** Ends a deployment that lost to a newer one: nothing of it reaches Swarm or the current deployment. */
async function recordSuperseded(deps: RunnerDeps, deployment: Deployment, organizationId: string, newer: { id: string }) {
  const reason = `a newer deployment ${newer.id} was queued`;
  await recordDeploymentStatus(deps, deployment, organizationId, DeploymentStatus.SUPERSEDED, reason, { reason });
}

function activeServiceStatus(kind: DeploymentKind): ServiceStatus {
  return kind === DeploymentKind.ROLLBACK ? ServiceStatus.ROLLING_BACK : ServiceStatus.DEPLOYING;
}

/** The deployment as a Swarm spec, kept off the nodes of failed workers (see nodesToAvoid). */
export async function specFor(deps: RunnerDeps, service: Service, deployment: Deployment): Promise<SwarmServiceSpec> {
  const spec = toSwarmSpec(
    {
      serviceId: service.id,
      organizationId: service.organizationId,
      deploymentId: taskLabelOf(deployment),
      image: deployment.image,
      replicas: deployment.replicas,
      config: deployment.config as unknown as DeploymentConfig,
      builtByConvoy: deployment.buildId !== null,
      verifiedDomains: await routedDomains(deps.db, service.id),
    },
    deps.config.deploy,
  );
  return { ...spec, excludedNodes: await nodesToAvoid(deps, service.id) };
}

/**
 * Whether Swarm already has this deployment's spec: its task template (by label) and its replica count.
 * A scale keeps the label of the deployment it scales, so the label alone does not tell.
 */
function isApplied(swarm: ServiceInfo, deployment: Deployment): boolean {
  return swarm.deploymentLabel === taskLabelOf(deployment) && swarm.replicas === deployment.replicas;
}

/** Waits until Swarm runs the deployment's replica count of healthy tasks of its task template. */
function waitForDeployment(deps: RunnerDeps, swarmServiceId: string, deployment: Deployment, deadline: Date, signal?: AbortSignal) {
  return deps.orchestrator.waitForRollout(swarmServiceId, { deploymentId: taskLabelOf(deployment), desiredReplicas: deployment.replicas, deadline, signal, failedTaskLimit: 3 });
}

/** Idempotent: a finished deployment is left alone; an interrupted one resumes where Swarm is. */
export async function runDeployment(deps: RunnerDeps, deploymentId: string, signal?: AbortSignal): Promise<void> {
  const deployment = await deps.db.deployment.findUnique({ where: { id: deploymentId }, include: { service: true } });
  if (!deployment || FINISHED_STATUSES.includes(deployment.status)) return;
  const { service } = deployment;
  if (service.deletedAt) {
    await recordDeploymentStatus(deps, deployment, service.organizationId, DeploymentStatus.CANCELLED, 'the service was deleted');
    return;
  }

  const newer = await newerDeploymentThan(deps.db, deployment);
  if (newer) return recordSuperseded(deps, deployment, service.organizationId, newer);

  const deadline = deployment.deadlineAt ?? new Date(Date.now() + deps.config.deploy.timeoutSeconds * 1000);
  if (deployment.status === DeploymentStatus.QUEUED) {
    await recordDeploymentStatus(deps, deployment, service.organizationId, DeploymentStatus.DEPLOYING, `applying ${deployment.image} with ${deployment.replicas} replica(s)`, { startedAt: new Date(), deadlineAt: deadline });
  }
  // The status change is bookkeeping: it runs alongside the Swarm calls rather than before them.
  const statusChange = deployment.kind !== DeploymentKind.STOP ? transitionServiceStatus(deps, service.id, activeServiceStatus(deployment.kind), `${deployment.kind.toLowerCase()} ${deployment.id} started`) : Promise.resolve(null);

  const spec = await specFor(deps, service, deployment);
  try {
    await applySpec(deps, service, deployment, spec, deadline, signal, statusChange);
  } catch (error) {
    await statusChange.catch(() => null);
    // Swarm refused the spec: retrying cannot help. Nothing changed in Swarm, so what ran keeps running.
    if (error instanceof OrchestratorError && error.code === 'INVALID') return failWithoutChange(deps, deployment.id, `Swarm refused the service: ${error.message}`);
    throw error;
  }
}

async function applySpec(deps: RunnerDeps, service: Service, deployment: Deployment, spec: SwarmServiceSpec, deadline: Date, signal: AbortSignal | undefined, statusChange: Promise<unknown>) {
  await deps.orchestrator.ensureNetwork(organizationNetworkName(service.organizationId), { 'convoy.organization-id': service.organizationId, 'convoy.managed': 'true' });
  // The deploying organization's own registry login, if it stored one: never anyone else's.
  const registryAuth = await pullAuthFor(deps, service.organizationId, deployment.image);
  const applied = await whileNewest(deps, deployment, async () => {
    const existing = await deps.orchestrator.findServiceByName(spec.name);
    if (!existing) return (await deps.orchestrator.createService(spec, { registryAuth })).id;
    // Already applied by an earlier attempt of this job (the controller crashed while watching): just watch.
    if (!isApplied(existing, deployment)) {
      const forceRestart = deployment.kind === DeploymentKind.RESTART || deployment.kind === DeploymentKind.REDEPLOY;
      await deps.orchestrator.updateService(existing.id, spec, { forceRestart, registryAuth });
    }
    return existing.id;
  });
  if (applied.newer) {
    await statusChange.catch(() => null);
    return recordSuperseded(deps, deployment, service.organizationId, applied.newer);
  }
  const swarmServiceId = applied.value;
  await deps.db.deployment.update({ where: { id: deployment.id }, data: { swarmServiceId } });

  const [result] = await Promise.all([
    waitForDeployment(deps, swarmServiceId, deployment, deadline, signal),
    statusChange,
  ]);
  if (signal?.aborted) return; // shutting down: the job is retried and resumes watching
  if (result.outcome === 'healthy') await markHealthy(deps, service, deployment);
  else await handleFailure(deps, service, deployment, swarmServiceId, result);
}

// The deployment's final status is always written last: a client that sees a deployment finished
// also sees the service status it left behind.

async function markHealthy(deps: RunnerDeps, service: Service, deployment: Deployment) {
  if (deployment.kind === DeploymentKind.STOP) {
    const newer = await newerDeploymentThan(deps.db, deployment);
    if (newer) return recordSuperseded(deps, deployment, service.organizationId, newer);
    await transitionServiceStatus(deps, service.id, ServiceStatus.STOPPED, `stopped by deployment ${deployment.id}`);
    await recordDeploymentStatus(deps, deployment, service.organizationId, DeploymentStatus.COMPLETED, 'every task stopped');
    return;
  }
  const madeCurrent = await whileNewest(deps, deployment, async (tx) => {
    const fresh = await tx.service.findUniqueOrThrow({ where: { id: service.id } });
    if (fresh.currentDeploymentId && fresh.currentDeploymentId !== deployment.id) {
      // DEPLOYING too: a current deployment whose own RUNNING mark has not been written yet.
      await tx.deployment.updateMany({ where: { id: fresh.currentDeploymentId, status: { in: [DeploymentStatus.RUNNING, DeploymentStatus.DEPLOYING] } }, data: { status: DeploymentStatus.SUPERSEDED } });
    }
    await tx.service.update({ where: { id: service.id }, data: { currentDeploymentId: deployment.id } });
  });
  if (madeCurrent.newer) return recordSuperseded(deps, deployment, service.organizationId, madeCurrent.newer);
  const target = deployment.replicas === 0 ? ServiceStatus.STOPPED : ServiceStatus.RUNNING;
  await transitionServiceStatus(deps, service.id, target, `deployment ${deployment.id} is healthy`);
  await recordDeploymentStatus(deps, deployment, service.organizationId, DeploymentStatus.RUNNING, `${deployment.replicas} of ${deployment.replicas} task(s) running and healthy`);
}

/**
 * Why a rollout did not become healthy, said once: the messages around it already say "failed", so a plain
 * failure is Swarm's reason itself ("3 tasks failed; last: ..."), not "failed: 3 tasks failed".
 */
export function rolloutFailureReason(result: RolloutResult): string {
  if (result.outcome === 'timeout') return `not healthy before the deadline: ${result.reason}`;
  if (result.outcome === 'rolled_back') return `rolled back: ${result.reason}`;
  return result.reason;
}

/**
 * Swarm rolls back by itself when an update fails its health gate. When it could not (a fresh
 * service, a deadline), Convoy puts the previous healthy deployment's spec back itself.
 */
async function handleFailure(deps: RunnerDeps, service: Service, deployment: Deployment, swarmServiceId: string, result: RolloutResult) {
  const reason = rolloutFailureReason(result);
  const fail = () => recordDeploymentStatus(deps, deployment, service.organizationId, DeploymentStatus.FAILED, reason);
  // A newer deployment was queued meanwhile: it decides what runs, so nothing is restored here.
  const newer = await newerDeploymentThan(deps.db, deployment);
  if (newer) return recordDeploymentStatus(deps, deployment, service.organizationId, DeploymentStatus.FAILED, `${reason}; not restoring: a newer deployment ${newer.id} was queued`);
  const fresh = await deps.db.service.findUniqueOrThrow({ where: { id: service.id } });
  const previous = fresh.currentDeploymentId ? await deps.db.deployment.findUnique({ where: { id: fresh.currentDeploymentId } }) : null;

  if (!previous) {
    // Nothing healthy to return to: stop the crash loop, keep the Swarm service for its logs.
    await specFor(deps, service, deployment)
      .then((spec) => whileNewest(deps, deployment, () => deps.orchestrator.updateService(swarmServiceId, { ...spec, replicas: 0 })))
      .catch((error) => deps.log.warn({ err: error }, 'could not scale a failed first deployment to zero'));
    await transitionServiceStatus(deps, service.id, ServiceStatus.FAILED, `deployment ${deployment.id} failed: ${reason}`);
    return fail();
  }
  if (result.outcome !== 'rolled_back') {
    await transitionServiceStatus(deps, service.id, ServiceStatus.ROLLING_BACK, `restoring deployment ${previous.id}`);
    const previousSpec = await specFor(deps, service, previous);
    const registryAuth = await pullAuthFor(deps, service.organizationId, previous.image);
    const restoring = await whileNewest(deps, deployment, async () => {
      const info = await deps.orchestrator.inspectService(swarmServiceId);
      if (!isApplied(info, previous)) await deps.orchestrator.updateService(swarmServiceId, previousSpec, { registryAuth });
    });
    if (restoring.newer) return recordDeploymentStatus(deps, deployment, service.organizationId, DeploymentStatus.FAILED, `${reason}; not restoring: a newer deployment ${restoring.newer.id} was queued`);
    const restored = await waitForDeployment(deps, swarmServiceId, previous, new Date(Date.now() + deps.config.deploy.timeoutSeconds * 1000));
    if (restored.outcome !== 'healthy') {
      await transitionServiceStatus(deps, service.id, ServiceStatus.FAILED, `deployment ${deployment.id} failed and restoring ${previous.id} failed too: ${restored.reason}`);
      return fail();
    }
  }
  const status = previous.kind === DeploymentKind.STOP || previous.replicas === 0 ? ServiceStatus.STOPPED : ServiceStatus.RUNNING;
  await transitionServiceStatus(deps, service.id, status, `deployment ${deployment.id} failed (${reason}); still on deployment ${previous.id}`);
  return fail();
}

/**
 * Ends a deployment that never changed what runs (refused, or out of retries): FAILED, and the
 * service back to the status its current deployment gives it.
 */
export async function failWithoutChange(deps: RunnerDeps, deploymentId: string, reason: string): Promise<void> {
  const deployment = await deps.db.deployment.findUnique({ where: { id: deploymentId }, include: { service: true } });
  if (!deployment || FINISHED_STATUSES.includes(deployment.status)) return;
  const { service } = deployment;
  const current = service.currentDeploymentId ? await deps.db.deployment.findUnique({ where: { id: service.currentDeploymentId } }) : null;
  const status = !current ? ServiceStatus.FAILED : current.replicas === 0 ? ServiceStatus.STOPPED : ServiceStatus.RUNNING;
  // The service's status is the newest deployment's to set.
  if (!(await newerDeploymentThan(deps.db, deployment))) await transitionServiceStatus(deps, service.id, status, `deployment ${deployment.id} failed: ${reason}`);
  await recordDeploymentStatus(deps, deployment, service.organizationId, DeploymentStatus.FAILED, reason);
}

/** Removes the Swarm service of a deleted Convoy service, and its organization's network once unused. */
export async function removeServiceRuntime(deps: RunnerDeps, serviceId: string): Promise<void> {
  const existing = await deps.orchestrator.findServiceByName(swarmServiceName(serviceId));
  if (existing) await deps.orchestrator.removeService(existing.id);
  const service = await deps.db.service.findUnique({ where: { id: serviceId } });
  if (!service) return;
  await deps.db.deployment.updateMany({ where: { serviceId, status: { in: [DeploymentStatus.QUEUED, DeploymentStatus.DEPLOYING] } }, data: { status: DeploymentStatus.CANCELLED, finishedAt: new Date() } });
  const others = await deps.orchestrator.findServicesByLabel('convoy.organization-id', service.organizationId);
  if (others.filter((s) => s.id !== existing?.id).length === 0) {
    // Swarm may take a moment to detach the removed tasks; the reconciler retries later if still in use.
    await deps.orchestrator.removeNetwork(organizationNetworkName(service.organizationId)).catch(() => false);
  }
}

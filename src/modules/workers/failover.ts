// What Convoy does about the services of a worker that failed (left ONLINE for UNHEALTHY or OFFLINE),
// per the owning organization's migration policy:
// - AUTOMATIC: makes sure the service gets back to its replica count on healthy workers, and records
//   where each task went (a ServiceMigration, MIGRATED or FAILED), telling the owners.
// - MANUAL: tells the owners that action is needed and waits for `migrateService`.
// - NONE: records that it left the service alone.
// Swarm itself reschedules the tasks of a node it marks Down, whatever the policy: the policy governs
// what Convoy does on top. Under every policy the service is DEGRADED while fewer than its replicas run
// on healthy workers, and RUNNING again once they do.
//
// Forcing a move: when the node's engine is alive (only the agent died, or the control plane lost the
// node) Swarm keeps its tasks there. Convoy then adds a `node.id!=<node>` placement constraint to the
// service. Swarm treats a placement-only change specially: it replaces just the tasks on nodes that no
// longer satisfy the constraints, one at a time per the service's update policy (start-first where it
// can), and leaves the others running. Convoy lifts the constraint once the worker is back ONLINE (or
// removed). A forced restart of the whole service, or draining the node, would disturb healthy tasks or
// other organizations' services.
//
// Deploys: whatever the policy, a deploy (or a rollback to an earlier one) places no task on the node of
// a failed worker while another node can take it (`nodesToAvoid`): the policy governs what happens to
// tasks already running there, and a fresh spec would otherwise hand that node new ones.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Queue } from 'bullmq';
import type { Db } from '../../platform/db/client.js';
import type { Redis } from '../../platform/redis/connection.js';
import type { Logger } from '../../platform/logging/logger.js';
import type { Config } from '../../config.js';
import type { ConvoyBus } from '../../events.js';
import type { Prisma, Service, ServiceMigration, Worker } from '../../generated/prisma/client.js';
import { MigrationPolicy, Role, ServiceMigrationStatus, ServiceStatus, WorkerStatus } from '../../generated/prisma/enums.js';
import {
  EXCLUDED_NODES_LABEL,
  excludedNodesOf,
  OrchestratorError,
  type NodeInfo,
  type NodeTaskInfo,
  type Orchestrator,
  type ServiceInfo,
  type TaskInfo,
  type TaskState,
} from '../../platform/orchestrator/index.js';
import { tryLock } from '../../platform/redis/lock.js';
import { recordAudit } from '../audit/audit.js';
import { hasRole, type Actor } from '../auth/caller.js';
import { ConflictError, ForbiddenError } from '../common/errors.js';
import { getService, publishServiceEvent, transitionServiceStatus } from '../services/service.js';
import { SERVICE_ID_LABEL, swarmServiceName } from '../deployments/spec.js';
import { snapshotOf } from './notify.js';

export type FailoverJob = { kind: 'worker-failed'; workerId: string } | { kind: 'migrate'; migrationId: string; waitForSwarm: boolean };

export type FailoverDeps = {
  db: Db;
  bus: ConvoyBus;
  redis: Redis;
  config: Config;
  orchestrator: Orchestrator;
  log: Logger;
  queues: { failover: Queue<FailoverJob> };
};

/** One entry of ServiceMigration.moves: a task that ran on the failed worker, and where its replica runs now. */
export type MigrationMove = {
  taskId: string;
  slot: number;
  fromNodeId: string | null;
  toNodeId: string | null;
  toWorkerId: string | null;
  toHostname: string | null;
};

export const MIGRATION_NOTIFICATIONS = {
  migrated: 'SERVICE_MIGRATED',
  failed: 'SERVICE_MIGRATION_FAILED',
  actionNeeded: 'SERVICE_MIGRATION_NEEDED',
} as const;

const FAILED_WORKER_STATUSES: WorkerStatus[] = [WorkerStatus.UNHEALTHY, WorkerStatus.OFFLINE];
// A task in one of these states holds (or is about to hold) a container on its node.
const ACTIVE_TASK_STATES = new Set<TaskState>(['new', 'allocated', 'pending', 'assigned', 'accepted', 'preparing', 'ready', 'starting', 'running']);
const POLL_MS = 500;
// Held while changing a service's placement, so a deploy never interleaves with it (the deploy
// controller takes the same lock for a whole rollout).
const LOCK_MS = 10_000;

export function movesOf(migration: Pick<ServiceMigration, 'moves'>): MigrationMove[] {
  return Array.isArray(migration.moves) ? (migration.moves as unknown as MigrationMove[]) : [];
}

// ---------------------------------------------------------------- jobs

export async function queueWorkerFailures(deps: Pick<FailoverDeps, 'queues'>, workerIds: string[]): Promise<void> {
  if (workerIds.length === 0) return;
  await deps.queues.failover.addBulk(workerIds.map((workerId) => ({ name: 'worker-failed', data: { kind: 'worker-failed' as const, workerId } })));
}

async function queueMigration(deps: Pick<FailoverDeps, 'queues'>, migrationId: string, waitForSwarm: boolean): Promise<void> {
  // The job id is the migration's: queueing it twice (a retried failover job) runs it once.
  await deps.queues.failover.add('migrate', { kind: 'migrate', migrationId, waitForSwarm }, { jobId: `migrate-${migrationId}` });
}

export async function runFailoverJob(deps: FailoverDeps, job: FailoverJob, signal?: AbortSignal): Promise<void> {
  if (job.kind === 'worker-failed') await handleWorkerFailure(deps, job.workerId);
  else await runMigration(deps, job.migrationId, { waitForSwarm: job.waitForSwarm, signal });
}

// ---------------------------------------------------------------- a worker failed

/**
 * Opens a ServiceMigration for every live service with tasks on the worker, per its organization's
 * policy. Idempotent per failure: a service that already has one for this worker since the worker's
 * last heartbeat is not opened twice (a retried job only re-queues the unfinished moves).
 */
export async function handleWorkerFailure(deps: FailoverDeps, workerId: string): Promise<ServiceMigration[]> {
  const worker = await deps.db.worker.findUnique({ where: { id: workerId } });
  if (!worker || worker.removedAt || !FAILED_WORKER_STATUSES.includes(worker.status)) return [];
  const failedSince = worker.lastHeartbeatAt ?? worker.createdAt;
  const tasksByService = await activeTasksOf(deps, worker);
  if (tasksByService.size === 0) return [];
  const services = await deps.db.service.findMany({
    where: { id: { in: [...tasksByService.keys()] }, deletedAt: null },
    include: { organization: { select: { migrationPolicy: true } } },
    orderBy: { id: 'asc' },
  });
  const opened: ServiceMigration[] = [];
  for (const service of services) {
    const existing = await deps.db.serviceMigration.findFirst({ where: { serviceId: service.id, workerId: worker.id, createdAt: { gte: failedSince } }, orderBy: { createdAt: 'desc' } });
    if (existing) {
      if (existing.status === ServiceMigrationStatus.MIGRATING) await queueMigration(deps, existing.id, true);
      continue;
    }
    const migration = await openMigration(deps, worker, service, service.organization.migrationPolicy, tasksByService.get(service.id) ?? []);
    if (migration) opened.push(migration);
  }
  return opened;
}

/** The worker's active tasks by Convoy service id; without a Swarm node, the services its last heartbeat reported (tasks unknown). */
async function activeTasksOf(deps: FailoverDeps, worker: Worker): Promise<Map<string, NodeTaskInfo[]>> {
  const byService = new Map<string, NodeTaskInfo[]>();
  let tasks: NodeTaskInfo[] | null = null;
  if (worker.swarmNodeId) {
    try {
      tasks = await deps.orchestrator.listNodeTasks(worker.swarmNodeId);
    } catch (error) {
      // The node left the swarm: fall back to what the worker last said it ran.
      if (!(error instanceof OrchestratorError && error.code === 'NOT_FOUND')) throw error;
    }
  }
  if (tasks) {
    for (const task of tasks) {
      const serviceId = task.containerLabels[SERVICE_ID_LABEL];
      if (!serviceId || !ACTIVE_TASK_STATES.has(task.state)) continue;
      byService.set(serviceId, [...(byService.get(serviceId) ?? []), task]);
    }
    return byService;
  }
  for (const serviceId of snapshotOf(worker.lastMetrics)?.serviceIds ?? []) byService.set(serviceId, []);
  return byService;
}

type PolicyOutcome = { status: ServiceMigrationStatus; message: string };

function outcomeFor(policy: MigrationPolicy, worker: Worker, taskCount: number): PolicyOutcome {
  const tasks = `${taskCount} task${taskCount === 1 ? '' : 's'}`;
  switch (policy) {
    case MigrationPolicy.AUTOMATIC:
      if (!worker.swarmNodeId) return { status: ServiceMigrationStatus.FAILED, message: `worker ${worker.hostname} has no Swarm node id: Convoy cannot tell which tasks ran there` };
      return { status: ServiceMigrationStatus.MIGRATING, message: `worker ${worker.hostname} is ${worker.status}: making sure its ${tasks} run on healthy workers` };
    case MigrationPolicy.MANUAL:
      return { status: ServiceMigrationStatus.WAITING_FOR_OWNER, message: `worker ${worker.hostname} is ${worker.status}: run migrateService to move its ${tasks} to healthy workers` };
    default:
      return { status: ServiceMigrationStatus.LEFT_ALONE, message: `worker ${worker.hostname} is ${worker.status}: the migration policy is NONE, Convoy leaves its ${tasks} alone` };
  }
}

async function openMigration(deps: FailoverDeps, worker: Worker, service: Service, policy: MigrationPolicy, tasks: NodeTaskInfo[]): Promise<ServiceMigration | null> {
  const swarm = await deps.orchestrator.findServiceByName(swarmServiceName(service.id));
  // Nothing runs (never deployed, stopped, removed): nothing to move.
  if (!swarm || swarm.replicas === 0) return null;
  const { status, message } = outcomeFor(policy, worker, tasks.length);
  const moves: MigrationMove[] = tasks.map((t) => ({ taskId: t.id, slot: t.slot, fromNodeId: t.nodeId, toNodeId: null, toWorkerId: null, toHostname: null }));
  const finished = status !== ServiceMigrationStatus.MIGRATING && status !== ServiceMigrationStatus.WAITING_FOR_OWNER;
  const migration = await deps.db.$transaction(async (tx) => {
    const created = await tx.serviceMigration.create({
      data: { serviceId: service.id, workerId: worker.id, policy, status, fromNodeId: worker.swarmNodeId, moves: moves as unknown as Prisma.InputJsonValue, message, finishedAt: finished ? new Date() : null },
    });
    // Convoy acted on its own: an audit entry without an actor, in the organization's log.
    await recordAudit(tx, { organizationId: service.organizationId }, 'service.failover', 'Service', service.id, { migrationId: created.id, workerId: worker.id, policy, status });
    return created;
  });
  await markDegradedIfShort(deps, service.id, swarm, new Set([...(worker.swarmNodeId ? [worker.swarmNodeId] : []), ...(await unavailableNodeIds(deps))]), `worker ${worker.hostname} is ${worker.status}`);
  await publishMigrationEvent(deps, service.id, migration);
  if (status === ServiceMigrationStatus.WAITING_FOR_OWNER) {
    await notifyOwners(deps.db, service, migration, MIGRATION_NOTIFICATIONS.actionNeeded, `Action needed: ${service.name} ran on failed worker ${worker.hostname}`, message);
  }
  if (status === ServiceMigrationStatus.FAILED) {
    await notifyOwners(deps.db, service, migration, MIGRATION_NOTIFICATIONS.failed, `${service.name} could not be moved off failed worker ${worker.hostname}`, message);
  }
  if (status === ServiceMigrationStatus.MIGRATING) await queueMigration(deps, migration.id, true);
  return migration;
}

// ---------------------------------------------------------------- moving a service

export type RunMigrationOptions = { waitForSwarm: boolean; signal?: AbortSignal };

/**
 * The AUTOMATIC action on one MIGRATING migration: waits (bounded) for Swarm to run the service's
 * replicas on healthy workers, moves the tasks off the failed nodes itself when Swarm keeps them there,
 * and records where each went. Idempotent: a finished migration is left alone.
 */
export async function runMigration(deps: FailoverDeps, migrationId: string, options: RunMigrationOptions): Promise<ServiceMigration | null> {
  const migration = await deps.db.serviceMigration.findUnique({ where: { id: migrationId }, include: { service: true, worker: { select: { hostname: true } } } });
  if (!migration || migration.status !== ServiceMigrationStatus.MIGRATING) return migration;
  const { service } = migration;
  const where = migration.worker ? `worker ${migration.worker.hostname}` : 'the failed workers';
  if (service.deletedAt) return finishMigration(deps, migration, service, ServiceMigrationStatus.FAILED, 'the service was deleted', movesOf(migration));
  const swarm = await deps.orchestrator.findServiceByName(swarmServiceName(service.id));
  if (!swarm) return finishMigration(deps, migration, service, ServiceMigrationStatus.FAILED, 'the service no longer runs in Swarm', movesOf(migration));

  const fromNodes = [...new Set([migration.fromNodeId, ...movesOf(migration).map((m) => m.fromNodeId)].filter((id): id is string => !!id))];
  const started = Date.now();
  const forceAt = started + (options.waitForSwarm ? deps.config.workers.failoverWaitSeconds * 1000 : 0);
  const deadline = started + deps.config.workers.failoverTimeoutSeconds * 1000;
  let degraded = false;
  for (;;) {
    options.signal?.throwIfAborted();
    const [info, cluster] = await Promise.all([deps.orchestrator.inspectService(swarm.id), clusterView(deps)]);
    const avoided = new Set([...fromNodes, ...cluster.unavailable]);
    const state = await replicaState(deps, info, avoided);
    if (state.healthy.length >= info.replicas) {
      const moves = await destinations(deps, movesOf(migration), state.healthy);
      const summary = describeMoves(moves);
      return finishMigration(deps, migration, service, ServiceMigrationStatus.MIGRATED, `${info.replicas} of ${info.replicas} replicas run on healthy workers${summary ? `: ${summary}` : ''}`, moves);
    }
    if (!degraded) {
      await markDegradedIfShort(deps, service.id, info, avoided, `${where} failed`);
      degraded = true;
    }
    // Swarm still wants tasks on a failed node (it thinks the node is fine): move them ourselves, if
    // there is anywhere to go (excluding the only node would stop the service).
    const stuck = state.stuck.filter((t) => fromNodes.includes(t.nodeId!));
    const excluded = excludedNodesOf(info);
    const somewhereElse = hasReadyNodeOutside(cluster.nodes, avoided);
    if (Date.now() >= forceAt && stuck.length > 0 && somewhereElse && !fromNodes.every((id) => excluded.includes(id))) {
      const moved = await withServiceLock(deps, service.id, () => deps.orchestrator.setExcludedNodes(swarm.id, [...new Set([...excluded, ...fromNodes])]));
      if (moved) {
        deps.log.info({ serviceId: service.id, migrationId, nodes: fromNodes }, 'moving tasks off failed workers');
        await deps.db.serviceMigration.update({ where: { id: migration.id }, data: { message: `moving ${stuck.length} task(s) off ${where}` } });
      }
    }
    if (Date.now() >= deadline) {
      const pending = state.pending.map((t) => t.message || t.error).find(Boolean);
      const why = !somewhereElse ? ' (no healthy worker to move them to)' : pending ? ` (Swarm: ${pending})` : '';
      const reason = `only ${state.healthy.length} of ${info.replicas} replicas run on healthy workers after ${deps.config.workers.failoverTimeoutSeconds} s${why}`;
      return finishMigration(deps, migration, service, ServiceMigrationStatus.FAILED, reason, await destinations(deps, movesOf(migration), state.healthy));
    }
    await sleep(POLL_MS, undefined, { signal: options.signal });
  }
}

async function finishMigration(deps: FailoverDeps, migration: ServiceMigration, service: Service, status: ServiceMigrationStatus, message: string, moves: MigrationMove[]): Promise<ServiceMigration> {
  const [finished] = await deps.db.serviceMigration.updateManyAndReturn({
    where: { id: migration.id, status: ServiceMigrationStatus.MIGRATING },
    data: { status, message: message.slice(0, 2000), moves: moves as unknown as Prisma.InputJsonValue, finishedAt: new Date() },
  });
  // Finished concurrently (another attempt of the job): report that one.
  if (!finished) return deps.db.serviceMigration.findUniqueOrThrow({ where: { id: migration.id } });
  if (status === ServiceMigrationStatus.MIGRATED) {
    await transitionServiceStatus(deps, service.id, ServiceStatus.RUNNING, `every replica runs on a healthy worker again (migration ${migration.id})`, [ServiceStatus.DEGRADED]);
    await notifyOwners(deps.db, service, finished, MIGRATION_NOTIFICATIONS.migrated, `${service.name} was moved to healthy workers`, message);
  } else if (!service.deletedAt) {
    await notifyOwners(deps.db, service, finished, MIGRATION_NOTIFICATIONS.failed, `${service.name} could not be moved to healthy workers`, message);
  }
  await publishMigrationEvent(deps, service.id, finished);
  return finished;
}

// ---------------------------------------------------------------- on demand

/**
 * Does the AUTOMATIC action now (owners and admins): for the migration waiting for an owner, or for
 * any tasks of the service on failed workers. Answers at once with the MIGRATING migration; the
 * controller moves the tasks and the migration ends MIGRATED or FAILED.
 */
export async function migrateService(deps: FailoverDeps, actor: Actor, serviceId: string): Promise<ServiceMigration> {
  if (!hasRole(actor, Role.ADMIN)) throw new ForbiddenError('Only owners and admins can migrate a service');
  const service = await getService(deps, actor, serviceId);
  const inProgress = () => deps.db.serviceMigration.findFirst({ where: { serviceId: service.id, status: ServiceMigrationStatus.MIGRATING }, orderBy: { createdAt: 'desc' } });
  const running = await inProgress();
  if (running) return running;

  let migration: ServiceMigration | undefined;
  const waiting = await deps.db.serviceMigration.findFirst({ where: { serviceId: service.id, status: ServiceMigrationStatus.WAITING_FOR_OWNER }, orderBy: { createdAt: 'desc' } });
  if (waiting) {
    [migration] = await deps.db.serviceMigration.updateManyAndReturn({
      where: { id: waiting.id, status: ServiceMigrationStatus.WAITING_FOR_OWNER },
      data: { status: ServiceMigrationStatus.MIGRATING, message: 'moving the tasks to healthy workers, as an owner asked' },
    });
    // Another request claimed it a moment ago: that one is moving the tasks.
    if (!migration) {
      const claimed = await inProgress();
      if (claimed) return claimed;
    }
  }
  migration ??= await openOnDemand(deps, service);
  await recordAudit(deps.db, actor, 'service.migrate', 'Service', service.id, { migrationId: migration.id, fromNodeId: migration.fromNodeId });
  await publishMigrationEvent(deps, service.id, migration);
  await queueMigration(deps, migration.id, false);
  return migration;
}

async function openOnDemand(deps: FailoverDeps, service: Service): Promise<ServiceMigration> {
  const swarm = await deps.orchestrator.findServiceByName(swarmServiceName(service.id));
  if (!swarm || swarm.replicas === 0) throw new ConflictError('The service runs no tasks: there is nothing to migrate');
  const unavailable = await unavailableNodeIds(deps);
  const stranded = (await deps.orchestrator.listTasks(swarm.id)).filter((t) => t.desiredState === 'running' && t.nodeId && unavailable.has(t.nodeId));
  if (stranded.length === 0) throw new ConflictError('Every task of the service runs on a healthy worker: there is nothing to migrate');
  const nodes = [...new Set(stranded.map((t) => t.nodeId!))];
  const workers = await deps.db.worker.findMany({ where: { swarmNodeId: { in: nodes }, removedAt: null }, select: { id: true, swarmNodeId: true } });
  const org = await deps.db.organization.findUniqueOrThrow({ where: { id: service.organizationId }, select: { migrationPolicy: true } });
  const moves: MigrationMove[] = stranded.map((t) => ({ taskId: t.id, slot: t.slot, fromNodeId: t.nodeId, toNodeId: null, toWorkerId: null, toHostname: null }));
  return deps.db.serviceMigration.create({
    data: {
      serviceId: service.id,
      workerId: nodes.length === 1 ? (workers[0]?.id ?? null) : null,
      policy: org.migrationPolicy,
      status: ServiceMigrationStatus.MIGRATING,
      fromNodeId: nodes.length === 1 ? nodes[0] : null,
      moves: moves as unknown as Prisma.InputJsonValue,
      message: 'moving the tasks to healthy workers, as an owner asked',
    },
  });
}

// ---------------------------------------------------------------- the sweep's upkeep

/**
 * Lifts Convoy's placement exclusions for nodes whose worker is healthy again (or gone), unless a
 * migration is still moving tasks off them. Costs one Swarm call when no service has exclusions.
 */
export async function releaseNodeExclusions(deps: FailoverDeps): Promise<string[]> {
  const services = await deps.orchestrator.findServicesByLabel(EXCLUDED_NODES_LABEL);
  if (services.length === 0) return [];
  const stillFailed = await failedWorkerNodes(deps.db);
  // Only services of this installation (another one may share the swarm).
  const ids = services.map((s) => s.labels[SERVICE_ID_LABEL]).filter((id): id is string => !!id);
  const known = new Set((await deps.db.service.findMany({ where: { id: { in: ids } }, select: { id: true } })).map((s) => s.id));
  const released: string[] = [];
  for (const swarm of services) {
    const serviceId = swarm.labels[SERVICE_ID_LABEL];
    if (!serviceId || !known.has(serviceId)) continue;
    const inUse = await nodesMigratedOff(deps.db, serviceId);
    const excluded = excludedNodesOf(swarm);
    const keep = excluded.filter((id) => stillFailed.has(id) || inUse.has(id));
    if (keep.length === excluded.length) continue;
    const done = await withServiceLock(deps, serviceId, () => deps.orchestrator.setExcludedNodes(swarm.id, keep));
    if (done) released.push(swarm.id);
  }
  return released;
}

/**
 * The nodes a deploy of the service keeps its tasks off: those of failed workers, and those a migration
 * of the service is still moving tasks off (as releaseNodeExclusions keeps them, which lifts these too).
 * None when that would leave no ready node to run on, since Swarm would then run nothing at all.
 */
export async function nodesToAvoid(deps: Pick<FailoverDeps, 'db' | 'orchestrator'>, serviceId: string): Promise<string[]> {
  const [failed, migrating] = await Promise.all([failedWorkerNodes(deps.db), nodesMigratedOff(deps.db, serviceId)]);
  const avoid = new Set([...failed, ...migrating]);
  // The usual case: no Swarm call.
  if (avoid.size === 0) return [];
  const nodes = await deps.orchestrator.listNodes();
  if (!hasReadyNodeOutside(nodes, avoid)) return [];
  return nodes.filter((n) => avoid.has(n.id)).map((n) => n.id).sort();
}

/** DEGRADED services (no migration running) whose replicas all run on healthy workers again become RUNNING. */
export async function refreshDegradedServices(deps: FailoverDeps): Promise<string[]> {
  const degraded = await deps.db.service.findMany({
    where: { status: ServiceStatus.DEGRADED, deletedAt: null, migrations: { none: { status: ServiceMigrationStatus.MIGRATING } } },
    select: { id: true },
  });
  if (degraded.length === 0) return [];
  const unavailable = await unavailableNodeIds(deps);
  const recovered: string[] = [];
  for (const { id } of degraded) {
    const swarm = await deps.orchestrator.findServiceByName(swarmServiceName(id));
    if (!swarm) continue;
    const state = await replicaState(deps, swarm, unavailable);
    if (state.healthy.length < swarm.replicas) continue;
    const moved = await transitionServiceStatus(deps, id, ServiceStatus.RUNNING, 'every replica runs on a healthy worker again', [ServiceStatus.DEGRADED]);
    if (moved) recovered.push(id);
  }
  return recovered;
}

// ---------------------------------------------------------------- helpers

/** The swarm's nodes, and the unavailable ones: not Ready, or the node of a worker Convoy considers failed. */
async function clusterView(deps: Pick<FailoverDeps, 'db' | 'orchestrator'>): Promise<{ nodes: NodeInfo[]; unavailable: Set<string> }> {
  const [nodes, failed] = await Promise.all([deps.orchestrator.listNodes(), failedWorkerNodes(deps.db)]);
  return { nodes, unavailable: new Set([...nodes.filter((n) => n.state !== 'ready').map((n) => n.id), ...failed]) };
}

/** Whether a node that takes new tasks is left once these are avoided. */
function hasReadyNodeOutside(nodes: NodeInfo[], avoided: Set<string>): boolean {
  return nodes.some((n) => n.state === 'ready' && n.availability === 'active' && !avoided.has(n.id));
}

/** The Swarm nodes of workers Convoy considers failed. */
async function failedWorkerNodes(db: Db): Promise<Set<string>> {
  const failed = await db.worker.findMany({ where: { removedAt: null, status: { in: FAILED_WORKER_STATUSES }, swarmNodeId: { not: null } }, select: { swarmNodeId: true } });
  return new Set(failed.map((w) => w.swarmNodeId!));
}

/** The nodes the service's running migrations are moving tasks off. */
async function nodesMigratedOff(db: Db, serviceId: string): Promise<Set<string>> {
  const migrating = await db.serviceMigration.findMany({ where: { serviceId, status: ServiceMigrationStatus.MIGRATING }, select: { fromNodeId: true, moves: true } });
  return new Set(migrating.flatMap((m) => [m.fromNodeId, ...movesOf(m).map((move) => move.fromNodeId)]).filter((id): id is string => id !== null));
}

async function unavailableNodeIds(deps: Pick<FailoverDeps, 'db' | 'orchestrator'>): Promise<Set<string>> {
  return (await clusterView(deps)).unavailable;
}

type ReplicaState = {
  /** Running (healthy, with a health check) on nodes that are not avoided. */
  healthy: TaskInfo[];
  /** Meant to run on avoided nodes. */
  stuck: TaskInfo[];
  /** Meant to run, placed nowhere yet. */
  pending: TaskInfo[];
};

async function replicaState(deps: Pick<FailoverDeps, 'orchestrator'>, service: ServiceInfo, avoided: Set<string>): Promise<ReplicaState> {
  const meant = (await deps.orchestrator.listTasks(service.id)).filter((t) => t.desiredState === 'running');
  return {
    healthy: meant.filter((t) => t.state === 'running' && t.nodeId !== null && !avoided.has(t.nodeId)),
    stuck: meant.filter((t) => t.nodeId !== null && avoided.has(t.nodeId)),
    pending: meant.filter((t) => t.nodeId === null),
  };
}

async function markDegradedIfShort(deps: FailoverDeps, serviceId: string, swarm: ServiceInfo, avoided: Set<string>, cause: string): Promise<void> {
  const state = await replicaState(deps, swarm, avoided);
  if (state.healthy.length >= swarm.replicas) return;
  await transitionServiceStatus(deps, serviceId, ServiceStatus.DEGRADED, `${cause}: ${state.healthy.length} of ${swarm.replicas} replicas run on healthy workers`, [ServiceStatus.RUNNING]);
}

/** Where each moved replica runs now: the healthy task of the same slot, and its worker. */
async function destinations(deps: Pick<FailoverDeps, 'db' | 'orchestrator'>, moves: MigrationMove[], healthy: TaskInfo[]): Promise<MigrationMove[]> {
  if (moves.length === 0) return moves;
  const nodeIds = [...new Set(healthy.map((t) => t.nodeId!))];
  const [workers, nodes] = await Promise.all([
    deps.db.worker.findMany({ where: { swarmNodeId: { in: nodeIds }, removedAt: null }, select: { id: true, hostname: true, swarmNodeId: true } }),
    deps.orchestrator.listNodes(),
  ]);
  return moves.map((move) => {
    const task = healthy.find((t) => t.slot === move.slot);
    if (!task) return move;
    const worker = workers.find((w) => w.swarmNodeId === task.nodeId);
    const hostname = worker?.hostname ?? nodes.find((n) => n.id === task.nodeId)?.hostname ?? null;
    return { ...move, toNodeId: task.nodeId, toWorkerId: worker?.id ?? null, toHostname: hostname };
  });
}

function describeMoves(moves: MigrationMove[]): string {
  return moves
    .filter((m) => m.toNodeId)
    .map((m) => `replica ${m.slot} to ${m.toHostname ?? m.toNodeId}`)
    .join(', ');
}

async function withServiceLock(deps: Pick<FailoverDeps, 'redis' | 'config' | 'log'>, serviceId: string, change: () => Promise<void>): Promise<boolean> {
  const lock = await tryLock(deps.redis, `${deps.config.redisPrefix}:lock:service:${serviceId}`, LOCK_MS);
  // A deploy holds it: the deploy applies a fresh spec; try again on the next round.
  if (!lock) return false;
  try {
    await change();
    return true;
  } finally {
    await lock.release();
  }
}

async function publishMigrationEvent(deps: Pick<FailoverDeps, 'db' | 'bus'>, serviceId: string, migration: ServiceMigration): Promise<void> {
  const service = await deps.db.service.findUnique({ where: { id: serviceId } });
  if (service) await publishServiceEvent(deps.bus, 'MIGRATION', service, null, `migration ${migration.id} ${migration.status}: ${migration.message}`);
}

/** Only the organization's owners: platform admins hear about the worker itself. */
async function notifyOwners(db: Db, service: Service, migration: ServiceMigration, kind: string, title: string, body: string): Promise<void> {
  const owners = await db.membership.findMany({ where: { organizationId: service.organizationId, role: Role.OWNER }, select: { userId: true } });
  if (owners.length === 0) return;
  const data = { serviceId: service.id, serviceName: service.name, migrationId: migration.id, workerId: migration.workerId, status: migration.status, moves: movesOf(migration) };
  await db.notification.createMany({
    data: owners.map(({ userId }) => ({ userId, organizationId: service.organizationId, kind, title, body: body.slice(0, 2000), data: data as unknown as Prisma.InputJsonValue })),
  });
}

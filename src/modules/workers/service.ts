// Worker nodes: join tokens, registration, drain and removal. Workers are cluster-wide: platform admins
// manage them, and a worker acts only as itself (its credential names it).
import type { Db } from '../../platform/db/client.js';
import type { Redis } from '../../platform/redis/connection.js';
import type { Logger } from '../../platform/logging/logger.js';
import type { Prisma, Worker, WorkerJoinToken } from '../../generated/prisma/client.js';
import { WorkerStatus } from '../../generated/prisma/enums.js';
import type { Config } from '../../config.js';
import type { ConvoyBus } from '../../events.js';
import { OrchestratorError, type Orchestrator } from '../../platform/orchestrator/index.js';
import { generateToken, hashToken } from '../../platform/crypto/tokens.js';
import { parseInput } from '../common/parse.js';
import { ConflictError, NotFoundError, ValidationError } from '../common/errors.js';
import { recordAudit } from '../audit/audit.js';
import { WORKER_TOKEN_PREFIX } from '../auth/service.js';
import type { Actor } from '../auth/caller.js';
import { getService } from '../services/service.js';
import { SERVICE_ID_LABEL } from '../deployments/spec.js';
import type { PlatformAdmin } from '../auth/platform-admins.js';
import { InvalidJoinTokenError } from './errors.js';
import { announceStatusChanges, publishWorkerEvent, snapshotOf } from './notify.js';
import { readServiceMetrics, readWorkerMetrics, type ServiceMetricsPoint, type WorkerMetricsPoint } from './metrics.js';
import { createJoinTokenInput, JOIN_TOKEN, JOIN_TOKEN_PREFIX, registerWorkerInput, reportSwarmNodeInput, WORKER_LIMITS } from './validation.js';

export type WorkerDeps = { db: Db; bus: ConvoyBus; redis: Redis; config: Config; orchestrator: Orchestrator; log: Logger };

export type SwarmJoinData = { joinToken: string; managerAddress: string };

// Formats checked before join data reaches a client or a shell script.
const SWARM_JOIN_TOKEN = /^SWMTKN-1-[A-Za-z0-9]{1,100}-[A-Za-z0-9]{1,100}$/;
const MANAGER_ADDRESS = /^(\[[0-9a-fA-F:.]{2,45}\]|[A-Za-z0-9.-]{1,253}):[0-9]{1,5}$/;
const LOOPBACK = /^(127\.|\[::1\]|localhost:)/;

function labelsOf(value: Prisma.JsonValue): Record<string, string> {
  return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, string>) : {};
}

// ---------------------------------------------------------------- join tokens

/** `admin` null: Convoy itself asks (the development process registering its embedded agent). */
export async function createJoinToken(deps: Pick<WorkerDeps, 'db'>, admin: PlatformAdmin | null, input: unknown): Promise<{ joinToken: WorkerJoinToken; token: string }> {
  const { ttlSeconds, labels } = parseInput(createJoinTokenInput, input);
  const token = generateToken(JOIN_TOKEN_PREFIX);
  const joinToken = await deps.db.$transaction(async (tx) => {
    const created = await tx.workerJoinToken.create({
      data: { tokenHash: hashToken(token), labels, expiresAt: new Date(Date.now() + ttlSeconds * 1000), createdById: admin?.userId ?? null },
    });
    await recordAudit(tx, admin ?? {}, 'worker_join_token.create', 'WorkerJoinToken', created.id, { ttlSeconds, labels });
    return created;
  });
  return { joinToken, token };
}

export async function revokeJoinToken(deps: Pick<WorkerDeps, 'db'>, admin: PlatformAdmin, id: string): Promise<WorkerJoinToken> {
  const current = id.length <= 64 ? await deps.db.workerJoinToken.findUnique({ where: { id } }) : null;
  if (!current) throw new NotFoundError('WorkerJoinToken', id.slice(0, 64));
  if (current.revokedAt) return current;
  const revoked = await deps.db.workerJoinToken.update({ where: { id }, data: { revokedAt: new Date() } });
  await recordAudit(deps.db, admin, 'worker_join_token.revoke', 'WorkerJoinToken', id);
  return revoked;
}

export function joinTokenListWhere(active: boolean | null | undefined): Prisma.WorkerJoinTokenWhereInput {
  if (active == null) return {};
  const live: Prisma.WorkerJoinTokenWhereInput = { usedAt: null, revokedAt: null, expiresAt: { gt: new Date() } };
  return active ? live : { NOT: live };
}

/** A token that can still register a worker, or null; the token's format is checked first. */
export async function findLiveJoinToken(db: Db, token: string): Promise<WorkerJoinToken | null> {
  if (!JOIN_TOKEN.test(token)) return null;
  return db.workerJoinToken.findFirst({ where: { tokenHash: hashToken(token), usedAt: null, revokedAt: null, expiresAt: { gt: new Date() } } });
}

// ---------------------------------------------------------------- swarm

/** The swarm's worker join token and a manager address, checked; null when this engine is not a manager. */
export async function swarmJoinData(deps: Pick<WorkerDeps, 'orchestrator' | 'log'>): Promise<SwarmJoinData | null> {
  let info;
  try {
    info = await deps.orchestrator.swarmJoinInfo();
  } catch (error) {
    if (!(error instanceof OrchestratorError)) throw error;
    deps.log.warn({ err: error }, 'no swarm join data for workers');
    return null;
  }
  const addresses = info.managerAddresses.filter((a) => MANAGER_ADDRESS.test(a));
  // A loopback address only reaches a node on this very machine; prefer any other.
  const managerAddress = addresses.find((a) => !LOOPBACK.test(a)) ?? addresses[0];
  if (!managerAddress || !SWARM_JOIN_TOKEN.test(info.workerJoinToken)) {
    deps.log.warn({ addresses: info.managerAddresses }, 'the swarm reported join data in an unexpected format');
    return null;
  }
  return { joinToken: info.workerJoinToken, managerAddress };
}

// ---------------------------------------------------------------- registration

export type Registration = { worker: Worker; credential: string; swarm: SwarmJoinData | null };

function conflictField(error: unknown): string | null {
  if ((error as { code?: string }).code !== 'P2002') return null;
  return JSON.stringify((error as { meta?: unknown }).meta ?? {}).includes('swarmNodeId') ? 'swarmNodeId' : 'hostname';
}

/**
 * Spends the join token and creates the worker with its own credential, atomically: a token works
 * once, and a registration that fails (a hostname already in use) leaves the token usable.
 */
export async function registerWorker(deps: WorkerDeps, input: unknown, requestId?: string): Promise<Registration> {
  const joinToken = (input as { joinToken?: unknown } | null)?.joinToken;
  if (typeof joinToken !== 'string' || !JOIN_TOKEN.test(joinToken)) throw new InvalidJoinTokenError();
  const parsed = parseInput(registerWorkerInput, input);
  if (parsed.swarmNodeId) {
    const nodes = await deps.orchestrator.listNodes();
    if (!nodes.some((n) => n.id === parsed.swarmNodeId)) throw ValidationError.single(['swarmNodeId'], 'is not a node of this swarm');
  }
  // Before the token is spent: if the swarm cannot answer, the agent retries with the same token.
  const swarm = await swarmJoinData(deps);
  const credential = generateToken(WORKER_TOKEN_PREFIX);
  const now = new Date();
  let worker: Worker;
  try {
    worker = await deps.db.$transaction(async (tx) => {
      const [claimed] = await tx.workerJoinToken.updateManyAndReturn({
        where: { tokenHash: hashToken(joinToken), usedAt: null, revokedAt: null, expiresAt: { gt: now } },
        data: { usedAt: now },
        select: { id: true, labels: true },
      });
      if (!claimed) throw new InvalidJoinTokenError();
      const created = await tx.worker.create({
        data: {
          hostname: parsed.hostname,
          swarmNodeId: parsed.swarmNodeId ?? null,
          // The admin's labels (on the token) win over the ones the node reports.
          labels: { ...parsed.labels, ...labelsOf(claimed.labels) },
          cpuCores: parsed.cpuCores,
          memoryMb: parsed.memoryMb,
          diskGb: parsed.diskGb,
          agentVersion: parsed.agentVersion,
          status: WorkerStatus.ONLINE,
          lastHeartbeatAt: now,
          joinTokenId: claimed.id,
          credentials: { create: { tokenHash: hashToken(credential) } },
        },
      });
      await recordAudit(tx, { workerId: created.id, requestId }, 'worker.register', 'Worker', created.id, { hostname: created.hostname, swarmNodeId: created.swarmNodeId, joinTokenId: claimed.id });
      return created;
    });
  } catch (error) {
    const field = conflictField(error);
    if (field === 'hostname') throw new ConflictError(`A worker named ${parsed.hostname} is already registered`, 'hostname');
    if (field) throw new ConflictError(`Swarm node ${parsed.swarmNodeId} is already registered as another worker`, 'swarmNodeId');
    throw error;
  }
  await publishWorkerEvent(deps.bus, { kind: 'REGISTERED', workerId: worker.id, hostname: worker.hostname, status: worker.status, previousStatus: null, resources: [], reason: null, at: now.toISOString() });
  return { worker, credential, swarm };
}

/**
 * A node the agent joined to the swarm after registering (with the join data registerWorker hands out)
 * reports the Swarm node it became, so drain, remove and failover can act on it. Recorded when the worker
 * has no node yet or its recorded node has left the swarm (the engine joined again under a new id); the
 * node must be in this swarm and belong to no other live worker. Reporting the node it has is a no-op.
 */
export async function recordSwarmNode(deps: WorkerDeps, workerId: string, input: unknown, requestId?: string): Promise<Worker> {
  const { swarmNodeId } = parseInput(reportSwarmNodeInput, input);
  const worker = await getLiveWorker(deps.db, workerId);
  if (worker.swarmNodeId === swarmNodeId) return worker;
  const nodes = await deps.orchestrator.listNodes();
  if (!nodes.some((n) => n.id === swarmNodeId)) throw ValidationError.single(['swarmNodeId'], 'is not a node of this swarm');
  if (worker.swarmNodeId && nodes.some((n) => n.id === worker.swarmNodeId)) {
    throw new ConflictError(`This worker is Swarm node ${worker.swarmNodeId}, which is still in the swarm`, 'swarmNodeId');
  }
  let updated: Worker | undefined;
  try {
    // Only over the node this call saw: two reports racing cannot both replace it.
    [updated] = await deps.db.worker.updateManyAndReturn({ where: { id: worker.id, removedAt: null, swarmNodeId: worker.swarmNodeId }, data: { swarmNodeId } });
  } catch (error) {
    if (conflictField(error) === 'swarmNodeId') throw new ConflictError(`Swarm node ${swarmNodeId} is already registered as another worker`, 'swarmNodeId');
    throw error;
  }
  if (!updated) throw new ConflictError('The worker changed meanwhile; report the node again', 'swarmNodeId');
  await recordAudit(deps.db, { workerId, requestId }, 'worker.swarm_node', 'Worker', worker.id, { swarmNodeId, previousSwarmNodeId: worker.swarmNodeId });
  return updated;
}

// ---------------------------------------------------------------- administration

/** Workers that are not removed; a removed one behaves like a missing one. */
export async function getLiveWorker(db: Db, id: string): Promise<Worker> {
  const worker = id.length <= 64 ? await db.worker.findFirst({ where: { id, removedAt: null } }) : null;
  if (!worker) throw new NotFoundError('Worker', id.slice(0, 64));
  return worker;
}

export function workerListWhere(status: WorkerStatus | null | undefined): Prisma.WorkerWhereInput {
  return { removedAt: null, ...(status ? { status } : {}) };
}

const MAX_WORKER_ORGANIZATIONS = 100;

/**
 * Restricts the build jobs the worker is offered and may claim to these organizations' (empty: every
 * organization's). Unknown organization ids are refused, so a typo never silently starves a tenant.
 */
export async function setWorkerOrganizations(deps: Pick<WorkerDeps, 'db'>, admin: PlatformAdmin, id: string, organizationIds: string[]): Promise<Worker> {
  const worker = await getLiveWorker(deps.db, id);
  if (organizationIds.length > MAX_WORKER_ORGANIZATIONS) throw ValidationError.single(['organizationIds'], `at most ${MAX_WORKER_ORGANIZATIONS} organizations`);
  const wanted = [...new Set(organizationIds.map(String))];
  const tooLong = wanted.findIndex((orgId) => orgId.length > 64);
  if (tooLong >= 0) throw ValidationError.single(['organizationIds', String(tooLong)], 'is not an organization id');
  const found = new Set((await deps.db.organization.findMany({ where: { id: { in: wanted } }, select: { id: true } })).map((o) => o.id));
  const unknown = wanted.filter((orgId) => !found.has(orgId));
  if (unknown.length) throw new ValidationError(unknown.map((orgId) => ({ path: ['organizationIds', String(wanted.indexOf(orgId))], message: `organization ${orgId.slice(0, 64)} was not found` })));
  const updated = await deps.db.worker.update({ where: { id: worker.id }, data: { buildOrganizationIds: wanted } });
  await recordAudit(deps.db, admin, 'worker.set-organizations', 'Worker', worker.id, { hostname: worker.hostname, organizationIds: wanted });
  return updated;
}

/** Swarm stops scheduling on the node and moves its tasks elsewhere; the worker stays DRAINING. */
export async function drainWorker(deps: WorkerDeps, admin: PlatformAdmin, id: string): Promise<Worker> {
  const worker = await getLiveWorker(deps.db, id);
  if (worker.status === WorkerStatus.DRAINING) return worker;
  if (worker.swarmNodeId) {
    try {
      await deps.orchestrator.setNodeAvailability(worker.swarmNodeId, 'drain');
    } catch (error) {
      // A node that left the swarm runs nothing: there is nothing left to drain.
      if (!(error instanceof OrchestratorError && error.code === 'NOT_FOUND')) throw error;
      deps.log.warn({ workerId: worker.id, swarmNodeId: worker.swarmNodeId }, 'the worker\'s Swarm node is gone; marking it DRAINING anyway');
    }
  }
  const [drained] = await deps.db.worker.updateManyAndReturn({ where: { id: worker.id, removedAt: null, status: { not: WorkerStatus.DRAINING } }, data: { status: WorkerStatus.DRAINING } });
  // Drained or removed concurrently: report what is there now.
  if (!drained) return getLiveWorker(deps.db, id);
  await recordAudit(deps.db, admin, 'worker.drain', 'Worker', worker.id, { hostname: worker.hostname, swarmNodeId: worker.swarmNodeId });
  await announceStatusChanges(deps, [{ worker: drained, previousStatus: worker.status, reason: 'drained by an admin' }]);
  return drained;
}

/**
 * Revokes the worker's credentials and removes its Swarm node. A worker whose last heartbeat still
 * reported Convoy containers is refused unless forced: drain it first and wait for a heartbeat.
 */
export async function removeWorker(deps: WorkerDeps, admin: PlatformAdmin, id: string, force: boolean): Promise<Worker> {
  const worker = await getLiveWorker(deps.db, id);
  // What the agent last reported, or what Swarm still means to run there: a heartbeat can leave out
  // containers whose stats were slow, and an agent that died reports nothing.
  const containers = Math.max(snapshotOf(worker.lastMetrics)?.containerCount ?? 0, worker.swarmNodeId ? await convoyTasksOnNode(deps, worker.swarmNodeId) : 0);
  if (containers > 0 && !force) {
    throw new ConflictError(`${worker.hostname} still runs ${containers} Convoy container${containers === 1 ? '' : 's'}: drain it first, or remove it with force`);
  }
  if (worker.swarmNodeId) {
    try {
      await deps.orchestrator.removeNode(worker.swarmNodeId, { force });
    } catch (error) {
      if (error instanceof OrchestratorError && (error.code === 'INVALID' || error.code === 'CONFLICT')) {
        throw new ConflictError(`Swarm refuses to remove node ${worker.swarmNodeId} while it is up: run \`docker swarm leave\` on it, or remove it with force`);
      }
      throw error;
    }
  }
  const now = new Date();
  const removed = await deps.db.$transaction(async (tx) => {
    await tx.workerCredential.updateMany({ where: { workerId: worker.id, revokedAt: null }, data: { revokedAt: now } });
    const updated = await tx.worker.update({ where: { id: worker.id }, data: { removedAt: now } });
    await recordAudit(tx, admin, 'worker.remove', 'Worker', worker.id, { hostname: worker.hostname, swarmNodeId: worker.swarmNodeId, force, containers });
    return updated;
  });
  await publishWorkerEvent(deps.bus, { kind: 'REMOVED', workerId: removed.id, hostname: removed.hostname, status: removed.status, previousStatus: null, resources: [], reason: force ? 'removed by an admin (forced)' : 'removed by an admin', at: now.toISOString() });
  return removed;
}

/** Convoy tasks Swarm means to run on the node; none when the node left the swarm. */
async function convoyTasksOnNode(deps: Pick<WorkerDeps, 'orchestrator'>, nodeId: string): Promise<number> {
  try {
    const tasks = await deps.orchestrator.listNodeTasks(nodeId);
    return tasks.filter((t) => t.desiredState === 'running' && t.containerLabels[SERVICE_ID_LABEL]).length;
  } catch (error) {
    if (error instanceof OrchestratorError && error.code === 'NOT_FOUND') return 0;
    throw error;
  }
}

// ---------------------------------------------------------------- metrics

function metricsRange(from: Date, to: Date): void {
  if (!(from < to)) throw ValidationError.single(['to'], 'must be after from');
  if (to.getTime() - from.getTime() > WORKER_LIMITS.metricsRangeMinutes * 60_000) {
    throw ValidationError.single(['from'], `the range must be at most ${WORKER_LIMITS.metricsRangeMinutes / 60} hours`);
  }
}

function metricsStore(deps: Pick<WorkerDeps, 'redis' | 'config'>) {
  return { redis: deps.redis, prefix: deps.config.redisPrefix, ttlSeconds: deps.config.workers.metricsTtlSeconds };
}

export async function workerMetricsRange(deps: Pick<WorkerDeps, 'db' | 'redis' | 'config'>, workerId: string, from: Date, to: Date): Promise<WorkerMetricsPoint[]> {
  metricsRange(from, to);
  const exists = workerId.length <= 64 && (await deps.db.worker.count({ where: { id: workerId } })) > 0;
  if (!exists) throw new NotFoundError('Worker', workerId.slice(0, 64));
  return readWorkerMetrics(metricsStore(deps), workerId, from, to);
}

/** Another organization's service is indistinguishable from a missing one. */
export async function serviceMetricsRange(deps: Pick<WorkerDeps, 'db' | 'redis' | 'config'>, actor: Actor, serviceId: string, from: Date, to: Date): Promise<ServiceMetricsPoint[]> {
  metricsRange(from, to);
  const service = await getService(deps, actor, serviceId);
  return readServiceMetrics(metricsStore(deps), service.id, from, to);
}

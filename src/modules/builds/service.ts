// The API side of builds: record a Build, queue it, answer at once. Logs and status arrive by subscription.
import type { Queue } from 'bullmq';
import type { Db } from '../../platform/db/client.js';
import type { Build, Service } from '../../generated/prisma/client.js';
import { BuildStatus, SourceType } from '../../generated/prisma/enums.js';
import type { ConvoyBus } from '../../events.js';
import type { Config } from '../../config.js';
import type { Redis } from '../../platform/redis/connection.js';
import { ConflictError, NotFoundError, ValidationError } from '../common/errors.js';
import { parseInput } from '../common/parse.js';
import { recordAudit } from '../audit/audit.js';
import type { Actor } from '../auth/caller.js';
import { getService } from '../services/service.js';
import { gitRef } from '../services/validation.js';
import { ensureJobRunnable } from '../../platform/queue/queues.js';

export type BuildJob = { buildId: string };
export type BuildDeps = { db: Db; bus: ConvoyBus; config: Config; redis: Redis; queues: { builds: Queue<BuildJob> } };

export const FINISHED_BUILD_STATUSES: BuildStatus[] = [BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.CANCELLED];

export function buildJobId(buildId: string) {
  return `build-${buildId}`;
}

/** A Redis flag rather than a message: the build sees it even if it starts after the request. */
export function cancelFlagKey(config: Pick<Config, 'redisPrefix'>, buildId: string) {
  return `${config.redisPrefix}:build-cancel:${buildId}`;
}

export async function publishBuildStatus(deps: Pick<BuildDeps, 'bus'>, build: Pick<Build, 'id' | 'serviceId'>, organizationId: string, status: BuildStatus, message: string) {
  await deps.bus.publish('build', build.id, { buildId: build.id, serviceId: build.serviceId, organizationId, status, message, at: new Date().toISOString() });
}

/** Queues a build of the service's source; `ref` (branch or commit) only applies to Git sources. */
export async function buildService(deps: BuildDeps, actor: Actor, serviceId: string, ref?: string | null): Promise<Build> {
  const service = await getService(deps, actor, serviceId);
  if (service.sourceType === SourceType.IMAGE) throw ValidationError.single(['serviceId'], 'this service runs a ready image: deploy it instead of building it');
  if (ref != null && service.sourceType !== SourceType.GIT) throw ValidationError.single(['ref'], 'only Git sources take a branch or commit');
  const gitReference = service.sourceType === SourceType.GIT ? parseInput(gitRef, ref ?? service.gitBranch ?? 'main') : null;
  return queueBuild(deps, actor, service, gitReference, 'build');
}

/** A new build of the same source as the last one (same branch or commit), then a deploy. */
export async function rebuildService(deps: BuildDeps, actor: Actor, serviceId: string): Promise<Build> {
  const service = await getService(deps, actor, serviceId);
  if (service.sourceType === SourceType.IMAGE) throw ValidationError.single(['serviceId'], 'this service runs a ready image: redeploy it instead');
  const last = await deps.db.build.findFirst({ where: { serviceId: service.id }, orderBy: { createdAt: 'desc' } });
  const reference = service.sourceType === SourceType.GIT ? (last?.gitRef ?? service.gitBranch ?? 'main') : null;
  return queueBuild(deps, actor, service, reference, 'rebuild');
}

async function queueBuild(deps: BuildDeps, actor: Actor | null, service: Service, gitReference: string | null, action: string): Promise<Build> {
  const build = await deps.db.$transaction(async (tx) => {
    const created = await tx.build.create({ data: { serviceId: service.id, sourceType: service.sourceType, gitRef: gitReference, status: BuildStatus.QUEUED, triggeredById: actor?.userId ?? null } });
    if (actor) await recordAudit(tx, actor, `service.${action}`, 'Service', service.id, { buildId: created.id, ref: gitReference });
    return created;
  });
  await publishBuildStatus(deps, build, service.organizationId, BuildStatus.QUEUED, 'queued');
  await deps.queues.builds.add(BUILD_JOB.name, { buildId: build.id }, { ...BUILD_JOB.opts, jobId: buildJobId(build.id) });
  return build;
}

/** How a build's job is queued (once per build, by its id; admission decides when it runs). */
export const BUILD_JOB = { name: 'build', opts: { attempts: 1 } } as const;

/** Lets the build's job run now: promoted if it waits its turn, queued again if it was lost. */
export function ensureBuildJobRunnable(deps: Pick<BuildDeps, 'queues'>, buildId: string) {
  return ensureJobRunnable(deps.queues.builds, buildJobId(buildId), { name: BUILD_JOB.name, data: { buildId }, opts: BUILD_JOB.opts });
}

/** Stops a queued or running build. The running deployment is never touched. */
export async function cancelBuild(deps: BuildDeps, actor: Actor, buildId: string): Promise<Build> {
  const build = await deps.db.build.findFirst({ where: { id: String(buildId).slice(0, 64), service: { organizationId: actor.organizationId } }, include: { service: true } });
  if (!build) throw new NotFoundError('Build', String(buildId).slice(0, 64));
  if (FINISHED_BUILD_STATUSES.includes(build.status)) throw new ConflictError(`The build already ended ${build.status}`);
  await recordAudit(deps.db, actor, 'build.cancel', 'Build', build.id);
  await deps.redis.set(cancelFlagKey(deps.config, build.id), '1', 'EX', 3600);
  if (build.status === BuildStatus.QUEUED) {
    // Not started: take it off the queue and end it here (the worker also checks the flag when it starts).
    const job = await deps.queues.builds.getJob(buildJobId(build.id));
    await job?.remove().catch(() => {});
    const moved = await deps.db.build.updateMany({ where: { id: build.id, status: BuildStatus.QUEUED }, data: { status: BuildStatus.CANCELLED, finishedAt: new Date(), error: 'cancelled before it started' } });
    if (moved.count) {
      await publishBuildStatus(deps, build, build.service.organizationId, BuildStatus.CANCELLED, 'cancelled before it started');
      await deps.bus.publish('buildLog', build.id, { buildId: build.id, done: true, status: BuildStatus.CANCELLED });
    }
  }
  return deps.db.build.findUniqueOrThrow({ where: { id: build.id } });
}

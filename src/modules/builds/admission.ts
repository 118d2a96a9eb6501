// Admission of queued builds: the one place a build goes from QUEUED to RUNNING. The state it decides
// on lives in PostgreSQL (RUNNING builds per organization, recent starts), read and acted on under one
// advisory lock, so controllers that admit at the same time (or one that restarts) never let an
// organization past its limit. A crashed controller's RUNNING build keeps counting until the job that
// resumes it finishes it, which is what the organization's limit must see.
import type { Db } from '../../platform/db/client.js';
import type { Config } from '../../config.js';
import { BuildStatus } from '../../generated/prisma/enums.js';
import { buildsToStart, type BuildQueueState, type QueuedBuildRef } from './fairness.js';

export type AdmissionDeps = { db: Db; config: Config };

/** Organizations' starts older than this no longer count for whose turn it is. */
const RECENT_START_WINDOW_SECONDS = 3600;

export type Admission =
  | { admitted: true }
  /** `ahead`: the builds that should start before this one (their jobs must be able to run). */
  | { admitted: false; reason: 'ORGANIZATION_AT_LIMIT' | 'OTHERS_FIRST' | 'NOT_QUEUED'; ahead: string[] };

type Reader = Pick<Db, '$queryRaw'>;

/** What buildsToStart needs; only each organization's `slots` oldest queued builds can be picked. */
async function readQueueState(db: Reader, config: Config, slots: number): Promise<BuildQueueState> {
  const [queued, running, recent] = await Promise.all([
    db.$queryRaw<QueuedBuildRef[]>`
      SELECT id, "organizationId", "queuedAt" FROM (
        SELECT b.id, s."organizationId", b."queuedAt",
               row_number() OVER (PARTITION BY s."organizationId" ORDER BY b."queuedAt", b.id) AS position
        FROM "Build" b JOIN "Service" s ON s.id = b."serviceId"
        WHERE b.status = 'QUEUED'::"BuildStatus"
      ) heads WHERE position <= ${slots}`,
    db.$queryRaw<{ organizationId: string; running: number }[]>`
      SELECT s."organizationId", count(*)::int AS running
      FROM "Build" b JOIN "Service" s ON s.id = b."serviceId"
      WHERE b.status = 'RUNNING'::"BuildStatus" GROUP BY s."organizationId"`,
    db.$queryRaw<{ organizationId: string; lastStartedAt: Date }[]>`
      SELECT s."organizationId", max(b."startedAt") AS "lastStartedAt"
      FROM "Build" b JOIN "Service" s ON s.id = b."serviceId"
      WHERE b."startedAt" > now() - make_interval(secs => ${RECENT_START_WINDOW_SECONDS}) GROUP BY s."organizationId"`,
  ]);
  return {
    queued,
    runningByOrganization: new Map(running.map((r) => [r.organizationId, r.running])),
    lastStartedAt: new Map(recent.map((r) => [r.organizationId, r.lastStartedAt])),
    perOrganizationLimit: config.build.concurrencyPerOrganization,
    slots,
  };
}

/**
 * Starts the queued build if it is among the `slots` builds that should start now (RUNNING, startedAt
 * set). Otherwise says why and who goes first; the caller puts the build back in the queue.
 */
export async function admitBuild(deps: AdmissionDeps, buildId: string, slots: number): Promise<Admission> {
  return deps.db.$transaction(async (tx) => {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext('convoy:build-admission'))`;
    const build = await tx.build.findUnique({ where: { id: buildId }, select: { status: true, service: { select: { organizationId: true } } } });
    if (build?.status !== BuildStatus.QUEUED) return { admitted: false, reason: 'NOT_QUEUED', ahead: [] };
    const state = await readQueueState(tx, deps.config, slots);
    const next = buildsToStart(state);
    if (next.some((b) => b.id === buildId)) {
      // A cancel does not take the lock: only a build still QUEUED starts.
      const moved = await tx.build.updateMany({ where: { id: buildId, status: BuildStatus.QUEUED }, data: { status: BuildStatus.RUNNING, startedAt: new Date() } });
      return moved.count ? { admitted: true } : { admitted: false, reason: 'NOT_QUEUED', ahead: [] };
    }
    const atLimit = (state.runningByOrganization.get(build.service.organizationId) ?? 0) >= state.perOrganizationLimit;
    return { admitted: false, reason: atLimit ? 'ORGANIZATION_AT_LIMIT' : 'OTHERS_FIRST', ahead: next.map((b) => b.id) };
  }, { maxWait: 10_000, timeout: 15_000 });
}

/** The builds that should start next (read only): whoever wakes them up acts on this. */
export async function nextBuilds(deps: AdmissionDeps, slots: number): Promise<string[]> {
  return buildsToStart(await readQueueState(deps.db, deps.config, slots)).map((b) => b.id);
}

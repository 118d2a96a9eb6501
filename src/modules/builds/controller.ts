// The BullMQ worker for builds. Builds run in child processes (nix-build) or wait for a worker agent,
// so a small concurrency keeps the node responsive; the API never builds.
//
// Fairness between organizations: every build's job goes through admission (admission.ts) before it
// runs. A build whose organization is at its limit (CONVOY_BUILD_CONCURRENCY_PER_ORG), or that another
// organization's build should precede, goes back to the queue delayed, which frees the slot at once;
// when a build ends, the builds whose turn it is are woken up. BullMQ alone is first come first
// served: one tenant's long or stuck builds would hold every slot.
import type { Job, Queue } from 'bullmq';
import { createWorker, deferActiveJob, QUEUES } from '../../platform/queue/queues.js';
import { BuildStatus } from '../../generated/prisma/enums.js';
import { appendBuildLog, runBuild, type BuildRunnerDeps } from './runner.js';
import { ensureBuildJobRunnable, FINISHED_BUILD_STATUSES, type BuildJob } from './service.js';
import { admitBuild, nextBuilds, type Admission } from './admission.js';

/** A build of an organization at its limit: woken up when one of its builds ends, so this is a safety net. */
const AT_LIMIT_RECHECK_MS = 10_000;
/** A build other organizations' builds go before: they start within moments, then it is its turn. */
const OTHERS_FIRST_RECHECK_MS = 1000;
const ADMISSION_FAILED_RECHECK_MS = 2000;
/** Also wakes the next builds when no build ended here (another process ended one, or lost a job). */
const WAKE_INTERVAL_MS = 10_000;

export type BuildQueueDeps = BuildRunnerDeps & { queues: { builds: Queue<BuildJob> } };

/** Lets the builds whose turn it is run now (promotes their delayed jobs, queues lost ones again). */
export async function wakeNextBuilds(deps: BuildQueueDeps): Promise<void> {
  for (const buildId of await nextBuilds(deps, deps.config.build.concurrency)) {
    await ensureBuildJobRunnable(deps, buildId).catch((error: unknown) => deps.log.warn({ err: error, buildId }, 'could not wake a queued build'));
  }
}

export async function startBuildController(deps: BuildQueueDeps) {
  const { config } = deps;
  // Builds this process admitted and is running (or waiting on an agent for).
  const runningHere = new Set<string>();

  const processBuild = async (job: Job<BuildJob>, token?: string) => {
    const { buildId } = job.data;
    const build = await deps.db.build.findUnique({ where: { id: buildId }, select: { status: true } });
    if (!build || FINISHED_BUILD_STATUSES.includes(build.status)) return;
    // RUNNING: admitted before, and its controller stopped or crashed; it keeps its place and resumes.
    if (build.status === BuildStatus.QUEUED) {
      const admission: Admission | null = await admitBuild(deps, buildId, Math.max(1, config.build.concurrency - runningHere.size)).catch((error: unknown) => {
        deps.log.warn({ err: error, buildId }, 'build admission failed; trying again shortly');
        return null;
      });
      if (!admission) return deferActiveJob(job, token, ADMISSION_FAILED_RECHECK_MS);
      if (!admission.admitted) {
        if (admission.reason === 'NOT_QUEUED') return;
        if (job.attemptsStarted <= 1) {
          const line = admission.reason === 'ORGANIZATION_AT_LIMIT'
            ? `waiting: this organization already runs ${config.build.concurrencyPerOrganization} build${config.build.concurrencyPerOrganization === 1 ? '' : 's'} at once`
            : 'waiting for a free build slot';
          await appendBuildLog(deps, buildId, [line]).catch(() => {});
        }
        // The builds ahead must be able to run, or this one would wait on a lost job.
        for (const ahead of admission.ahead.slice(0, config.build.concurrency)) await ensureBuildJobRunnable(deps, ahead).catch(() => {});
        return deferActiveJob(job, token, admission.reason === 'ORGANIZATION_AT_LIMIT' ? AT_LIMIT_RECHECK_MS : OTHERS_FIRST_RECHECK_MS);
      }
    }
    runningHere.add(buildId);
    try {
      await runBuild(deps, buildId);
    } finally {
      runningHere.delete(buildId);
      await wakeNextBuilds(deps).catch((error: unknown) => deps.log.warn({ err: error }, 'could not wake the next builds'));
    }
  };

  const worker = createWorker<BuildJob>(
    QUEUES.builds,
    processBuild,
    { redisUrl: config.redisUrl, prefix: config.redisPrefix, onError: (error) => deps.log.warn({ err: error }, 'Redis connection error') },
    { concurrency: config.build.concurrency, lockDuration: config.deploy.jobLockSeconds * 1000 },
  );
  worker.on('failed', (job, error) => deps.log.warn({ err: error, jobId: job?.id }, 'build job failed'));
  const waker = setInterval(() => void wakeNextBuilds(deps).catch((error: unknown) => deps.log.warn({ err: error }, 'could not wake the next builds')), WAKE_INTERVAL_MS);
  waker.unref();
  return {
    close: async () => {
      clearInterval(waker);
      await worker.close();
    },
  };
}

// The controller's worker jobs: a BullMQ job scheduler runs the health sweep every
// CONVOY_WORKER_SWEEP_SECONDS, once per interval however many controllers run; workers that just failed
// get a failover job, and each service to move a migration job of its own (they wait on Swarm, so they
// run apart from the sweep).
import type { Job } from 'bullmq';
import { createQueue, createWorker, keepJobScheduler, QUEUES, watchScheduledJob } from '../../platform/queue/queues.js';
import type { Logger } from '../../platform/logging/logger.js';
import type { Config } from '../../config.js';
import { ServiceMigrationStatus } from '../../generated/prisma/enums.js';
import { sweepWorkerHealth, type WorkerHealthDeps } from './health.js';
import { queueWorkerFailures, refreshDegradedServices, releaseNodeExclusions, runFailoverJob, type FailoverDeps, type FailoverJob } from './failover.js';

// Its own queue: the maintenance queue's worker treats every job on it as a reconcile.
const WORKER_HEALTH_QUEUE = QUEUES.workerHealth;
// Migrations mostly wait on Swarm.
const FAILOVER_CONCURRENCY = 8;

type WorkerHealthJob = { kind: 'sweep' };

export async function startWorkerController(deps: WorkerHealthDeps & FailoverDeps & { config: Config; log: Logger }) {
  const { config } = deps;
  const connection = { redisUrl: config.redisUrl, prefix: config.redisPrefix, onError: (error: Error) => deps.log.warn({ err: error }, 'Redis connection error') };
  const shutdown = new AbortController();
  const queue = createQueue<WorkerHealthJob>(WORKER_HEALTH_QUEUE, connection);
  const scheduler = await keepJobScheduler(queue, 'worker-health', config.workers.sweepSeconds * 1000, { name: 'sweep', data: { kind: 'sweep' } }, deps.log);
  const worker = createWorker<WorkerHealthJob>(
    WORKER_HEALTH_QUEUE,
    async () => {
      const report = await sweepWorkerHealth(deps);
      if (report.unhealthy.length || report.offline.length) deps.log.info({ report }, 'worker health changed');
      await queueWorkerFailures(deps, report.failed);
      // Upkeep that needs Swarm: a Swarm hiccup must not fail the sweep, the next one tries again.
      const [recovered, released] = await Promise.all([
        refreshDegradedServices(deps).catch((error: Error) => (deps.log.warn({ err: error }, 'could not check DEGRADED services'), [])),
        releaseNodeExclusions(deps).catch((error: Error) => (deps.log.warn({ err: error }, 'could not lift node exclusions'), [])),
      ]);
      if (recovered.length || released.length) deps.log.info({ recovered, released }, 'services back on healthy workers');
      return report;
    },
    connection,
    { concurrency: 1 },
  );
  watchScheduledJob(worker, 'workerHealth', deps.redis, config.redisPrefix, deps.log);

  const failover = createWorker<FailoverJob>(
    QUEUES.workerFailover,
    async (job: Job<FailoverJob>) => {
      try {
        await runFailoverJob(deps, job.data, shutdown.signal);
      } catch (error) {
        // Out of retries: a migration must not stay MIGRATING (and its service unwatched) forever.
        if (job.data.kind === 'migrate' && job.attemptsMade + 1 >= (job.opts.attempts ?? 1) && !shutdown.signal.aborted) {
          await deps.db.serviceMigration.updateMany({
            where: { id: job.data.migrationId, status: ServiceMigrationStatus.MIGRATING },
            data: { status: ServiceMigrationStatus.FAILED, message: `gave up after ${job.attemptsMade + 1} attempts: ${(error as Error).message}`.slice(0, 2000), finishedAt: new Date() },
          });
        }
        throw error;
      }
    },
    connection,
    { concurrency: FAILOVER_CONCURRENCY },
  );
  failover.on('failed', (job, error) => deps.log.warn({ err: error, jobId: job?.id, job: job?.data }, 'failover job failed'));

  return {
    async close() {
      shutdown.abort();
      scheduler.stop();
      await Promise.allSettled([worker.close(), failover.close()]);
      await queue.close();
    },
  };
}

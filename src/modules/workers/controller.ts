// The controller's worker-health job: a BullMQ job scheduler runs the sweep every
// CONVOY_WORKER_SWEEP_SECONDS, once per interval however many controllers run.
import { createQueue, createWorker, QUEUES } from '../../platform/queue/queues.js';
import type { Logger } from '../../platform/logging/logger.js';
import type { Config } from '../../config.js';
import { sweepWorkerHealth, type WorkerHealthDeps } from './health.js';

// Its own queue: the maintenance queue's worker treats every job on it as a reconcile.
const WORKER_HEALTH_QUEUE = QUEUES.workerHealth;

type WorkerHealthJob = { kind: 'sweep' };

export async function startWorkerController(deps: WorkerHealthDeps & { config: Config; log: Logger }) {
  const { config } = deps;
  const connection = { redisUrl: config.redisUrl, prefix: config.redisPrefix, onError: (error: Error) => deps.log.warn({ err: error }, 'Redis connection error') };
  const queue = createQueue<WorkerHealthJob>(WORKER_HEALTH_QUEUE, connection);
  await queue.upsertJobScheduler('worker-health', { every: config.workers.sweepSeconds * 1000 }, { name: 'sweep', data: { kind: 'sweep' } });
  const worker = createWorker<WorkerHealthJob>(
    WORKER_HEALTH_QUEUE,
    async () => {
      const report = await sweepWorkerHealth(deps);
      if (report.unhealthy.length || report.offline.length) deps.log.info({ report }, 'worker health changed');
      return report;
    },
    connection,
    { concurrency: 1 },
  );
  worker.on('failed', (job, error) => deps.log.warn({ err: error, jobId: job?.id }, 'worker health sweep failed'));
  return {
    async close() {
      await worker.close();
      await queue.close();
    },
  };
}

// BullMQ workers for deploys and the reconciler: what the `controller` process runs.
import { DelayedError, type Job } from 'bullmq';
import { createQueue, createWorker, keepJobScheduler, QUEUES, watchScheduledJob } from '../../platform/queue/queues.js';
import { tryLock } from '../../platform/redis/lock.js';
import type { Redis } from '../../platform/redis/connection.js';
import { failWithoutChange, runDeployment, removeServiceRuntime } from './runner.js';
import { reconcile, type ReconcileDeps } from './reconciler.js';
import type { DeployJob } from './service.js';

export type ControllerDeps = ReconcileDeps & { redis: Redis };

type MaintenanceJob = { kind: 'reconcile' };

export async function startDeployController(deps: ControllerDeps) {
  const { config } = deps;
  const connection = { redisUrl: config.redisUrl, prefix: config.redisPrefix, onError: (error: Error) => deps.log.warn({ err: error }, 'Redis connection error') };
  const lockMs = config.deploy.jobLockSeconds * 1000;
  const shutdown = new AbortController();

  const deployWorker = createWorker<DeployJob>(
    QUEUES.deployments,
    async (job: Job<DeployJob>, token?: string) => {
      if (job.data.kind === 'remove') return removeServiceRuntime(deps, job.data.serviceId);
      const deployment = await deps.db.deployment.findUnique({ where: { id: job.data.deploymentId }, select: { serviceId: true } });
      if (!deployment) return;
      // One rollout per service at a time; later ones wait their turn, in order.
      const lock = await tryLock(deps.redis, `${config.redisPrefix}:lock:service:${deployment.serviceId}`, lockMs);
      if (!lock) {
        await job.moveToDelayed(Date.now() + 500, token);
        throw new DelayedError();
      }
      try {
        await runDeployment(deps, job.data.deploymentId, shutdown.signal);
      } catch (error) {
        // Out of retries (Docker unreachable, say): the deployment must not stay DEPLOYING forever.
        if (job.attemptsMade + 1 >= (job.opts.attempts ?? 1) && !shutdown.signal.aborted) {
          await failWithoutChange(deps, job.data.deploymentId, `gave up after ${job.attemptsMade + 1} attempts: ${(error as Error).message}`);
        }
        throw error;
      } finally {
        await lock.release();
      }
      if (shutdown.signal.aborted) throw new Error('controller stopped while watching the rollout; it resumes on the next start');
    },
    connection,
    { concurrency: config.deploy.concurrency, lockDuration: lockMs, stalledInterval: Math.max(1000, lockMs / 2) },
  );
  deployWorker.on('failed', (job, error) => deps.log.warn({ err: error, jobId: job?.id }, 'deploy job failed'));

  const maintenanceQueue = createQueue<MaintenanceJob>(QUEUES.maintenance, connection);
  const scheduler = await keepJobScheduler(maintenanceQueue, 'reconcile', config.deploy.reconcileIntervalSeconds * 1000, { name: 'reconcile', data: { kind: 'reconcile' } }, deps.log);
  const maintenanceWorker = createWorker<MaintenanceJob>(
    QUEUES.maintenance,
    async () => {
      const report = await reconcile(deps);
      if (Object.values(report).some((ids) => ids.length > 0)) deps.log.info({ report }, 'reconciled desired and actual state');
      return report;
    },
    connection,
    { concurrency: 1 },
  );
  watchScheduledJob(maintenanceWorker, 'reconcile', deps.redis, config.redisPrefix, deps.log);
  // Converge right away rather than one interval after a (re)start.
  await maintenanceQueue.add('reconcile', { kind: 'reconcile' }, { jobId: `reconcile-start-${Date.now()}` });

  return {
    async close() {
      shutdown.abort();
      scheduler.stop();
      await Promise.allSettled([deployWorker.close(), maintenanceWorker.close()]);
      await maintenanceQueue.close();
    },
  };
}

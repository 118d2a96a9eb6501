// The BullMQ worker for builds. Builds run in child processes (nix-build), so a small concurrency
// keeps the node responsive; the API never builds.
import type { Job } from 'bullmq';
import { createWorker, QUEUES } from '../../platform/queue/queues.js';
import { runBuild, type BuildRunnerDeps } from './runner.js';
import type { BuildJob } from './service.js';

export async function startBuildController(deps: BuildRunnerDeps) {
  const { config } = deps;
  const worker = createWorker<BuildJob>(
    QUEUES.builds,
    (job: Job<BuildJob>) => runBuild(deps, job.data.buildId),
    { redisUrl: config.redisUrl, prefix: config.redisPrefix, onError: (error) => deps.log.warn({ err: error }, 'Redis connection error') },
    { concurrency: config.build.concurrency, lockDuration: config.deploy.jobLockSeconds * 1000 },
  );
  worker.on('failed', (job, error) => deps.log.warn({ err: error, jobId: job?.id }, 'build job failed'));
  return { close: () => worker.close() };
}

// BullMQ queues and workers, namespaced under the install's Redis prefix.
import { DelayedError, Queue, QueueEvents, Worker, type Job, type JobsOptions, type Processor, type WorkerOptions } from 'bullmq';
import { createRedis } from '../redis/connection.js';

export const QUEUES = { deployments: 'deployments', builds: 'builds', maintenance: 'maintenance', workerHealth: 'worker-health', workerFailover: 'worker-failover', evaluations: 'evaluations' } as const;
export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

export type QueueConnection = { redisUrl: string; prefix: string; onError: (error: Error) => void };

export function createQueue<Data>(name: QueueName, connection: QueueConnection): Queue<Data> {
  return new Queue<Data>(name, {
    connection: createRedis(connection.redisUrl, connection.onError),
    prefix: `${connection.prefix}:bull`,
    defaultJobOptions: { removeOnComplete: { count: 1000 }, removeOnFail: { count: 5000 }, attempts: 5, backoff: { type: 'exponential', delay: 1000 } },
  });
}

/** Completion events of a queue's jobs (for `job.waitUntilFinished`); it holds a blocking connection of its own. */
export function createQueueEvents(name: QueueName, connection: QueueConnection): QueueEvents {
  return new QueueEvents(name, { connection: createRedis(connection.redisUrl, connection.onError), prefix: `${connection.prefix}:bull` });
}

export function createWorker<Data>(
  name: QueueName,
  processor: Processor<Data>,
  connection: QueueConnection,
  options: Pick<WorkerOptions, 'concurrency' | 'lockDuration' | 'stalledInterval'> = {},
): Worker<Data> {
  return new Worker<Data>(name, processor, {
    connection: createRedis(connection.redisUrl, connection.onError),
    prefix: `${connection.prefix}:bull`,
    ...options,
  });
}

/**
 * Inside a processor: puts the active job back (delayed by `delayMs`) and frees the worker's slot for
 * other jobs. Throws what BullMQ expects; the processor returns by letting it through.
 */
export async function deferActiveJob(job: Job, token: string | undefined, delayMs: number): Promise<never> {
  await job.moveToDelayed(Date.now() + delayMs, token);
  throw new DelayedError();
}

export type EnsuredJob = 'present' | 'promoted' | 'added';

/**
 * Makes sure the job with this id can run now: a delayed one is promoted, a missing or ended one
 * (Redis lost it, or a processor crashed on it) is added again. Safe to call from any process.
 */
export async function ensureJobRunnable<Data>(queue: Queue<Data>, jobId: string, add: { name: string; data: Data; opts?: JobsOptions }): Promise<EnsuredJob> {
  const job = await queue.getJob(jobId);
  const state = job ? await job.getState() : 'unknown';
  if (job && state === 'delayed') {
    // It may have left the delayed set meanwhile: then it runs anyway.
    await job.promote().catch(() => {});
    return 'promoted';
  }
  if (job && state !== 'completed' && state !== 'failed' && state !== 'unknown') return 'present';
  if (job) await job.remove().catch(() => {});
  await (queue as Queue).add(add.name, add.data, { ...add.opts, jobId });
  return 'added';
}

// BullMQ queues and workers, namespaced under the install's Redis prefix.
import { DelayedError, Queue, QueueEvents, Worker, type Job, type JobsOptions, type Processor, type WorkerOptions } from 'bullmq';
import { createRedis, type Redis } from '../redis/connection.js';

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
 * Makes sure the job with this id can run now: a delayed one is promoted (unless `promoteDelayed` is
 * false: it runs when its delay ends, a retry's backoff included), a missing or ended one (Redis lost
 * it, or a processor crashed on it) is added again. Safe to call from any process.
 */
export async function ensureJobRunnable<Data>(
  queue: Queue<Data>,
  jobId: string,
  add: { name: string; data: Data; opts?: JobsOptions },
  { promoteDelayed = true }: { promoteDelayed?: boolean } = {},
): Promise<EnsuredJob> {
  const job = await queue.getJob(jobId);
  const state = job ? await job.getState() : 'unknown';
  if (job && state === 'delayed' && !promoteDelayed) return 'present';
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

/** How often a controller checks that its job schedulers still exist (Redis may have lost them). */
export const SCHEDULER_CHECK_MS = 3000;

export type SchedulerKeeper = { stop(): void };

/**
 * Creates the job scheduler, then checks every few seconds that it still exists and re-creates it when
 * it does not: Redis keeps schedulers only in memory, so a Redis that restarts empty (no persistence)
 * would otherwise leave the job unscheduled until the controller restarts. PostgreSQL holds the desired
 * state; the scheduled job itself re-queues whatever work Redis lost.
 */
export async function keepJobScheduler<Data>(
  queue: Queue<Data>,
  schedulerId: string,
  everyMs: number,
  template: { name: string; data: NoInfer<Data> },
  log: { warn(obj: object, msg: string): void },
  checkMs = Math.min(SCHEDULER_CHECK_MS, everyMs),
): Promise<SchedulerKeeper> {
  const untyped = queue as Queue;
  const upsert = () => untyped.upsertJobScheduler(schedulerId, { every: everyMs }, template);
  await upsert();
  let checking = false;
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    void (async () => {
      if (await untyped.getJobScheduler(schedulerId)) return;
      await upsert();
      log.warn({ scheduler: schedulerId, queue: queue.name }, 'job scheduler was missing (Redis lost its data?): re-created it');
    })()
      // Redis down: the next check tries again; the connection reports its own errors.
      .catch(() => {})
      .finally(() => (checking = false));
  }, checkMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** What /readyz shows of a scheduled job: when it last succeeded, and its last failure. */
export type JobHealth = { lastSuccessAt: string | null; lastErrorAt: string | null; lastError: string | null };

type HealthRedis = Pick<Redis, 'hset' | 'hgetall'>;

const jobHealthKey = (prefix: string, job: string) => `${prefix}:job-health:${job}`;

/**
 * Logs a scheduled job's failures (warn, with the error) and records its last success and failure in
 * Redis, where any process (the API's /readyz) reads them. Lost with Redis: shown as null until the
 * next run.
 */
export function watchScheduledJob(worker: Worker, job: string, redis: HealthRedis, prefix: string, log: { warn(obj: object, msg: string): void }) {
  const record = (fields: Record<string, string>) => void redis.hset(jobHealthKey(prefix, job), fields).catch(() => {});
  worker.on('completed', () => record({ lastSuccessAt: new Date().toISOString() }));
  worker.on('failed', (failed, error) => {
    log.warn({ err: error, job, jobId: failed?.id }, `scheduled job ${job} failed`);
    record({ lastErrorAt: new Date().toISOString(), lastError: (error?.message ?? String(error)).slice(0, 500) });
  });
}

export async function readJobHealth(redis: HealthRedis, prefix: string, job: string): Promise<JobHealth> {
  const fields = await redis.hgetall(jobHealthKey(prefix, job));
  return { lastSuccessAt: fields.lastSuccessAt ?? null, lastErrorAt: fields.lastErrorAt ?? null, lastError: fields.lastError ?? null };
}

// BullMQ queues and workers, namespaced under the install's Redis prefix.
import { Queue, Worker, type Processor, type WorkerOptions } from 'bullmq';
import { createRedis } from '../redis/connection.js';

export const QUEUES = { deployments: 'deployments', builds: 'builds', maintenance: 'maintenance', workerHealth: 'worker-health', workerFailover: 'worker-failover' } as const;
export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];

export type QueueConnection = { redisUrl: string; prefix: string; onError: (error: Error) => void };

export function createQueue<Data>(name: QueueName, connection: QueueConnection): Queue<Data> {
  return new Queue<Data>(name, {
    connection: createRedis(connection.redisUrl, connection.onError),
    prefix: `${connection.prefix}:bull`,
    defaultJobOptions: { removeOnComplete: { count: 1000 }, removeOnFail: { count: 5000 }, attempts: 5, backoff: { type: 'exponential', delay: 1000 } },
  });
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

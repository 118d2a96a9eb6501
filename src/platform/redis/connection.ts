import { Redis, type RedisOptions } from 'ioredis';

export type { Redis };

/** A new connection; BullMQ workers and subscribers each need their own. */
export function createRedis(url: string, options: RedisOptions = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, lazyConnect: false, ...options });
}

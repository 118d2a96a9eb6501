import { Redis, type RedisOptions } from 'ioredis';

export type { Redis };

/**
 * A new connection; BullMQ workers and subscribers each need their own. Connection errors are
 * reported through onError (ioredis keeps reconnecting by itself); unhandled they would crash.
 */
export function createRedis(url: string, onError: (error: Error) => void, options: RedisOptions = {}): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...options });
  let lastReported = 0;
  redis.on('error', (error: Error) => {
    // One report per 10 s is enough while a server is down.
    if (Date.now() - lastReported < 10_000) return;
    lastReported = Date.now();
    onError(error);
  });
  return redis;
}

/** Closes politely when connected, at once otherwise (QUIT would wait for a server that is gone). */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect());
  else redis.disconnect();
}

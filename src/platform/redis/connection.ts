import { Redis, type RedisOptions } from 'ioredis';

export type { Redis };

/**
 * How long a command on a request's path (session checks, rate limits, publishes) may wait for a Redis
 * that is down before it fails: ioredis would otherwise hold it in its offline queue until Redis is back,
 * and the request with it. Only for connections without blocking commands (not BullMQ workers').
 */
export const REDIS_COMMAND_TIMEOUT_MS = 2000;

const REDIS_OUTAGE_MESSAGES = /^(Command timed out|Connection is closed\.|Stream isn't writeable|Redis did not answer within)/;

/** A command failed because Redis cannot be reached (not because of what it asked). */
export function isRedisUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return error.name === 'MaxRetriesPerRequestError' || REDIS_OUTAGE_MESSAGES.test(error.message);
}

const connectedOnce = new WeakSet<Redis>();

/**
 * Lost and not back yet: worth no wait. A connection still making its first attempt (at start-up) is
 * not down, and commands on it wait for it as usual.
 */
export function isRedisDown(redis: Redis): boolean {
  if (redis.status === 'reconnecting' || redis.status === 'close' || redis.status === 'end') return true;
  return redis.status !== 'ready' && connectedOnce.has(redis);
}

/** The operation's result, or a Redis outage error once `ms` have passed (the operation itself goes on). */
export async function withinRedisDeadline<T>(operation: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms (${what})`)), ms);
  });
  try {
    return await Promise.race([operation, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A new connection; BullMQ workers and subscribers each need their own. Connection errors are
 * reported through onError (ioredis keeps reconnecting by itself); unhandled they would crash.
 */
export function createRedis(url: string, onError: (error: Error) => void, options: RedisOptions = {}): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...options });
  redis.once('ready', () => connectedOnce.add(redis));
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

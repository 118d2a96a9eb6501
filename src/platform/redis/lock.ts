import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

export type Lock = { release(): Promise<void> };

// Deletes/extends the key only while it still holds our token, so an expired lock taken over by
// another process is never released by us.
const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const EXTEND = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/** A lease that renews itself while held; null when someone else holds it. */
export async function tryLock(redis: Redis, key: string, ttlMs: number): Promise<Lock | null> {
  const token = randomUUID();
  const ok = await redis.set(key, token, 'PX', ttlMs, 'NX');
  if (ok !== 'OK') return null;
  const renew = setInterval(() => void redis.eval(EXTEND, 1, key, token, String(ttlMs)).catch(() => {}), Math.max(ttlMs / 3, 250));
  renew.unref();
  return {
    async release() {
      clearInterval(renew);
      await redis.eval(RELEASE, 1, key, token).catch(() => {});
    },
  };
}

// Counters in Redis that refuse a key for a while once it has been seen too often: the one wrapper
// around rate-limiter-flexible, so its off-by-one conventions and its way of rejecting (a promise
// rejected with a result object, not an Error) stay here.
import { createHash } from 'node:crypto';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { Redis } from '../redis/connection.js';

export type LimitRule = {
  /** Names the counter in Redis; unique per rule. */
  name: string;
  /** How many events a key may have within the window; the one after that blocks it. */
  allowed: number;
  windowSeconds: number;
  /** How long a key stays refused once it went over. */
  blockSeconds: number;
};

export class RateLimit {
  private readonly limiter: RateLimiterRedis;

  constructor(redis: Redis, redisPrefix: string, readonly rule: LimitRule) {
    this.limiter = new RateLimiterRedis({
      storeClient: redis,
      keyPrefix: `${redisPrefix}:ratelimit:${rule.name}`,
      points: rule.allowed,
      duration: rule.windowSeconds,
      blockDuration: rule.blockSeconds,
    });
  }

  /** Seconds until the key may go on (at least 1), or 0 when it is not refused now. Counts nothing. */
  async retryAfterSeconds(key: string): Promise<number> {
    const state = await this.limiter.get(key);
    return state && state.consumedPoints > this.rule.allowed ? secondsOf(state) : 0;
  }

  /** Counts one event; the seconds the key is refused for when this one went over (or it was refused already), else 0. */
  async take(key: string): Promise<number> {
    try {
      await this.limiter.consume(key);
      return 0;
    } catch (rejection) {
      if (rejection instanceof RateLimiterRes) return secondsOf(rejection);
      throw rejection;
    }
  }

  /** Uncounts one event that take() let through, when it turned out not to be one that counts. */
  async giveBack(key: string): Promise<void> {
    await this.limiter.reward(key, 1);
  }

  /** Forgets the key's events (and any block). */
  async reset(key: string): Promise<void> {
    await this.limiter.delete(key);
  }
}

function secondsOf(state: RateLimiterRes): number {
  return Math.max(1, Math.ceil(state.msBeforeNext / 1000));
}

/** A key part that keeps emails and tokens out of Redis keys and bounds their length. */
export function limitKeyOf(value: string): string {
  return createHash('sha256').update(value).digest('base64url').slice(0, 22);
}

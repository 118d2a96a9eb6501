// Wires Convoy's dependencies once per process: database, Redis, event bus, logger.
import type pg from 'pg';
import type { Config } from './config.js';
import { createDb, type Db } from './platform/db/client.js';
import { applyPendingMigrations } from './platform/db/migrations.js';
import { closeRedis, createRedis, type Redis } from './platform/redis/connection.js';
import { RedisEventBus } from './platform/events/bus.js';
import { createLogger, type Logger } from './platform/logging/logger.js';
import type { ConvoyBus, ConvoyEvents } from './events.js';

export type App = {
  config: Config;
  db: Db;
  redis: Redis;
  bus: ConvoyBus;
  log: Logger;
  close(): Promise<void>;
};

export type AppOptions = { onQuery?: (sql: string) => void; log?: Logger };

export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const log = options.log ?? createLogger(config.logLevel);
  if (config.migrateOnStart) {
    const applied = await applyPendingMigrations(config.databaseUrl);
    if (applied.length) log.info({ applied }, 'applied database migrations');
  }
  const { db, pool } = createDb({ connectionString: config.databaseUrl, poolSize: config.databasePoolSize, onQuery: options.onQuery });
  const reportRedisError = (error: Error) => log.warn({ err: error }, 'Redis connection error');
  const redis = createRedis(config.redisUrl, reportRedisError);
  const subscriber = createRedis(config.redisUrl, reportRedisError);
  const bus = new RedisEventBus<ConvoyEvents>(redis, subscriber, config.redisPrefix);
  return {
    config,
    db,
    redis,
    bus,
    log,
    async close() {
      await bus.close();
      await Promise.allSettled([db.$disconnect(), closeRedis(redis), closeRedis(subscriber)]);
      await (pool as pg.Pool).end().catch(() => {});
    },
  };
}

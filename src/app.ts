// Wires Convoy's dependencies once per process: database, Redis, event bus, logger.
import type pg from 'pg';
import type { Config } from './config.js';
import { createDb, type Db } from './platform/db/client.js';
import { applyPendingMigrations } from './platform/db/migrations.js';
import { closeRedis, createRedis, REDIS_COMMAND_TIMEOUT_MS, type Redis } from './platform/redis/connection.js';
import { RedisEventBus } from './platform/events/bus.js';
import { createLogger, type Logger } from './platform/logging/logger.js';
import type { ConvoyBus, ConvoyEvents } from './events.js';
import type { Queue } from 'bullmq';
import { createQueue, QUEUES } from './platform/queue/queues.js';
import { SwarmOrchestrator, type Orchestrator } from './platform/orchestrator/index.js';
import { dockerFromHost } from './platform/orchestrator/index.js';
import type { DeployJob } from './modules/deployments/service.js';
import type { BuildJob } from './modules/builds/service.js';
import type { FailoverJob } from './modules/workers/failover.js';
import type Docker from 'dockerode';
import { NixBuilder, nixBuilderOptionsFromEnv, type Builder } from './platform/builder/index.js';
import { ExecutorEvaluator, type Evaluator } from './modules/builds/evaluations.js';

export type App = {
  config: Config;
  db: Db;
  redis: Redis;
  bus: ConvoyBus;
  log: Logger;
  docker: Docker;
  orchestrator: Orchestrator;
  builder: Builder;
  /** Evaluates template expressions on the build executor (the API process never does). */
  evaluator: Evaluator;
  queues: { deployments: Queue<DeployJob>; builds: Queue<BuildJob>; failover: Queue<FailoverJob> };
  close(): Promise<void>;
};

export type AppOptions = { onQuery?: (sql: string) => void; log?: Logger; builder?: Builder };

export async function createApp(config: Config, options: AppOptions = {}): Promise<App> {
  const log = options.log ?? createLogger(config.logLevel);
  if (config.migrateOnStart) {
    const applied = await applyPendingMigrations(config.databaseUrl);
    if (applied.length) log.info({ applied }, 'applied database migrations');
  }
  const { db, pool } = createDb({ connectionString: config.databaseUrl, poolSize: config.databasePoolSize, onQuery: options.onQuery, onError: (error) => log.warn({ err: error }, 'PostgreSQL connection error') });
  const reportRedisError = (error: Error) => log.warn({ err: error }, 'Redis connection error');
  // Commands on this connection answer requests: bounded, so a Redis outage fails them instead of stalling them.
  const redis = createRedis(config.redisUrl, reportRedisError, { commandTimeout: REDIS_COMMAND_TIMEOUT_MS });
  const subscriber = createRedis(config.redisUrl, reportRedisError);
  const bus = new RedisEventBus<ConvoyEvents>(redis, subscriber, config.redisPrefix, (error, channel) => log.warn({ err: error, channel }, 'event dropped: Redis did not take the publish'));
  const docker = dockerFromHost(config.dockerHost);
  const orchestrator = new SwarmOrchestrator(docker);
  const builder = options.builder ?? new NixBuilder({
    ...nixBuilderOptionsFromEnv(),
    defaultBuildTimeoutMs: config.build.timeoutSeconds * 1000,
    sandbox: config.build.sandbox,
    egress: { allowedHosts: config.build.allowedHosts, outbound: config.outbound },
  });
  const queueConnection = { redisUrl: config.redisUrl, prefix: config.redisPrefix, onError: reportRedisError };
  const deployments = createQueue<DeployJob>(QUEUES.deployments, queueConnection);
  const builds = createQueue<BuildJob>(QUEUES.builds, queueConnection);
  const failover = createQueue<FailoverJob>(QUEUES.workerFailover, queueConnection);
  const evaluator = new ExecutorEvaluator({ db, bus, config, log });
  return {
    config,
    db,
    redis,
    bus,
    log,
    docker,
    orchestrator,
    builder,
    evaluator,
    queues: { deployments, builds, failover },
    async close() {
      await bus.close();
      await evaluator.close();
      await Promise.allSettled([deployments.close(), builds.close(), failover.close()]);
      await Promise.allSettled([db.$disconnect(), closeRedis(redis), closeRedis(subscriber)]);
      await (pool as pg.Pool).end().catch(() => {});
    },
  };
}

// All configuration comes from the environment; every variable is documented in .env.example.
import { z } from 'zod';
import { IMAGE_REFERENCE } from './shared/validation.js';


const schema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  DATABASE_URL: z.string().url().default('postgresql://root@127.0.0.1:5432/convoy'),
  DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
  REDIS_URL: z.string().url().default('redis://127.0.0.1:6379/0'),
  // Namespaces every Redis key, queue and channel, so several installs (or test files) can share one Redis.
  REDIS_PREFIX: z.string().regex(/^[a-zA-Z0-9:_-]{1,64}$/).default('convoy'),
  PORT: z.coerce.number().int().min(0).max(65535).default(4000),
  HOST: z.string().default('0.0.0.0'),
  DOCKER_HOST: z.string().default('unix:///var/run/docker.sock'),
  BASE_DOMAIN: z.string().regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/).default('convoy.localhost'),
  CONVOY_SECRET_KEY: z.string().min(32, 'CONVOY_SECRET_KEY must be at least 32 characters').optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  ACCESS_TOKEN_TTL_SECONDS: z.coerce.number().int().min(30).default(900),
  REFRESH_TOKEN_TTL_SECONDS: z.coerce.number().int().min(60).default(30 * 24 * 3600),
  GRAPHQL_MAX_DEPTH: z.coerce.number().int().min(2).default(12),
  GRAPHQL_MAX_ALIASES: z.coerce.number().int().min(1).default(30),
  GRAPHQL_MAX_COST: z.coerce.number().int().min(10).default(50000),
  GRAPHQL_MAX_TOKENS: z.coerce.number().int().min(100).default(2000),
  // Deploys. VIP endpoints and the ingress mesh need IPVS; dnsrr works everywhere.
  CONVOY_ENDPOINT_MODE: z.enum(['vip', 'dnsrr']).default('vip'),
  CONVOY_SWARM_INIT: z.enum(['true', 'false']).default('false').transform((v) => v === 'true'),
  CONVOY_DEPLOY_TIMEOUT_SECONDS: z.coerce.number().int().min(5).max(3600).default(300),
  CONVOY_UPDATE_MONITOR_SECONDS: z.coerce.number().min(0).max(600).default(10),
  CONVOY_STOP_GRACE_SECONDS: z.coerce.number().min(0).max(600).default(10),
  CONVOY_DRIFT_POLICY: z.enum(['recreate', 'mark']).default('recreate'),
  CONVOY_RECONCILE_INTERVAL_SECONDS: z.coerce.number().min(1).max(3600).default(30),
  CONVOY_JOB_LOCK_SECONDS: z.coerce.number().min(2).max(600).default(30),
  // Built images of this many latest healthy deployments per service stay on the node for rollbacks.
  CONVOY_KEEP_IMAGES: z.coerce.number().int().min(1).max(100).default(5),
  CONVOY_DEPLOY_CONCURRENCY: z.coerce.number().int().min(1).max(100).default(8),
  // Builds.
  REGISTRY_URL: z.string().regex(/^[a-z0-9.-]+(:[0-9]{1,5})?(\/[a-z0-9._/-]+)?$/, 'must be host[:port][/path] of a Docker registry').optional(),
  CONVOY_BUILD_TIMEOUT_SECONDS: z.coerce.number().int().min(10).max(86_400).default(1800),
  CONVOY_BUILD_CONCURRENCY: z.coerce.number().int().min(1).max(32).default(2),
  // Where builds run: on worker agents (offered through workerJobs) or in the controller process.
  CONVOY_BUILD_EXECUTOR: z.enum(['agents', 'controller']).default('controller'),
  // An agent's claimed job goes back to the queue when the agent is silent this long (or restarted).
  CONVOY_JOB_LEASE_SECONDS: z.coerce.number().min(1).max(3600).default(90),
  // A build nobody claims in this time fails ("no agent took it").
  CONVOY_JOB_CLAIM_TIMEOUT_SECONDS: z.coerce.number().min(1).max(86_400).default(900),
  // Lets Git sources use file:// URLs (local repositories). Off by default: users could read the node's disk.
  CONVOY_ALLOW_FILE_GIT_URLS: z.enum(['true', 'false']).default('false').transform((v) => v === 'true'),
  MIGRATE_ON_START: z.enum(['true', 'false', '1', '0']).default('true').transform((v) => v === 'true' || v === '1'),
  // Workers. The URL nodes reach the API at (install commands and scripts); unset: the request's Host.
  CONVOY_PUBLIC_URL: z.string().regex(/^https?:\/\/(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]{1,253})(:[0-9]{1,5})?\/?$/, 'must be http(s)://host[:port]').optional(),
  // The image the install script runs the worker agent from (an image built from this repository).
  CONVOY_AGENT_IMAGE: z.string().max(512).regex(IMAGE_REFERENCE, 'must be a Docker image reference').default('convoy:latest'),
  CONVOY_WORKER_HEARTBEAT_SECONDS: z.coerce.number().int().min(1).max(3600).default(30),
  // How long a worker credential found valid is trusted without asking PostgreSQL; 0: every request asks.
  CONVOY_WORKER_CREDENTIAL_CACHE_SECONDS: z.coerce.number().min(0).max(3600).default(300),
  CONVOY_WORKER_SWEEP_SECONDS: z.coerce.number().min(1).max(3600).default(15),
  CONVOY_WORKER_UNHEALTHY_SECONDS: z.coerce.number().min(1).max(86_400).default(120),
  CONVOY_WORKER_OFFLINE_SECONDS: z.coerce.number().min(1).max(86_400).default(300),
  // A failed worker's services (migration policy AUTOMATIC): how long Convoy leaves Swarm to reschedule
  // them by itself before it moves them, and how long until it gives up and reports the migration FAILED.
  CONVOY_FAILOVER_WAIT_SECONDS: z.coerce.number().min(0).max(3600).default(15),
  CONVOY_FAILOVER_TIMEOUT_SECONDS: z.coerce.number().min(5).max(86_400).default(300),
  CONVOY_WORKER_CPU_ALERT_PERCENT: z.coerce.number().min(1).max(100).default(90),
  CONVOY_WORKER_MEMORY_ALERT_PERCENT: z.coerce.number().min(1).max(100).default(95),
  CONVOY_WORKER_DISK_ALERT_PERCENT: z.coerce.number().min(1).max(100).default(90),
  // 1-minute metrics buckets (workers and services) are kept in Redis this long.
  CONVOY_METRICS_TTL_SECONDS: z.coerce.number().int().min(60).max(30 * 86_400).default(86_400),
});

export type Config = {
  nodeEnv: 'development' | 'test' | 'production';
  databaseUrl: string;
  databasePoolSize: number;
  redisUrl: string;
  redisPrefix: string;
  port: number;
  host: string;
  dockerHost: string;
  baseDomain: string;
  secretKey: string;
  logLevel: string;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  limits: { maxDepth: number; maxAliases: number; maxCost: number; maxTokens: number };
  migrateOnStart: boolean;
  build: {
    registryUrl: string | null;
    timeoutSeconds: number;
    concurrency: number;
    allowFileGitUrls: boolean;
    executor: 'agents' | 'controller';
    jobLeaseSeconds: number;
    jobClaimTimeoutSeconds: number;
  };
  deploy: {
    endpointMode: 'vip' | 'dnsrr';
    initSwarm: boolean;
    timeoutSeconds: number;
    updateMonitorSeconds: number;
    stopGraceSeconds: number;
    driftPolicy: 'recreate' | 'mark';
    reconcileIntervalSeconds: number;
    jobLockSeconds: number;
    concurrency: number;
    keepImages: number;
  };
  publicUrl: string | null;
  workers: {
    agentImage: string;
    heartbeatSeconds: number;
    credentialCacheSeconds: number;
    sweepSeconds: number;
    unhealthySeconds: number;
    offlineSeconds: number;
    failoverWaitSeconds: number;
    failoverTimeoutSeconds: number;
    alerts: { cpuPercent: number; memoryPercent: number; diskPercent: number };
    metricsTtlSeconds: number;
  };
};

export class ConfigError extends Error {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable (as in a copied .env.example) means "not set".
  const parsed = schema.safeParse(Object.fromEntries(Object.entries(env).filter(([, value]) => value !== '')));
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid configuration: ${problems}`);
  }
  const e = parsed.data;
  let secretKey = e.CONVOY_SECRET_KEY;
  if (!secretKey) {
    if (e.NODE_ENV === 'production') throw new ConfigError('CONVOY_SECRET_KEY is required in production');
    // Outside production a random per-process key keeps things working without a checked-in fallback;
    // tokens simply do not survive a restart.
    secretKey = randomKey();
  }
  return {
    nodeEnv: e.NODE_ENV,
    databaseUrl: e.DATABASE_URL,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    redisUrl: e.REDIS_URL,
    redisPrefix: e.REDIS_PREFIX,
    port: e.PORT,
    host: e.HOST,
    dockerHost: e.DOCKER_HOST,
    baseDomain: e.BASE_DOMAIN,
    secretKey,
    logLevel: e.LOG_LEVEL,
    accessTokenTtlSeconds: e.ACCESS_TOKEN_TTL_SECONDS,
    refreshTokenTtlSeconds: e.REFRESH_TOKEN_TTL_SECONDS,
    limits: { maxDepth: e.GRAPHQL_MAX_DEPTH, maxAliases: e.GRAPHQL_MAX_ALIASES, maxCost: e.GRAPHQL_MAX_COST, maxTokens: e.GRAPHQL_MAX_TOKENS },
    migrateOnStart: e.MIGRATE_ON_START,
    build: { registryUrl: e.REGISTRY_URL ?? null, timeoutSeconds: e.CONVOY_BUILD_TIMEOUT_SECONDS, concurrency: e.CONVOY_BUILD_CONCURRENCY, allowFileGitUrls: e.CONVOY_ALLOW_FILE_GIT_URLS,
      executor: e.CONVOY_BUILD_EXECUTOR,
      jobLeaseSeconds: e.CONVOY_JOB_LEASE_SECONDS,
      jobClaimTimeoutSeconds: e.CONVOY_JOB_CLAIM_TIMEOUT_SECONDS,
    },
    deploy: {
      endpointMode: e.CONVOY_ENDPOINT_MODE,
      initSwarm: e.CONVOY_SWARM_INIT,
      timeoutSeconds: e.CONVOY_DEPLOY_TIMEOUT_SECONDS,
      updateMonitorSeconds: e.CONVOY_UPDATE_MONITOR_SECONDS,
      stopGraceSeconds: e.CONVOY_STOP_GRACE_SECONDS,
      driftPolicy: e.CONVOY_DRIFT_POLICY,
      reconcileIntervalSeconds: e.CONVOY_RECONCILE_INTERVAL_SECONDS,
      jobLockSeconds: e.CONVOY_JOB_LOCK_SECONDS,
      concurrency: e.CONVOY_DEPLOY_CONCURRENCY,
      keepImages: e.CONVOY_KEEP_IMAGES,
    },
    publicUrl: e.CONVOY_PUBLIC_URL?.replace(/\/$/, '') ?? null,
    workers: {
      agentImage: e.CONVOY_AGENT_IMAGE,
      heartbeatSeconds: e.CONVOY_WORKER_HEARTBEAT_SECONDS,
      credentialCacheSeconds: e.CONVOY_WORKER_CREDENTIAL_CACHE_SECONDS,
      sweepSeconds: e.CONVOY_WORKER_SWEEP_SECONDS,
      unhealthySeconds: e.CONVOY_WORKER_UNHEALTHY_SECONDS,
      // OFFLINE always comes after UNHEALTHY.
      offlineSeconds: Math.max(e.CONVOY_WORKER_OFFLINE_SECONDS, e.CONVOY_WORKER_UNHEALTHY_SECONDS),
      failoverWaitSeconds: e.CONVOY_FAILOVER_WAIT_SECONDS,
      failoverTimeoutSeconds: e.CONVOY_FAILOVER_TIMEOUT_SECONDS,
      alerts: { cpuPercent: e.CONVOY_WORKER_CPU_ALERT_PERCENT, memoryPercent: e.CONVOY_WORKER_MEMORY_ALERT_PERCENT, diskPercent: e.CONVOY_WORKER_DISK_ALERT_PERCENT },
      metricsTtlSeconds: e.CONVOY_METRICS_TTL_SECONDS,
    },
  };
}

let processKey: string | undefined;
function randomKey(): string {
  processKey ??= globalThis.crypto.randomUUID() + globalThis.crypto.randomUUID();
  return processKey;
}

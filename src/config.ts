// All configuration comes from the environment; every variable is documented in .env.example.
import { z } from 'zod';
import { isIP } from 'node:net';
import { IMAGE_REFERENCE } from './shared/validation.js';
import { isValidAllowlistEntry, parseHostList } from './platform/net/outbound-guard.js';
import { isValidBuildAllowedHost } from './platform/builder/egress.js';


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
  CONVOY_SECRET_KEY: z
    .string()
    .superRefine((key, ctx) => {
      const weakness = secretKeyWeakness(key);
      if (weakness) ctx.addIssue({ code: 'custom', message: `CONVOY_SECRET_KEY is too weak: ${weakness}. ${SECRET_KEY_RULE}` });
    })
    .optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  ACCESS_TOKEN_TTL_SECONDS: z.coerce.number().int().min(30).default(900),
  REFRESH_TOKEN_TTL_SECONDS: z.coerce.number().int().min(60).default(30 * 24 * 3600),
  // Accounts one client address may register per hour (attempts count, successful or not).
  CONVOY_REGISTRATIONS_PER_HOUR: z.coerce.number().int().min(1).max(100_000).default(20),
  GRAPHQL_MAX_DEPTH: z.coerce.number().int().min(2).default(12),
  GRAPHQL_MAX_ALIASES: z.coerce.number().int().min(1).default(30),
  GRAPHQL_MAX_COST: z.coerce.number().int().min(10).default(50000),
  GRAPHQL_MAX_TOKENS: z.coerce.number().int().min(100).default(2000),
  // HTTP and WebSocket hardening (src/graphql/http-security.ts, src/graphql/websocket-limits.ts).
  // Browser origins allowed to call the API with credentials; unset: none in production, localhost elsewhere.
  CONVOY_CORS_ORIGINS: z
    .string()
    .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .refine((origins) => origins.every(isOrigin), 'must be comma-separated origins such as https://console.example.com (scheme, host, optional port; no path, not "null")')
    .optional(),
  // Who may run introspection queries; unset: authenticated callers in production, anyone elsewhere.
  CONVOY_INTROSPECTION: z.enum(['anonymous', 'authenticated', 'off']).optional(),
  CONVOY_WS_MAX_CONNECTIONS_PER_IP: z.coerce.number().int().min(1).max(1_000_000).default(5000),
  CONVOY_WS_MAX_UNAUTHENTICATED_PER_IP: z.coerce.number().int().min(1).max(1_000_000).default(256),
  CONVOY_WS_MAX_CONNECTIONS_PER_CALLER: z.coerce.number().int().min(1).max(100_000).default(32),
  CONVOY_WS_MAX_OPERATIONS_PER_CONNECTION: z.coerce.number().int().min(1).max(100_000).default(100),
  CONVOY_WS_AUTH_TIMEOUT_SECONDS: z.coerce.number().min(0.1).max(600).default(5),
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
  // Builds of one organization running at once; the others wait while other organizations' go first.
  CONVOY_BUILD_CONCURRENCY_PER_ORG: z.coerce.number().int().min(1).max(32).default(1),
  // Where builds run: on worker agents (offered through workerJobs) or in the controller process.
  CONVOY_BUILD_EXECUTOR: z.enum(['agents', 'controller']).default('controller'),
  // Tenant builds run sandboxed (Nix sandbox, empty network namespace, cgroup limits); 'off' is for
  // single-tenant installations only. See src/platform/builder/sandbox.ts.
  CONVOY_BUILD_SANDBOX: z.enum(['on', 'off']).default('on'),
  // Hosts (host or host:port, comma or space separated) fixed-output builds may reach through Convoy's proxy.
  CONVOY_BUILD_ALLOWED_HOSTS: z.string().max(8192).default('').refine((v) => parseHostList(v).every(isValidBuildAllowedHost), 'must list host names or host:port (no schemes or paths)'),
  CONVOY_BUILD_MEMORY_MB: z.coerce.number().int().min(32).max(1_048_576).default(4096),
  CONVOY_BUILD_CPUS: z.coerce.number().min(0.1).max(1024).default(2),
  CONVOY_BUILD_PIDS: z.coerce.number().int().min(32).max(4_194_304).default(4096),
  // An agent's claimed job goes back to the queue when the agent is silent this long (or restarted).
  CONVOY_JOB_LEASE_SECONDS: z.coerce.number().min(1).max(3600).default(90),
  // A build nobody claims in this time fails ("no agent took it").
  CONVOY_JOB_CLAIM_TIMEOUT_SECONDS: z.coerce.number().min(1).max(86_400).default(900),
  // How long a template save waits for the build executor to evaluate its expressions (the API never does).
  CONVOY_EVALUATION_TIMEOUT_SECONDS: z.coerce.number().min(1).max(600).default(60),
  // Lets Git sources use file:// URLs (local repositories). Off by default: users could read the node's disk.
  CONVOY_ALLOW_FILE_GIT_URLS: z.enum(['true', 'false']).default('false').transform((v) => v === 'true'),
  // A clone's whole time limit, and how long a Git server may stay silent (connect, stalled transfer).
  CONVOY_GIT_CLONE_TIMEOUT_SECONDS: z.coerce.number().int().min(5).max(3600).default(120),
  CONVOY_GIT_CONNECT_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(300).default(10),
  // Hosts (names, IPs or CIDRs, comma or space separated) Convoy may contact for tenants even though
  // they are internal, e.g. a company Git server. Everything else internal is refused.
  CONVOY_OUTBOUND_ALLOWED_HOSTS: z.string().max(8192).default('').refine((v) => parseHostList(v).every(isValidAllowlistEntry), 'must list host names, IP addresses or CIDRs'),
  // Proxies (addresses or CIDR ranges, comma-separated) whose X-Forwarded-For names the client for
  // per-address rate limits; requests from anywhere else are limited by their own peer address.
  CONVOY_TRUSTED_PROXIES: z
    .string()
    .default('')
    .transform((v) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .refine((entries) => entries.every(isAddressOrRange), 'must be comma-separated IP addresses or CIDR ranges'),
  MIGRATE_ON_START: z.enum(['true', 'false', '1', '0']).default('true').transform((v) => v === 'true' || v === '1'),
  // Workers. The URL nodes reach the API at (install commands and scripts). Required in production; elsewhere
  // unset means http://<HOST, or localhost>:<port>. Never taken from a request's Host header.
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
  registrationsPerHour: number;
  limits: { maxDepth: number; maxAliases: number; maxCost: number; maxTokens: number };
  http: {
    /** Exact origins allowed by CORS; 'localhost' allows http(s)://localhost, 127.0.0.1 and [::1] on any port. */
    corsOrigins: string[] | 'localhost';
    introspection: 'anonymous' | 'authenticated' | 'off';
  };
  websocket: {
    maxConnectionsPerIp: number;
    maxUnauthenticatedPerIp: number;
    maxConnectionsPerCaller: number;
    maxOperationsPerConnection: number;
    authTimeoutSeconds: number;
  };
  migrateOnStart: boolean;
  build: {
    registryUrl: string | null;
    timeoutSeconds: number;
    concurrency: number;
    concurrencyPerOrganization: number;
    allowFileGitUrls: boolean;
    gitCloneTimeoutSeconds: number;
    gitConnectTimeoutSeconds: number;
    executor: 'agents' | 'controller';
    jobLeaseSeconds: number;
    jobClaimTimeoutSeconds: number;
    evaluationTimeoutSeconds: number;
    sandbox: { mode: 'enforced' | 'off'; limits: { memoryMb: number; cpus: number; pids: number } };
    /** CONVOY_BUILD_ALLOWED_HOSTS: what fixed-output builds may reach (through the egress proxy). */
    allowedHosts: string[];
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
  /** Where nodes reach the API; null outside production when CONVOY_PUBLIC_URL is unset (see workers/install.ts). */
  publicUrl: string | null;
  /** What tenants may make Convoy contact (src/platform/net): allowlist, and Convoy's own hosts. */
  outbound: { allowedHosts: string[]; platformHosts: string[] };
  trustedProxies: string[];
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
  // Install scripts carry this URL to new nodes: guessing it from a request would let the request choose it.
  if (!e.CONVOY_PUBLIC_URL && e.NODE_ENV === 'production') throw new ConfigError('CONVOY_PUBLIC_URL is required in production');
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
    registrationsPerHour: e.CONVOY_REGISTRATIONS_PER_HOUR,
    limits: { maxDepth: e.GRAPHQL_MAX_DEPTH, maxAliases: e.GRAPHQL_MAX_ALIASES, maxCost: e.GRAPHQL_MAX_COST, maxTokens: e.GRAPHQL_MAX_TOKENS },
    http: {
      corsOrigins: e.CONVOY_CORS_ORIGINS ?? (e.NODE_ENV === 'production' ? [] : 'localhost'),
      introspection: e.CONVOY_INTROSPECTION ?? (e.NODE_ENV === 'production' ? 'authenticated' : 'anonymous'),
    },
    websocket: {
      maxConnectionsPerIp: e.CONVOY_WS_MAX_CONNECTIONS_PER_IP,
      maxUnauthenticatedPerIp: e.CONVOY_WS_MAX_UNAUTHENTICATED_PER_IP,
      maxConnectionsPerCaller: e.CONVOY_WS_MAX_CONNECTIONS_PER_CALLER,
      maxOperationsPerConnection: e.CONVOY_WS_MAX_OPERATIONS_PER_CONNECTION,
      authTimeoutSeconds: e.CONVOY_WS_AUTH_TIMEOUT_SECONDS,
    },
    migrateOnStart: e.MIGRATE_ON_START,
    build: { registryUrl: e.REGISTRY_URL ?? null, timeoutSeconds: e.CONVOY_BUILD_TIMEOUT_SECONDS, concurrency: e.CONVOY_BUILD_CONCURRENCY, concurrencyPerOrganization: e.CONVOY_BUILD_CONCURRENCY_PER_ORG, allowFileGitUrls: e.CONVOY_ALLOW_FILE_GIT_URLS,
      gitCloneTimeoutSeconds: e.CONVOY_GIT_CLONE_TIMEOUT_SECONDS,
      gitConnectTimeoutSeconds: e.CONVOY_GIT_CONNECT_TIMEOUT_SECONDS,
      executor: e.CONVOY_BUILD_EXECUTOR,
      jobLeaseSeconds: e.CONVOY_JOB_LEASE_SECONDS,
      jobClaimTimeoutSeconds: e.CONVOY_JOB_CLAIM_TIMEOUT_SECONDS,
      evaluationTimeoutSeconds: e.CONVOY_EVALUATION_TIMEOUT_SECONDS,
      sandbox: { mode: e.CONVOY_BUILD_SANDBOX === 'off' ? 'off' : 'enforced', limits: { memoryMb: e.CONVOY_BUILD_MEMORY_MB, cpus: e.CONVOY_BUILD_CPUS, pids: e.CONVOY_BUILD_PIDS } },
      allowedHosts: parseHostList(e.CONVOY_BUILD_ALLOWED_HOSTS),
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
    outbound: {
      allowedHosts: parseHostList(e.CONVOY_OUTBOUND_ALLOWED_HOSTS),
      platformHosts: [e.BASE_DOMAIN, ...[e.CONVOY_PUBLIC_URL, e.DATABASE_URL, e.REDIS_URL].flatMap(hostOf)],
    },
    trustedProxies: e.CONVOY_TRUSTED_PROXIES,
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

function isAddressOrRange(entry: string): boolean {
  const [address, prefix, extra] = entry.split('/');
  const family = isIP(address);
  if (!family || extra !== undefined) return false;
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 6 ? 128 : 32));
}

function hostOf(url: string | undefined): string[] {
  if (!url) return [];
  try {
    const host = new URL(url).hostname;
    return host ? [host] : [];
  } catch {
    return [];
  }
}

/** Told with every refused key (and in .env.example). */
export const SECRET_KEY_RULE =
  'Use at least 32 random characters (e.g. `openssl rand -hex 32`): no repeated pattern, no run of 10 or more characters like aaaa or abcd or 1234, and at least 2.5 bits of Shannon entropy per character';

/**
 * Why a secret key is guessable, or null. The thresholds leave random keys alone: over a million keys of
 * `openssl rand -hex 16` (32 characters, the shortest allowed) the lowest entropy seen was 2.76 bits per
 * character and the longest run 7; `-hex 32` and base64 keys score far higher.
 */
export function secretKeyWeakness(key: string): string | null {
  const chars = [...key];
  if (chars.length < 32) return `it has ${chars.length} characters, fewer than 32`;
  if (chars.length > 4096) return 'it is longer than 4096 characters';
  for (let period = 1; period <= chars.length / 2; period++) {
    if (chars.every((c, i) => c === chars[i % period])) return `it repeats a sequence of ${period} character${period === 1 ? '' : 's'}`;
  }
  let run = 2;
  for (let i = 2; i < chars.length; i++) {
    const step = chars[i].codePointAt(0)! - chars[i - 1].codePointAt(0)!;
    run = step === chars[i - 1].codePointAt(0)! - chars[i - 2].codePointAt(0)! ? run + 1 : 2;
    if (run >= 10) return 'it contains a run of 10 or more evenly spaced characters (like aaaa, abcd or 1234)';
  }
  const counts = new Map<string, number>();
  for (const c of chars) counts.set(c, (counts.get(c) ?? 0) + 1);
  let entropy = 0;
  for (const n of counts.values()) entropy -= (n / chars.length) * Math.log2(n / chars.length);
  if (entropy < 2.5) return `it has ${entropy.toFixed(2)} bits of Shannon entropy per character, under 2.5`;
  return null;
}

/** A browser origin as the Origin header carries it: scheme://host[:port], nothing else. */
function isOrigin(entry: string): boolean {
  try {
    const url = new URL(entry);
    return (url.protocol === 'https:' || url.protocol === 'http:') && url.origin === entry;
  } catch {
    return false;
  }
}

let processKey: string | undefined;
function randomKey(): string {
  processKey ??= globalThis.crypto.randomUUID() + globalThis.crypto.randomUUID();
  return processKey;
}

import type Docker from 'dockerode';
import type { App } from '../app.js';
import type { BuildSandboxStatus } from '../platform/builder/index.js';
import { pingDocker } from '../platform/docker/client.js';
import { readJobHealth, type JobHealth } from '../platform/queue/queues.js';

type Check = { ok: boolean; latencyMs: number; error?: string };
/** buildSandbox: how tenant builds are isolated here ('unavailable': they are refused); it does not affect `ready`. */
/**
 * jobs: the controllers' scheduled jobs (last success, last failure), read from Redis; informational like
 * buildSandbox, they do not affect `ready` (this endpoint is the API's, which serves without a controller).
 */
export type ReadinessReport = {
  ready: boolean;
  buildSandbox: BuildSandboxStatus | 'unknown';
  checks: { database: Check; redis: Check; docker: Check };
  jobs: Record<ScheduledJob, JobHealth | null>;
};

const SCHEDULED_JOBS = ['reconcile', 'workerHealth'] as const;
type ScheduledJob = (typeof SCHEDULED_JOBS)[number];

const CHECK_TIMEOUT_MS = 2000;

async function timed(fn: () => Promise<unknown>): Promise<Check> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([fn(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS)))]);
    return { ok: true, latencyMs: Math.round(performance.now() - started) };
  } catch (error) {
    return { ok: false, latencyMs: Math.round(performance.now() - started), error: (error as Error).message.slice(0, 200) };
  } finally {
    clearTimeout(timer);
  }
}

/** Each dependency reported separately, so an operator sees which one is down. */
export async function checkReadiness(app: App, docker: Docker | undefined): Promise<ReadinessReport> {
  const [database, redis, dockerCheck, buildSandbox, jobs] = await Promise.all([
    timed(() => app.db.$queryRaw`SELECT 1`),
    timed(() => app.redis.ping()),
    docker ? timed(() => pingDocker(docker, CHECK_TIMEOUT_MS)) : Promise.resolve({ ok: false, latencyMs: 0, error: 'no Docker client configured' }),
    app.builder.sandboxStatus?.() ?? Promise.resolve('unknown' as const),
    readScheduledJobs(app),
  ]);
  return { ready: database.ok && redis.ok && dockerCheck.ok, buildSandbox, checks: { database, redis, docker: dockerCheck }, jobs };
}

/** null: unknown (Redis unreachable). */
async function readScheduledJobs(app: App): Promise<ReadinessReport['jobs']> {
  const entries = await Promise.all(
    SCHEDULED_JOBS.map(async (job) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), CHECK_TIMEOUT_MS)));
      const health = await Promise.race([readJobHealth(app.redis, app.config.redisPrefix, job).catch(() => null), timeout]).finally(() => clearTimeout(timer));
      return [job, health] as const;
    }),
  );
  return Object.fromEntries(entries) as ReadinessReport['jobs'];
}

import type Docker from 'dockerode';
import type { App } from '../app.js';
import type { BuildSandboxStatus } from '../platform/builder/index.js';
import { pingDocker } from '../platform/docker/client.js';

type Check = { ok: boolean; latencyMs: number; error?: string };
/** buildSandbox: how tenant builds are isolated here ('unavailable': they are refused); it does not affect `ready`. */
export type ReadinessReport = { ready: boolean; buildSandbox: BuildSandboxStatus | 'unknown'; checks: { database: Check; redis: Check; docker: Check } };

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
  const [database, redis, dockerCheck, buildSandbox] = await Promise.all([
    timed(() => app.db.$queryRaw`SELECT 1`),
    timed(() => app.redis.ping()),
    docker ? timed(() => pingDocker(docker, CHECK_TIMEOUT_MS)) : Promise.resolve({ ok: false, latencyMs: 0, error: 'no Docker client configured' }),
    app.builder.sandboxStatus?.() ?? Promise.resolve('unknown' as const),
  ]);
  return { ready: database.ok && redis.ok && dockerCheck.ok, buildSandbox, checks: { database, redis, docker: dockerCheck } };
}

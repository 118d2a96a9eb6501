// A scheduled job that fails says so (issue 19, item 7): the controller logs each failed reconcile run
// as a warning with its error, and the API's /readyz shows the job's last success and last failure.
// The reconciler's PostgreSQL is a private cluster the test stops.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { createApp, type App } from '../src/app.js';
import { startServer, type RunningServer } from '../src/graphql/server.js';
import { createLogger } from '../src/platform/logging/logger.js';
import { applyPendingMigrations } from '../src/platform/db/migrations.js';
import { deleteRedisPrefix, REDIS_URL } from './helpers/database.js';
import { DEPLOY_TEST_SETTINGS } from './helpers/api.js';
import { startConvoyProcess, startPrivatePostgres, type ConvoyProcess, type PrivatePostgres } from './helpers/private-services.js';
import { waitFor } from './helpers/wait.js';

type JobHealth = { lastSuccessAt: string | null; lastErrorAt: string | null; lastError: string | null };

let postgres: PrivatePostgres;
let app: App;
let server: RunningServer;
let controller: ConvoyProcess;
const prefix = `convoy-jobs-${randomBytes(4).toString('hex')}`;

beforeAll(async () => {
  postgres = await startPrivatePostgres();
  const databaseUrl = await postgres.createDatabase();
  await applyPendingMigrations(databaseUrl);
  const env = {
    ...DEPLOY_TEST_SETTINGS,
    CONVOY_RECONCILE_INTERVAL_SECONDS: '1',
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    REDIS_PREFIX: prefix,
    CONVOY_SECRET_KEY: randomBytes(32).toString('hex'),
    MIGRATE_ON_START: 'false',
  };
  app = await createApp(loadConfig({ ...env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent' }), { log: createLogger('silent') });
  server = await startServer(app, { port: 0, host: '127.0.0.1', docker: app.docker });
  controller = startConvoyProcess('controller', env);
});
afterAll(async () => {
  await controller?.stop();
  await server?.close();
  await app?.close();
  await postgres?.close();
  await deleteRedisPrefix(prefix);
});

async function reconcileHealth(): Promise<JobHealth | null> {
  const response = await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(5000) });
  const body = (await response.json()) as { jobs?: { reconcile: JobHealth | null } };
  return body.jobs?.reconcile ?? null;
}

const warnings = (job: string) =>
  controller.output().split('\n').filter((line) => line.includes(`scheduled job ${job} failed`)).map((line) => JSON.parse(line) as { level: number; err?: { message: string } });

describe('scheduled job health', () => {
  it('logs a failed reconcile run and shows its last error and last success in /readyz', async () => {
    await waitFor('a successful reconcile run', async () => !!(await reconcileHealth())?.lastSuccessAt, 60_000, 200);
    expect(warnings('reconcile')).toEqual([]);

    await postgres.stop();
    const stoppedAt = new Date();
    await waitFor('the failure in /readyz', async () => {
      const health = await reconcileHealth();
      return !!health?.lastErrorAt && new Date(health.lastErrorAt) >= stoppedAt;
    }, 30_000, 300);
    const failed = (await reconcileHealth())!;
    expect(failed.lastError).toBeTruthy();
    expect(new Date(failed.lastSuccessAt!).getTime()).toBeLessThan(new Date(failed.lastErrorAt!).getTime());
    await waitFor('the warning in the log', () => warnings('reconcile').length > 0, 10_000, 200);
    expect(warnings('reconcile')[0]).toMatchObject({ level: 40, err: { message: expect.any(String) } });

    await postgres.start();
    await waitFor('a successful run after PostgreSQL is back', async () => {
      const health = await reconcileHealth();
      return !!health?.lastSuccessAt && new Date(health.lastSuccessAt) > new Date(failed.lastErrorAt!);
    }, 60_000, 300);
  });
});

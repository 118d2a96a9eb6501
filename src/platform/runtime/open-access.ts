// The control plane's own services should ask for credentials: a second wall behind the build sandbox.
// At start Convoy tries its PostgreSQL and Redis *without* the password it was given; when either lets
// it in, the operator is warned (the API and the controller still start: many dev machines run so).
import pg from 'pg';
import { Redis } from 'ioredis';

export type OpenAccessFinding = { service: 'postgresql' | 'redis'; message: string };

const PROBE_TIMEOUT_MS = 3_000;

/** What accepts Convoy without credentials; an unreachable service is not a finding (readiness reports it). */
export async function findOpenAccess(urls: { databaseUrl: string; redisUrl: string }): Promise<OpenAccessFinding[]> {
  const [database, redis] = await Promise.all([postgresWithoutPassword(urls.databaseUrl), redisWithoutPassword(urls.redisUrl)]);
  return [database, redis].filter((finding): finding is OpenAccessFinding => finding !== null);
}

async function postgresWithoutPassword(databaseUrl: string): Promise<OpenAccessFinding | null> {
  const url = new URL(databaseUrl);
  const user = decodeURIComponent(url.username) || 'the default user';
  url.password = '';
  const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: PROBE_TIMEOUT_MS, password: () => '' });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return {
      service: 'postgresql',
      message: `PostgreSQL lets ${user} in without a password (trust authentication): anything that reaches its port owns Convoy's data. Give the role a password and use scram-sha-256 in pg_hba.conf`,
    };
  } catch {
    return null;
  } finally {
    await client.end().catch(() => {});
  }
}

async function redisWithoutPassword(redisUrl: string): Promise<OpenAccessFinding | null> {
  const url = new URL(redisUrl);
  url.username = '';
  url.password = '';
  const redis = new Redis(url.toString(), { lazyConnect: true, connectTimeout: PROBE_TIMEOUT_MS, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  redis.on('error', () => {});
  try {
    await redis.connect();
    if ((await redis.ping()) !== 'PONG') return null;
    return {
      service: 'redis',
      message: 'Redis accepts commands without a password: anything that reaches its port can read queues and cancel builds. Set requirepass and put the password in REDIS_URL (redis://:password@host:6379/0)',
    };
  } catch {
    return null;
  } finally {
    redis.disconnect();
  }
}

/** Logs each finding as a warning; never delays or stops the start. */
export function warnAboutOpenAccess(urls: { databaseUrl: string; redisUrl: string }, log: { warn(fields: object, message: string): void }): void {
  void findOpenAccess(urls).then(
    (findings) => findings.forEach((finding) => log.warn({ dependency: finding.service }, finding.message)),
    () => {},
  );
}

// Each test file gets its own PostgreSQL database, cloned from a migrated template (fast), and its
// own Redis key prefix; both are removed afterwards so files can run in parallel on shared servers.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import { migrationsDir } from '../../src/platform/db/migrations.js';

export const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? redisUrlFromSetup() ?? 'redis://127.0.0.1:6379/0';

/** scripts/setup.sh gives the machine's Redis a password and keeps it here; `npx vitest` alone finds it too. */
function redisUrlFromSetup(): string | undefined {
  const file = process.env.CONVOY_CREDENTIALS_FILE ?? '/var/lib/convoy/credentials.env';
  const password = existsSync(file) ? /^CONVOY_REDIS_PASSWORD=(\S+)$/m.exec(readFileSync(file, 'utf8'))?.[1] : undefined;
  return password ? `redis://:${password}@127.0.0.1:6379/0` : undefined;
}

/** Named after the migrations' content, so a changed migration gets a fresh template. */
export function templateDatabaseName(): string {
  const hash = createHash('sha256');
  for (const folder of readdirSync(migrationsDir).sort()) {
    if (folder.endsWith('.toml')) continue;
    hash.update(folder).update(readFileSync(join(migrationsDir, folder, 'migration.sql')));
  }
  return `convoy_tpl_${hash.digest('hex').slice(0, 16)}`;
}

export function databaseUrl(name: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

export async function createTestDatabase(): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `convoy_t_${randomBytes(6).toString('hex')}`;
  // CREATE DATABASE ... TEMPLATE fails if another session is connected to the template at that moment.
  for (let attempt = 0; ; attempt++) {
    try {
      await adminQuery(`CREATE DATABASE "${name}" TEMPLATE "${templateDatabaseName()}"`);
      break;
    } catch (error) {
      if (attempt >= 20 || !/being accessed by other users/.test((error as Error).message)) throw error;
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    }
  }
  return { name, url: databaseUrl(name), drop: () => adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) };
}

export function uniqueRedisPrefix(): string {
  return `convoy-test-${randomBytes(5).toString('hex')}`;
}

export async function deleteRedisPrefix(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

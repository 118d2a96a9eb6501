import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../../generated/prisma/client.js';

export type Db = PrismaClient;
export { Prisma } from '../../generated/prisma/client.js';

export type DbOptions = {
  connectionString: string;
  poolSize: number;
  /** Called for every SQL statement; tests use it to guard against N+1 queries. */
  onQuery?: (sql: string) => void;
  /** Connection-level errors (a server restart, a terminated backend); pg would crash the process without a handler. */
  onError?: (error: Error) => void;
};

export function createDb({ connectionString, poolSize, onQuery, onError = () => {} }: DbOptions): { db: Db; pool: pg.Pool } {
  // The adapter's pool defaults wait forever for a free connection; fail fast instead.
  const pool = new pg.Pool({ connectionString, max: poolSize, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 30_000 });
  pool.on('error', onError);
  pool.on('connect', (client) => client.on('error', onError));
  const db = new PrismaClient({
    adapter: new PrismaPg(pool),
    log: onQuery ? [{ emit: 'event', level: 'query' }] : [],
  });
  if (onQuery) (db as unknown as { $on(e: 'query', cb: (e: { query: string }) => void): void }).$on('query', (e) => onQuery(e.query));
  return { db, pool };
}

// Fault tests need dependencies they may stop, kill and wipe: a Redis and a PostgreSQL cluster of their
// own on free ports (the machine's shared servers are never touched), and Convoy's processes as real
// child processes (`node --import tsx src/main/<kind>.ts`, so a kill hits the process itself).
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import pg from 'pg';
import { Redis } from 'ioredis';
import { freeHostPort } from './swarm.js';
import { waitFor } from './wait.js';

const repo = fileURLToPath(new URL('../..', import.meta.url));

export type PrivateRedis = {
  url: string;
  port: number;
  /** Kills the server (SIGKILL): nothing is kept, as with the machine's Redis. */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty. */
  start(): Promise<void>;
  /** Kill, then start: Redis lost all its data. */
  restartEmpty(): Promise<void>;
  close(): Promise<void>;
};

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freeHostPort();
  const url = `redis://127.0.0.1:${port}/0`;
  let server: ResultPromise | undefined;
  const start = async () => {
    server = execa('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { reject: false, stdio: 'ignore' });
    await waitFor(`a private Redis on ${port}`, () => ping(url), 10_000, 50);
  };
  const kill = async () => {
    server?.kill('SIGKILL');
    await server;
    server = undefined;
  };
  await start();
  return { url, port, kill, start, restartEmpty: async () => (await kill(), await start()), close: kill };
}

async function ping(url: string): Promise<boolean> {
  const redis = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false });
  redis.on('error', () => {});
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

export type PrivatePostgres = {
  /** A superuser URL for the `postgres` database (trust auth on loopback). */
  adminUrl: string;
  /** A URL for a database of this name (create it with `createDatabase`). */
  urlFor(database: string): string;
  createDatabase(name?: string): Promise<string>;
  port: number;
  /** Stops the cluster (fast shutdown: connections are cut). */
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
};

/** A throwaway PostgreSQL cluster (initdb into a temp dir, run as the postgres user when we are root). */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = await postgresBinDir();
  const port = await freeHostPort();
  const dir = await mkdtemp(join(tmpdir(), 'convoy-pg-'));
  const data = join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  await chmod(dir, 0o777);
  const run = (tool: string, args: string[]) =>
    asRoot ? execa('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args], { cwd: dir }) : execa(join(bin, tool), args, { cwd: dir });
  await run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const pgCtl = (action: 'start' | 'stop') =>
    action === 'start'
      ? run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`, 'start'])
      : run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
  await pgCtl('start');
  const adminUrl = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  const urlFor = (database: string) => `postgresql://postgres@127.0.0.1:${port}/${database}`;
  return {
    adminUrl,
    urlFor,
    port,
    async createDatabase(name = `convoy_f_${randomBytes(5).toString('hex')}`) {
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name}"`);
      } finally {
        await client.end();
      }
      return urlFor(name);
    },
    stop: async () => void (await pgCtl('stop')),
    start: async () => void (await pgCtl('start')),
    async close() {
      await pgCtl('stop').catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function postgresBinDir(): Promise<string> {
  const versions = (await readdir('/usr/lib/postgresql')).sort((a, b) => Number(b) - Number(a));
  if (!versions.length) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql');
  return `/usr/lib/postgresql/${versions[0]}/bin`;
}

export type ConvoyProcess = {
  kind: 'api' | 'controller' | 'dev';
  /** Everything it printed so far (JSON log lines). */
  output(): string;
  /** SIGKILL of the node process itself (not a wrapper). */
  kill(): Promise<void>;
  /** SIGTERM, waiting for it to exit. */
  stop(): Promise<void>;
  exited: Promise<unknown>;
};

/** `src/main/<kind>.ts` as a child process with these environment variables on top of this process's. */
export function startConvoyProcess(kind: 'api' | 'controller' | 'dev', env: Record<string, string>): ConvoyProcess {
  const child = execa('node', ['--import', join(repo, 'node_modules/tsx/dist/loader.mjs'), join(repo, `src/main/${kind}.ts`)], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    cwd: repo,
    reject: false,
    all: true,
  });
  let output = '';
  child.all!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return {
    kind,
    output: () => output,
    async kill() {
      child.kill('SIGKILL');
      await child;
    },
    async stop() {
      child.kill('SIGTERM');
      await child;
    },
    exited: child,
  };
}

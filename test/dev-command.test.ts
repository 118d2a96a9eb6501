// `npm run dev` starts the API before its embedded agent registers through it: no connection refused at start.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestDatabase, deleteRedisPrefix, REDIS_URL, uniqueRedisPrefix } from './helpers/database.js';
import { freeHostPort } from './helpers/swarm.js';
import { waitFor } from './helpers/wait.js';

const repo = fileURLToPath(new URL('..', import.meta.url));
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let workDir: string;
const prefix = uniqueRedisPrefix();

beforeAll(async () => {
  database = await createTestDatabase();
  workDir = await mkdtemp(join(tmpdir(), 'convoy-dev-test-'));
});

afterAll(async () => {
  await deleteRedisPrefix(prefix).catch(() => undefined);
  await database?.drop();
  await rm(workDir, { recursive: true, force: true });
});

it('registers the embedded agent at the first try, with no ECONNREFUSED in the log', async () => {
  const env = {
    ...process.env,
    NODE_ENV: 'development',
    DATABASE_URL: database.url,
    REDIS_URL,
    REDIS_PREFIX: prefix,
    CONVOY_SECRET_KEY: randomBytes(32).toString('hex'),
    MIGRATE_ON_START: 'false',
    PORT: String(await freeHostPort()),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
  };
  // A working directory of its own: the agent keeps its state file under it.
  const dev = execa('node', ['--import', join(repo, 'node_modules/tsx/dist/loader.mjs'), join(repo, 'src/main/dev.ts')], { env, cwd: workDir, reject: false, all: true });
  let output = '';
  dev.all!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  try {
    await waitFor('the embedded agent to register', () => output.includes('registered; state saved') || dev.exitCode !== null, 60_000);
    expect(output).toContain('registered; state saved');
    expect(output).not.toContain('ECONNREFUSED');
    expect(output).not.toMatch(/failed; retrying/);
  } finally {
    dev.kill('SIGTERM');
    await dev;
  }
}, 90_000);

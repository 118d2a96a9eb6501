// Convoy warns when its own PostgreSQL or Redis lets it in without credentials (the second wall).
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { findOpenAccess } from '../src/platform/runtime/open-access.js';
import { ADMIN_URL } from './helpers/database.js';
import { waitFor } from './helpers/wait.js';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A Redis of the test's own on a free port; with a password when given one. */
async function startRedis(password?: string): Promise<{ url: string; process: ChildProcess }> {
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...(password ? ['--requirepass', password] : [])];
  const child = spawn('redis-server', args, { stdio: 'ignore' });
  const url = `redis://${password ? `:${password}@` : ''}127.0.0.1:${port}/0`;
  await waitFor('a test Redis', async () => {
    const probe = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => {});
    try {
      await probe.connect();
      return (await probe.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      probe.disconnect();
    }
    }, 10_000);
  return { url, process: child };
}

describe('open access to the control plane services', () => {
  let open: { url: string; process: ChildProcess };
  let guarded: { url: string; process: ChildProcess };

  beforeAll(async () => {
    [open, guarded] = await Promise.all([startRedis(), startRedis('a-test-password-1234')]);
  });

  afterAll(() => {
    open?.process.kill();
    guarded?.process.kill();
  });

  it('warns about a trust-auth PostgreSQL and a Redis without a password, even when the URLs carry passwords', async () => {
    const withPassword = new URL(ADMIN_URL);
    withPassword.password = 'not-checked-by-trust';
    const redisWithPassword = new URL(open.url);
    redisWithPassword.password = 'ignored';
    const findings = await findOpenAccess({ databaseUrl: withPassword.toString(), redisUrl: redisWithPassword.toString() });
    expect(findings.map((f) => f.service).sort()).toEqual(['postgresql', 'redis']);
    expect(findings.find((f) => f.service === 'postgresql')!.message).toMatch(/without a password/);
    // The finding never repeats the password it was given.
    expect(JSON.stringify(findings)).not.toContain('not-checked-by-trust');
  });

  it('finds nothing to warn about for a Redis with requirepass, or for services it cannot reach', async () => {
    const findings = await findOpenAccess({ databaseUrl: 'postgresql://nobody:x@127.0.0.1:1/none', redisUrl: guarded.url });
    expect(findings).toEqual([]);
  });
});

// Tenant builds and evaluations against the real Nix store, as a hostile tenant would write them:
// they must reach nothing of the host's network (databases, Redis, the API, Swarm, the metadata
// address), see nothing of other builds, the host's processes or the real store, run no code at
// evaluation time, and stop at their memory and time limits.
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { probeSandbox } from '../../src/platform/builder/sandbox.js';
import { ADMIN_URL, REDIS_URL } from '../helpers/database.js';
import { NIX_LIB_DIR, busyboxExpression, nixString, nonce, testNixBuilder } from '../helpers/nix.js';

const builder = testNixBuilder();
// The hash of an empty file: a fixed-output build that reaches nothing writes exactly that.
const EMPTY_FILE_SHA256 = 'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=';

/** A listener like the API's, on loopback and on every address; counts who got through. */
class ApiLikeServers {
  connections = 0;
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  ports: { loopback: number; any: number } = { loopback: 0, any: 0 };

  async start(): Promise<void> {
    this.ports.loopback = await this.listen('127.0.0.1');
    this.ports.any = await this.listen('0.0.0.0');
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await Promise.all(this.servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }

  private listen(host: string): Promise<number> {
    const server = createServer((socket: Socket) => {
      this.connections++;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.end('HTTP/1.0 200 OK\r\n\r\nsecret');
    });
    this.servers.push(server);
    return new Promise((resolve) => server.listen(0, host, () => resolve((server.address() as { port: number }).port)));
  }
}

/** The host's own non-loopback IPv4 addresses (Docker bridges included). */
function hostAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).filter((a) => a.family === 'IPv4' && !a.internal).map((a) => a.address));
}

/**
 * A PostgreSQL startup packet (user postgres, trust auth on loopback) and one simple query, as
 * printf octal escapes: what a builder can send with busybox nc.
 */
function postgresPayload(sql: string): string {
  const params = Buffer.from('user\0postgres\0database\0postgres\0\0');
  const startup = Buffer.alloc(8);
  startup.writeInt32BE(8 + params.length, 0);
  startup.writeInt32BE(196608, 4);
  const queryText = Buffer.from(`${sql}\0`);
  const query = Buffer.alloc(5);
  query.write('Q', 0);
  query.writeInt32BE(4 + queryText.length, 1);
  return [...Buffer.concat([startup, params, query, queryText])].map((b) => `\\${b.toString(8).padStart(3, '0')}`).join('');
}

/**
 * A builder script that tries every host target; each line of its report is `reached <target>` or
 * `blocked <target>`. It also tries to write to PostgreSQL and Redis.
 */
function probeScript(targets: Array<{ host: string; port: number }>, redisKey: string): string {
  const attempts = targets.map(({ host, port }) => `if echo | timeout 3 nc ${host} ${port} >/dev/null 2>&1; then echo "reached ${host}:${port}"; else echo "blocked ${host}:${port}"; fi`);
  return [
    'report=$TMPDIR/report',
    '{',
    ...attempts,
    `(printf "$pgPayload"; sleep 1) | timeout 3 nc 127.0.0.1 5432 >/dev/null 2>&1 || true`,
    `(printf 'SET ${redisKey} pwned\\r\\n'; sleep 1) | timeout 3 nc 127.0.0.1 6379 >/dev/null 2>&1 || true`,
    '} > $report',
  ].join('\n');
}

describe('the build sandbox', () => {
  const servers = new ApiLikeServers();
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  const markerDirs: string[] = [];
  // Ids whose builds tried to write to PostgreSQL and Redis: cleaned up should a write ever get through.
  const attackIds: string[] = [];

  beforeAll(async () => {
    await servers.start();
    await redis.connect();
    await admin.connect();
  });

  afterAll(async () => {
    await servers.stop();
    for (const id of attackIds) {
      await redis.del(`convoy-sandbox-${id}`);
      await admin.query(`DROP DATABASE IF EXISTS convoy_sandbox_${id}`);
    }
    redis.disconnect();
    await admin.end();
    await Promise.all(markerDirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('is enforced on this machine', async () => {
    expect(await probeSandbox()).toMatchObject({ available: true });
    expect(await builder.sandboxStatus()).toBe('enforced');
    expect(await testNixBuilder({ sandbox: { mode: 'off', limits: { memoryMb: 64, cpus: 1, pids: 64 } } }).sandboxStatus()).toBe('off (single-tenant)');
  });

  function targets(): Array<{ host: string; port: number }> {
    return [
      { host: '127.0.0.1', port: 5432 },
      { host: '127.0.0.1', port: 6379 },
      { host: '127.0.0.1', port: 2377 },
      { host: '127.0.0.1', port: servers.ports.loopback },
      { host: '127.0.0.1', port: servers.ports.any },
      ...hostAddresses().map((host) => ({ host, port: servers.ports.any })),
      { host: '169.254.169.254', port: 80 },
    ];
  }

  function attackId(): string {
    const id = nonce();
    attackIds.push(id);
    return id;
  }

  async function expectHostUntouched(id: string): Promise<void> {
    expect(servers.connections).toBe(0);
    expect(await redis.exists(`convoy-sandbox-${id}`)).toBe(0);
    const databases = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [`convoy_sandbox_${id}`]);
    expect(databases.rowCount).toBe(0);
  }

  it('a build reaches nothing of the host: loopback services, the API, other addresses, the metadata address', async () => {
    const id = attackId();
    const all = targets();
    const expression = `{ convoyBusybox }:
(import ${nixString(NIX_LIB_DIR)}).bootstrap.runBusybox {
  name = "net-probe-${id}";
  busybox = convoyBusybox;
  env = { pgPayload = ${nixString(postgresPayload(`CREATE DATABASE convoy_sandbox_${id}`))}; };
  script = ${nixString(`${probeScript(all, `convoy-sandbox-${id}`)}\ncp $report $out`)};
}`;
    const result = await builder.build({ kind: 'expression', expression });
    expect(result.error).toBeUndefined();
    const report = (await readFile(result.outPath!, 'utf8')).trim().split('\n');
    expect(report).toEqual(all.map(({ host, port }) => `blocked ${host}:${port}`));
    await expectHostUntouched(id);
  });

  it('a fixed-output build (which keeps the network in Nix\'s own sandbox) reaches nothing of the host either', async () => {
    const id = attackId();
    const all = targets();
    // The output must be empty to match its hash: anything reached makes the build fail.
    const expression = `{ convoyBusybox }:
(import ${nixString(NIX_LIB_DIR)}).bootstrap.runBusybox {
  name = "fod-net-probe-${id}";
  busybox = convoyBusybox;
  env = {
    pgPayload = ${nixString(postgresPayload(`CREATE DATABASE convoy_sandbox_${id}`))};
    outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = "${EMPTY_FILE_SHA256}";
  };
  script = ${nixString(`${probeScript(all, `convoy-sandbox-${id}`)}\ncat $report >&2\ngrep reached $report > $out || true`)};
}`;
    const logs: string[] = [];
    const result = await builder.build({ kind: 'expression', expression }, { onLog: (line) => logs.push(line) });
    expect(logs.filter((l) => l.startsWith('reached'))).toEqual([]);
    expect(logs.filter((l) => l.startsWith('blocked'))).toEqual(all.map(({ host, port }) => `blocked ${host}:${port}`));
    expect(result.error).toBeUndefined();
    expect(result).toMatchObject({ status: 'SUCCEEDED' });
    await expectHostUntouched(id);
  });

  describe('import-from-derivation', () => {
    /** An expression whose evaluation would build (and run) a derivation that leaves a marker file. */
    async function ifdExpression(): Promise<{ expression: string; marker: string }> {
      const dir = await mkdtemp(join(tmpdir(), 'convoy-ifd-'));
      markerDirs.push(dir);
      await chmod(dir, 0o777);
      const marker = join(dir, 'ran');
      const inner = busyboxExpression(`ifd-${nonce()}`, `echo ran > ${marker} || true; echo '"evaluated"' > $out`);
      return { expression: `{ convoyBusybox }: throw (builtins.readFile ((${inner}) { inherit convoyBusybox; }))`, marker };
    }

    it('is refused when a template is saved (evaluation) and nothing runs', async () => {
      const { expression, marker } = await ifdExpression();
      const result = await builder.evaluate({ kind: 'expression', expression });
      expect(result).toEqual({ ok: false, error: expect.stringContaining("the option 'allow-import-from-derivation' is disabled") });
      expect(existsSync(marker)).toBe(false);
    });

    it('is refused in a service build and nothing runs', async () => {
      const { expression, marker } = await ifdExpression();
      const result = await builder.build({ kind: 'expression', expression });
      expect(result).toMatchObject({ status: 'FAILED', error: expect.stringContaining('allow-import-from-derivation') });
      expect(existsSync(marker)).toBe(false);
    });
  });

  it('builds run as different users and see nothing of each other, the real store, the host processes or Docker', async () => {
    const id = nonce();
    const script = (me: string, other: string) => `
      echo "secret of ${me}" > /tmp/convoy-secret-${id}-${me}
      chmod 600 /tmp/convoy-secret-${id}-${me}
      sleep 2
      mkdir -p $out
      awk '{ print $2 }' /proc/self/uid_map > $out/host-uid
      cat /tmp/convoy-secret-${id}-${other} > $out/other-secret 2>/dev/null || true
      touch /nix/store/convoy-escape-${id}-${me} 2>/dev/null || true
      cat /proc/${process.pid}/cmdline > $out/test-cmdline 2>/dev/null || true
      if [ -e /var/run/docker.sock ]; then echo visible > $out/docker; fi
    `;
    const [a, b] = await Promise.all([
      builder.build({ kind: 'expression', expression: busyboxExpression(`users-a-${id}`, script('a', 'b')) }),
      builder.build({ kind: 'expression', expression: busyboxExpression(`users-b-${id}`, script('b', 'a')) }),
    ]);
    expect([a.status, b.status]).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    const uidA = (await readFile(join(a.outPath!, 'host-uid'), 'utf8')).trim();
    const uidB = (await readFile(join(b.outPath!, 'host-uid'), 'utf8')).trim();
    expect(uidA).toMatch(/^\d+$/);
    expect(uidA).not.toBe(uidB);
    for (const out of [a.outPath!, b.outPath!]) {
      expect(await readFile(join(out, 'other-secret'), 'utf8')).toBe('');
      expect(await readFile(join(out, 'test-cmdline'), 'utf8').catch(() => '')).not.toMatch(/node|vitest/);
      expect(existsSync(join(out, 'docker'))).toBe(false);
    }
    expect(existsSync(`/nix/store/convoy-escape-${id}-a`)).toBe(false);
    expect(existsSync(`/nix/store/convoy-escape-${id}-b`)).toBe(false);
  });

  it('a file one build leaves in /tmp is gone for the next build', async () => {
    const id = nonce();
    const first = await builder.build({ kind: 'expression', expression: busyboxExpression(`leaves-${id}`, `echo "left by ${id}" > /tmp/convoy-left-${id}; chmod 600 /tmp/convoy-left-${id}; echo done > $out`) });
    const second = await builder.build({ kind: 'expression', expression: busyboxExpression(`finds-${id}`, `cat /tmp/convoy-left-${id} > $out 2>/dev/null || echo -n > $out`) });
    expect([first.status, second.status]).toEqual(['SUCCEEDED', 'SUCCEEDED']);
    expect(await readFile(second.outPath!, 'utf8')).toBe('');
    expect(existsSync(`/tmp/convoy-left-${id}`)).toBe(false);
  });

  it('stops a build at its memory limit with a clear reason', async () => {
    const limited = testNixBuilder({ sandbox: { mode: 'enforced', limits: { memoryMb: 64, cpus: 1, pids: 256 } } });
    const id = nonce();
    // 256 MB held in a shell variable: really allocated, four times the limit.
    const logs: string[] = [];
    const result = await limited.build({ kind: 'expression', expression: busyboxExpression(`memory-${id}`, 'big=$(head -c 268435456 /dev/zero | tr "\\0" a); echo ${#big} > $out') }, { onLog: (line) => logs.push(line) });
    expect(result).toMatchObject({ status: 'FAILED', error: expect.stringMatching(/^memory limit of 64 MB reached/) });
    expect(logs).toContainEqual(expect.stringMatching(/^nix-store runs sandboxed: no network, at most 64 MB of memory, 1 CPUs and 256 processes \(cgroup build-[0-9a-f]+\)$/));
    await expectCgroupsRemoved(logs);
  });

  it('stops a build at its time limit with a clear reason, leaving no cgroup behind', async () => {
    const id = nonce();
    const logs: string[] = [];
    const result = await builder.build({ kind: 'expression', expression: busyboxExpression(`time-${id}`, 'sleep 60; echo never > $out') }, { timeoutMs: 2_000, onLog: (line) => logs.push(line) });
    expect(result).toMatchObject({ status: 'TIMED_OUT', error: 'time limit reached: timed out after 2 s' });
    await expectCgroupsRemoved(logs);
  });

  it('still fetches from a binary cache (outside the build namespace) instead of building', async () => {
    const id = nonce();
    const cache = await mkdtemp(join(tmpdir(), 'convoy-cache-'));
    markerDirs.push(cache);
    const source = { kind: 'expression' as const, expression: busyboxExpression(`cached-${id}`, `echo "building ${id}"; echo ${id} > $out`) };
    const first = await builder.build(source);
    expect(first.status).toBe('SUCCEEDED');
    // A signed file:// cache holding the output, which then leaves the store.
    await execa('nix-store', ['--generate-binary-cache-key', 'convoy-test-1', join(cache, 'key.sec'), join(cache, 'key.pub')]);
    await execa('nix', ['--extra-experimental-features', 'nix-command', 'store', 'sign', '--key-file', join(cache, 'key.sec'), first.outPath!]);
    await execa('nix', ['--extra-experimental-features', 'nix-command', 'copy', '--to', `file://${cache}/store?compression=none`, first.outPath!]);
    await execa('nix-store', ['--delete', first.outPath!]);
    expect(existsSync(first.outPath!)).toBe(false);

    const fromCache = testNixBuilder({ substituters: [`file://${cache}/store`], trustedPublicKeys: [(await readFile(join(cache, 'key.pub'), 'utf8')).trim()] });
    const logs: string[] = [];
    const second = await fromCache.build(source, { onLog: (line) => logs.push(line) });
    expect(second).toMatchObject({ status: 'SUCCEEDED', outPath: first.outPath, cacheHit: false });
    expect(await readFile(second.outPath!, 'utf8')).toBe(`${id}\n`);
    expect(logs.join('\n')).not.toContain(`building ${id}`);
  });

  it('takes its settings from the environment (egress: sandbox-egress.test.ts)', () => {
    expect(loadConfig({}).build.sandbox).toEqual({ mode: 'enforced', limits: { memoryMb: 4096, cpus: 2, pids: 4096 } });
    expect(loadConfig({ CONVOY_BUILD_SANDBOX: 'off', CONVOY_BUILD_MEMORY_MB: '512' }).build.sandbox).toMatchObject({ mode: 'off', limits: { memoryMb: 512 } });
  });
});

/** Every cgroup the build's log names is gone (each build removes its own). */
async function expectCgroupsRemoved(logs: string[]): Promise<void> {
  const names = logs.map((l) => l.match(/\(cgroup (build-[0-9a-f]+)\)$/)?.[1]).filter((n): n is string => n !== undefined);
  expect(names.length).toBeGreaterThan(0);
  const own = (await readFile('/proc/self/cgroup', 'utf8')).match(/^\d+:memory:(.*)$/m)?.[1] ?? '/';
  for (const name of names) expect(existsSync(join('/sys/fs/cgroup/memory', own, 'convoy-builds', name))).toBe(false);
}

// NixBuilder against the real Nix store: evaluation errors, streamed logs, failures, cache hits,
// cancellation and time limits. Every cold build carries a nonce so it cannot be a cache hit.
import { existsSync } from 'node:fs';
import { mkdtemp, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LogStream } from '../../src/platform/builder/builder.js';
import { nixBuilderOptionsFromEnv } from '../../src/platform/builder/nix.js';
import { busyboxExpression, nonce, processesMentioning, testNixBuilder } from '../helpers/nix.js';
import { waitFor } from '../helpers/wait.js';

const builder = testNixBuilder();

function logCollector() {
  const lines: Array<{ line: string; stream: LogStream }> = [];
  return { lines, onLog: (line: string, stream: LogStream) => lines.push({ line, stream }), text: () => lines.map((l) => l.line).join('\n') };
}

describe('evaluate', () => {
  it('instantiates a valid expression to its derivation', async () => {
    const result = await builder.evaluate({ kind: 'expression', expression: busyboxExpression('evaluate-ok', 'echo hi > "$out"') });
    expect(result).toMatchObject({ ok: true, drvPath: expect.stringMatching(/^\/nix\/store\/[a-z0-9]{32}-evaluate-ok\.drv$/) });
  });

  it('reports a syntax error with the Nix error text', async () => {
    const result = await builder.evaluate({ kind: 'expression', expression: 'let x = 1; in { y = x' });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error).toMatch(/^error: syntax error, unexpected end of file/);
    expect(result.error).not.toMatch(/warning:|--show-trace/);
  });

  it('reports an undefined variable with its location', async () => {
    const result = await builder.evaluate({ kind: 'expression', expression: 'derivation { name = "x"; builder = undefinedBuilder; system = "x"; }' });
    expect(result).toEqual({ ok: false, error: expect.stringContaining("error: undefined variable 'undefinedBuilder'") });
    expect(!result.ok && result.error).toContain('«string»:1:');
  });

  it('refuses an expression that is not a derivation', async () => {
    expect(await builder.evaluate({ kind: 'expression', expression: '{ a = 1; }' })).toEqual({ ok: false, error: 'the expression does not evaluate to a derivation' });
  });

  it('reports an error thrown by the expression itself', async () => {
    const result = await builder.evaluate({ kind: 'expression', expression: 'throw "missing setting: PORT"' });
    expect(result).toEqual({ ok: false, error: 'error: missing setting: PORT' });
  });
});

describe('build', () => {
  it('builds, streams the builder output line by line and records the outputs', async () => {
    const id = nonce();
    const logs = logCollector();
    const result = await builder.build(
      { kind: 'expression', expression: busyboxExpression(`logs-${id}`, `echo "first line ${id}"; echo "second line" >&2; mkdir -p "$out/bin"; echo ok > "$out/bin/hello"`) },
      { onLog: logs.onLog },
    );
    expect(result).toMatchObject({ status: 'SUCCEEDED', cacheHit: false });
    expect(result.error).toBeUndefined();
    expect(result.drvPath).toMatch(new RegExp(`-logs-${id}\\.drv$`));
    expect(result.outPath).toMatch(new RegExp(`^/nix/store/[a-z0-9]{32}-logs-${id}$`));
    expect(existsSync(`${result.outPath}/bin/hello`)).toBe(true);
    // The closure is the output plus nothing it does not reference (the busybox builder is not needed).
    expect(result.closure).toEqual([result.outPath]);
    expect(result.closureSizeBytes).toBeGreaterThan(0);
    expect(result.durationMs).toBeGreaterThan(0);
    expect(logs.lines).toContainEqual({ line: `first line ${id}`, stream: 'stderr' });
    expect(logs.lines).toContainEqual({ line: 'second line', stream: 'stderr' });
    expect(logs.text()).not.toContain('--add-root');
  });

  it('fails with the builder exit status and keeps its output in the log', async () => {
    const id = nonce();
    const logs = logCollector();
    const result = await builder.build(
      { kind: 'expression', expression: busyboxExpression(`fails-${id}`, `echo "compiling ${id}"; echo "fatal: missing file" >&2; exit 3`) },
      { onLog: logs.onLog },
    );
    expect(result).toEqual({
      status: 'FAILED',
      error: expect.stringMatching(new RegExp(`^error: builder for '/nix/store/[a-z0-9]{32}-fails-${id}\\.drv' failed with exit code 3`)),
      drvPath: expect.stringMatching(new RegExp(`-fails-${id}\\.drv$`)),
      outPath: expect.stringMatching(new RegExp(`-fails-${id}$`)),
      closure: [],
      closureSizeBytes: 0,
      durationMs: expect.any(Number),
      cacheHit: false,
    });
    expect(logs.text()).toContain('fatal: missing file');
    expect(logs.lines.at(-1)).toEqual({ line: expect.stringMatching(/^build failed: error: builder for/), stream: 'convoy' });
  });

  it('is a cache hit the second time: nothing rebuilt, same outputs, much faster', async () => {
    const id = nonce();
    // The sleep makes the cold build measurably slower than a lookup.
    const source = { kind: 'expression' as const, expression: busyboxExpression(`cached-${id}`, `sleep 3; echo ${id} > "$out"`) };
    const cold = await builder.build(source);
    const logs = logCollector();
    const warm = await builder.build(source, { onLog: logs.onLog });
    expect(cold).toMatchObject({ status: 'SUCCEEDED', cacheHit: false });
    expect(warm).toMatchObject({ status: 'SUCCEEDED', cacheHit: true, drvPath: cold.drvPath, outPath: cold.outPath, closure: cold.closure, closureSizeBytes: cold.closureSizeBytes });
    expect(cold.durationMs).toBeGreaterThan(3_000);
    expect(warm.durationMs).toBeLessThan(1_500);
    expect(logs.text()).toContain('cache hit');
    expect(logs.text()).not.toContain('building');
  });

  it('cancels a long build: CANCELLED within seconds and no process of it left', async () => {
    const id = nonce();
    const controller = new AbortController();
    const logs = logCollector();
    const building = builder.build(
      { kind: 'expression', expression: busyboxExpression(`long-${id}`, `echo "started ${id}"; sleep 60; echo never > "$out"`) },
      { onLog: logs.onLog, signal: controller.signal },
    );
    await waitFor('the builder to start', () => logs.text().includes(`started ${id}`), 20_000);
    expect(await processesMentioning(id)).not.toEqual([]);

    const cancelledAt = Date.now();
    controller.abort();
    const result = await building;

    expect(result.status).toBe('CANCELLED');
    expect(result.error).toBe('build cancelled');
    expect(Date.now() - cancelledAt).toBeLessThan(5_000);
    expect(await processesMentioning(id)).toEqual([]);
    expect(await processesMentioning(result.drvPath!)).toEqual([]);
  });

  it('stops a build at its time limit: TIMED_OUT and no process of it left', async () => {
    const id = nonce();
    const started = Date.now();
    const result = await builder.build(
      { kind: 'expression', expression: busyboxExpression(`slow-${id}`, `sleep 60; echo never > "$out"`) },
      { timeoutMs: 2_000 },
    );
    expect(result).toMatchObject({ status: 'TIMED_OUT', error: 'time limit reached: timed out after 2 s', cacheHit: false });
    expect(Date.now() - started).toBeLessThan(7_000);
    expect(await processesMentioning(id)).toEqual([]);
  });

  it('registers the output as a GC root when given a root directory', async () => {
    const gcRootDir = await mkdtemp(join(tmpdir(), 'convoy-gcroots-'));
    try {
      const result = await testNixBuilder({ gcRootDir }).build({ kind: 'expression', expression: busyboxExpression(`rooted-${nonce()}`, 'echo rooted > "$out"') });
      expect(result.status).toBe('SUCCEEDED');
      expect(await readlink(join(gcRootDir, basename(result.outPath!)))).toBe(result.outPath);
    } finally {
      await rm(gcRootDir, { recursive: true, force: true });
    }
  });

  it('ends CANCELLED at once when the signal is already aborted', async () => {
    const result = await builder.build({ kind: 'expression', expression: busyboxExpression(`never-${nonce()}`, 'exit 1') }, { signal: AbortSignal.abort() });
    expect(result).toMatchObject({ status: 'CANCELLED', drvPath: null });
  });

  it('does not let an expression read the node\'s files', async () => {
    for (const expression of ['builtins.readFile "/etc/hostname"', 'builtins.readFile ./.env', 'import /etc/passwd']) {
      const result = await builder.evaluate({ kind: 'expression', expression });
      expect(result).toEqual({ ok: false, error: expect.stringMatching(/^error: access to absolute path '.+' is forbidden in restricted mode/) });
    }
  });

  it('does not let an expression read Convoy secrets from the environment', async () => {
    process.env.CONVOY_TEST_SECRET = 'do-not-leak';
    try {
      const result = await builder.evaluate({ kind: 'expression', expression: 'throw "secret=${builtins.getEnv "CONVOY_TEST_SECRET"}"' });
      expect(result).toEqual({ ok: false, error: 'error: secret=' });
    } finally {
      delete process.env.CONVOY_TEST_SECRET;
    }
  });
});

describe('nixBuilderOptionsFromEnv', () => {
  it('reads binary caches, keys and limits, where an empty substituter list means no cache', () => {
    expect(nixBuilderOptionsFromEnv({ NIX_SUBSTITUTERS: 'https://cache.example.org https://cache.nixos.org', NIX_TRUSTED_PUBLIC_KEYS: 'cache.example.org-1:abc=', BUILD_TIMEOUT_SECONDS: '900', NIX_GC_ROOT_DIR: '/var/lib/convoy/gcroots' })).toEqual({
      substituters: ['https://cache.example.org', 'https://cache.nixos.org'],
      trustedPublicKeys: ['cache.example.org-1:abc='],
      defaultBuildTimeoutMs: 900_000,
      gcRootDir: '/var/lib/convoy/gcroots',
      nixPath: undefined,
      staticBusybox: undefined,
      sandbox: { mode: 'enforced', limits: { memoryMb: 4096, cpus: 2, pids: 4096 } },
    });
    expect(nixBuilderOptionsFromEnv({ CONVOY_BUILD_SANDBOX: 'off', CONVOY_BUILD_MEMORY_MB: '512', CONVOY_BUILD_CPUS: '' }).sandbox).toEqual({ mode: 'off', limits: { memoryMb: 512, cpus: 2, pids: 4096 } });
    expect(() => nixBuilderOptionsFromEnv({ CONVOY_BUILD_ALLOWED_HOSTS: 'https://cache.nixos.org/' })).toThrow(/host names or host:port/);
    expect(nixBuilderOptionsFromEnv({ NIX_SUBSTITUTERS: '' }).substituters).toEqual([]);
    expect(nixBuilderOptionsFromEnv({}).substituters).toBeUndefined();
  });
});

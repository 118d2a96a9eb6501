// Stopping a process tree that does not cooperate: it ignores SIGTERM and has a child in its own
// session (what a Nix builder looks like), so only the SIGKILL sweep can end it.
import { describe, expect, it } from 'vitest';
import { runProcessTree } from '../../src/platform/builder/process-tree.js';
import { nonce, processesMentioning } from '../helpers/nix.js';
import { waitFor } from '../helpers/wait.js';

describe('runProcessTree', () => {
  it('kills a tree that ignores SIGTERM, descendants in other sessions included', async () => {
    const marker = `marker-${nonce()}`;
    const controller = new AbortController();
    const lines: string[] = [];
    const script = `trap '' TERM; busybox setsid busybox sh -c "trap '' TERM; sleep 600; echo ${marker}-child" & echo ready; sleep 600; echo ${marker}`;
    const running = runProcessTree('/bin/busybox', ['sh', '-c', script], {
      env: { PATH: '/bin:/usr/bin' },
      signal: controller.signal,
      stopGraceMs: 500,
      onLine: (line) => lines.push(line),
    });
    await waitFor('the child in its own session', async () => (await processesMentioning(`${marker}-child`)).length > 0);

    const started = Date.now();
    controller.abort();
    const result = await running;

    expect(result.ending).toBe('cancelled');
    expect(result.exitCode).toBeUndefined();
    expect(lines).toEqual(['ready']);
    expect(Date.now() - started).toBeLessThan(3_000);
    await waitFor('every process of the tree to be gone', async () => (await processesMentioning(marker)).length === 0, 2_000);
  });

  it('reports the exit code, stdout and the tail of stderr of a finished command', async () => {
    const result = await runProcessTree('/bin/busybox', ['sh', '-c', 'echo out; echo err1 >&2; echo err2 >&2; exit 4'], { env: {}, stderrTailLines: 1 });
    expect(result).toEqual({ ending: 'exited', exitCode: 4, stdout: 'out\n', stderrTail: ['err2'], spawnError: undefined });
  });

  it('reports a command that cannot start', async () => {
    const result = await runProcessTree('/nonexistent/tool', [], { env: {} });
    expect(result.exitCode).toBeUndefined();
    expect(result.spawnError).toMatch(/ENOENT/);
  });

  it('returns when the command exits even if a process it detached still holds its output', async () => {
    const marker = `detached-${nonce()}`;
    const started = Date.now();
    const result = await runProcessTree('/bin/busybox', ['sh', '-c', `busybox setsid busybox sh -c "sleep 30; echo ${marker}" & echo done`], { env: { PATH: '/bin:/usr/bin' } });
    try {
      expect(result).toMatchObject({ ending: 'exited', exitCode: 0, stdout: 'done\n' });
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      for (const { pid } of await processesMentioning(marker)) process.kill(pid, 'SIGKILL');
    }
  });
});

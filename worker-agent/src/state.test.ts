import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadState, saveState, StateFileError } from './state.js';

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function tempDir() {
  const dir = await mkdtemp(join(tmpdir(), 'convoy-agent-state-'));
  dirs.push(dir);
  return dir;
}

describe('agent state file', () => {
  it('is absent before registering, then saved privately (0600) in a new folder and read back', async () => {
    const path = join(await tempDir(), 'nested', 'state.json');
    expect(await loadState(path)).toBeNull();
    const state = { workerId: 'w1', credential: 'cvy_wrk_secret', apiUrl: 'http://127.0.0.1:4000' };
    const previousUmask = process.umask(0o022);
    try {
      await saveState(path, state);
    } finally {
      process.umask(previousUmask);
    }
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await loadState(path)).toEqual(state);
    // Overwriting keeps it private and leaves no temporary file behind.
    await saveState(path, { ...state, workerId: 'w2' });
    expect(JSON.parse(await readFile(path, 'utf8')).workerId).toBe('w2');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it('refuses a broken or incomplete file with a message that says what to do', async () => {
    const path = join(await tempDir(), 'state.json');
    await writeFile(path, '{ not json');
    await expect(loadState(path)).rejects.toThrow(StateFileError);
    await writeFile(path, JSON.stringify({ workerId: 'w1', apiUrl: 'http://x' }));
    await expect(loadState(path)).rejects.toThrow(/credential.*remove it to register again/);
  });
});

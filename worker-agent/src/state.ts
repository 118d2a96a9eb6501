// The agent's identity on disk: written once after registering, read on every start, so a restarted
// agent keeps its worker and never spends (or needs) its single-use join token again.
import { chmod, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';

export type AgentState = { workerId: string; credential: string; apiUrl: string };

const stateSchema = z.object({ workerId: z.string().min(1), credential: z.string().min(1), apiUrl: z.string().url() });

export class StateFileError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StateFileError';
  }
}

/** Null when there is no state file yet; throws on a file that exists but is not a valid state. */
export async function loadState(path: string): Promise<AgentState | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new StateFileError(`cannot read the agent state file ${path}: ${(error as Error).message}`, { cause: error });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new StateFileError(`the agent state file ${path} is not JSON; remove it to register again with a new join token`, { cause: error });
  }
  const parsed = stateSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || 'file'}: ${issue.message}`).join('; ');
    throw new StateFileError(`the agent state file ${path} is invalid (${problems}); remove it to register again with a new join token`);
  }
  return parsed.data;
}

/**
 * Atomic and private: the credential is written to a 0600 temporary file beside the target, flushed,
 * then renamed over it, so a crash never leaves a half-written state and no other user can read it.
 */
export async function saveState(path: string, state: AgentState): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.tmp`;
  const file = await open(temporary, 'w', 0o600);
  try {
    await file.writeFile(`${JSON.stringify(state, null, 2)}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  try {
    // open()'s mode is filtered by the umask, and a leftover temporary file keeps its old mode.
    await chmod(temporary, 0o600);
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

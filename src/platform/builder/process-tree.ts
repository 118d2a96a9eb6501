// Runs a command in its own process group and can stop the whole tree: used for nix-build and git.
// Nix puts each builder in its own session (setsid) under a build user, so killing nix-build's group
// alone would orphan the builder: we first SIGTERM the group (nix-build then kills its builders
// itself), and after a grace period SIGKILL the group and every descendant seen in /proc.
import { execa } from 'execa';
import { readFile, readdir } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';

export type OutputStream = 'stdout' | 'stderr';
export type ProcessEnding = 'exited' | 'cancelled' | 'timed_out';

export interface TreeRunOptions {
  /** The complete environment: nothing is inherited from this process (it holds secrets). */
  env: Record<string, string>;
  cwd?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
  onLine?: (line: string, stream: OutputStream) => void;
  /** How long the tree gets to exit after SIGTERM before SIGKILL. */
  stopGraceMs?: number;
  /** How many trailing stderr lines to keep for error messages. */
  stderrTailLines?: number;
}

export interface TreeRunResult {
  ending: ProcessEnding;
  /** Undefined when the process was killed by a signal or could not start. */
  exitCode: number | undefined;
  stdout: string;
  stderrTail: string[];
  /** Set when the command could not be started at all (e.g. not installed). */
  spawnError?: string;
}

const DEFAULT_STOP_GRACE_MS = 5_000;
const DEFAULT_STDERR_TAIL = 200;
const STREAM_GRACE_MS = 2_000;

export async function runProcessTree(file: string, args: readonly string[], options: TreeRunOptions): Promise<TreeRunResult> {
  if (options.signal?.aborted) return { ending: 'cancelled', exitCode: undefined, stdout: '', stderrTail: [] };

  const subprocess = execa(file, args, {
    env: options.env,
    extendEnv: false,
    cwd: options.cwd,
    detached: true,
    stdin: 'ignore',
    buffer: false,
    reject: false,
  });
  const pid = subprocess.pid;
  const completion = subprocess.then((result) => result);
  if (pid === undefined) {
    const result = await completion;
    return { ending: 'exited', exitCode: undefined, stdout: '', stderrTail: [], spawnError: result.shortMessage };
  }
  trackGroup(pid);
  subprocess.once('exit', () => {
    // Whatever is left in the group is a stray; and a process that left the group (an ssh
    // ControlPersist master, a daemon) may still hold our pipes: stop waiting for them after a while.
    signalGroup(pid, 'SIGKILL');
    setTimeout(() => {
      subprocess.stdout?.destroy();
      subprocess.stderr?.destroy();
    }, STREAM_GRACE_MS).unref();
  });

  let stdout = '';
  const tailLimit = options.stderrTailLines ?? DEFAULT_STDERR_TAIL;
  const stderrTail: string[] = [];
  const stdoutDone = readLines(subprocess.stdout, (line) => {
    stdout += `${line}\n`;
    options.onLine?.(line, 'stdout');
  });
  const stderrDone = readLines(subprocess.stderr, (line) => {
    stderrTail.push(line);
    if (stderrTail.length > tailLimit) stderrTail.shift();
    options.onLine?.(line, 'stderr');
  });

  let ending: ProcessEnding = 'exited';
  let stopping: Promise<void> | undefined;
  const stop = (why: ProcessEnding) => {
    if (stopping) return;
    ending = why;
    stopping = stopProcessTree(pid, completion, options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS);
  };
  const onAbort = () => stop('cancelled');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => stop('timed_out'), options.timeoutMs);

  try {
    const result = await completion;
    await Promise.all([stdoutDone, stderrDone]);
    if (stopping) await stopping;
    return {
      ending,
      exitCode: result.exitCode,
      stdout,
      stderrTail,
      spawnError: result.exitCode === undefined && result.signal === undefined ? result.shortMessage : undefined,
    };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    untrackGroup(pid);
  }
}

function readLines(stream: Readable | null, onLine: (line: string) => void): Promise<void> {
  if (!stream) return Promise.resolve();
  return new Promise((resolve) => {
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    lines.on('line', onLine);
    lines.on('close', resolve);
    // A destroyed stream (see STREAM_GRACE_MS) closes without ending, which readline ignores.
    stream.on('close', () => lines.close());
  });
}

async function stopProcessTree(pid: number, completion: Promise<unknown>, graceMs: number): Promise<void> {
  // Descendants in other sessions (the Nix builder) are only findable while their parent lives.
  const seenBeforeTerm = await descendantsOf(pid);
  signalGroup(pid, 'SIGTERM');
  const exited = await Promise.race([completion.then(() => true), delay(graceMs).then(() => false)]);
  const seenBeforeKill = exited ? [] : await descendantsOf(pid);
  signalGroup(pid, 'SIGKILL');
  for (const proc of [...seenBeforeTerm, ...seenBeforeKill]) await killIfStillSame(proc);
  await completion;
}

interface ProcStat {
  pid: number;
  ppid: number;
  pgid: number;
  /** Start time in clock ticks since boot: with the pid, identifies a process across pid reuse. */
  startTime: string;
}

/** Reads /proc/<pid>/stat; undefined when the process is gone. */
export async function readProcStat(pid: number): Promise<ProcStat | undefined> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name is in parentheses and may itself contain spaces or parentheses.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { pid, ppid: Number(fields[1]), pgid: Number(fields[2]), startTime: fields[19] ?? '' };
}

export async function listProcesses(): Promise<ProcStat[]> {
  const names = await readdir('/proc');
  const stats = await Promise.all(names.filter((n) => /^\d+$/.test(n)).map((n) => readProcStat(Number(n))));
  return stats.filter((s): s is ProcStat => s !== undefined);
}

export async function descendantsOf(rootPid: number): Promise<ProcStat[]> {
  const all = await listProcesses();
  const childrenOf = new Map<number, ProcStat[]>();
  for (const proc of all) childrenOf.set(proc.ppid, [...(childrenOf.get(proc.ppid) ?? []), proc]);
  const found: ProcStat[] = [];
  const queue = [rootPid];
  while (queue.length > 0) {
    for (const child of childrenOf.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child.pid);
    }
  }
  return found;
}

async function killIfStillSame(proc: ProcStat): Promise<void> {
  const now = await readProcStat(proc.pid);
  if (now && now.startTime === proc.startTime) trySignal(proc.pid, 'SIGKILL');
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  trySignal(-pgid, signal);
}

function trySignal(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Detached groups do not die with us: if this process exits while builds run, take them down too.
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function trackGroup(pgid: number): void {
  liveGroups.add(pgid);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const group of liveGroups) signalGroup(group, 'SIGTERM');
  });
}

function untrackGroup(pgid: number): void {
  liveGroups.delete(pgid);
}

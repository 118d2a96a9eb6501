// Shallow clone of one branch or one commit, recording the commit SHA. Inputs are validated before
// any process starts; git runs with argument arrays, `--` before positional arguments, no system or
// global config, only the allowed protocols, and no hooks. A token reaches git only through an
// askpass helper reading an environment variable: never argv, the URL, .git/config or the logs.
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { runProcessTree, type TreeRunResult } from '../builder/process-tree.js';
import { isCommitSha, validateGitRef, validateGitUrl, type GitUrlPolicy } from './validate.js';

export interface CloneOptions extends GitUrlPolicy {
  url: string;
  /** A branch name, or a full commit SHA. */
  ref: string;
  /** Absolute path of a directory that does not exist yet (or is empty). */
  dir: string;
  /** Access token for a private repository over https. */
  token?: string;
  /** User name sent with the token; most providers accept any (GitHub: x-access-token, GitLab: oauth2). */
  username?: string;
  onLog?: (line: string) => void;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface CloneResult {
  commitSha: string;
}

export type GitErrorCode = 'INVALID_INPUT' | 'CLONE_FAILED' | 'CANCELLED' | 'TIMED_OUT';

export class GitError extends Error {
  constructor(
    readonly code: GitErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'GitError';
  }
}

const DEFAULT_CLONE_TIMEOUT_MS = 5 * 60_000;

// Reads its answers from the environment, so the token is never written to disk.
const ASKPASS_SCRIPT = `#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$CONVOY_GIT_USERNAME" ;;
  *) printf '%s\\n' "$CONVOY_GIT_TOKEN" ;;
esac
`;

export async function shallowClone(options: CloneOptions): Promise<CloneResult> {
  assertValidInput(options);
  await prepareTargetDir(options.dir);
  const redact = redactor(options.token);
  const askpass = options.token ? await writeAskpassHelper() : undefined;
  try {
    const git = (args: string[]) => runGit(args, options, redact, askpass);
    if (isCommitSha(options.ref)) {
      await git(['init', '--quiet', '--template=', '--', options.dir]);
      await git(['-C', options.dir, 'fetch', '--depth', '1', '--no-tags', '--', options.url, options.ref]);
      await git(['-C', options.dir, 'checkout', '--quiet', '--detach', 'FETCH_HEAD']);
    } else {
      await git(['clone', '--depth', '1', '--single-branch', '--no-tags', `--branch=${options.ref}`, '--template=', '--', options.url, options.dir]);
    }
    const head = await git(['-C', options.dir, 'rev-parse', '--verify', 'HEAD^{commit}']);
    const commitSha = head.stdout.trim();
    if (!isCommitSha(commitSha)) throw new GitError('CLONE_FAILED', `unexpected commit id from git: ${redact(commitSha)}`);
    if (isCommitSha(options.ref) && commitSha !== options.ref) throw new GitError('CLONE_FAILED', `checked out ${commitSha}, not ${options.ref}`);
    return { commitSha };
  } finally {
    if (askpass) await rm(dirname(askpass), { recursive: true, force: true });
  }
}

function assertValidInput(options: CloneOptions): void {
  const url = validateGitUrl(options.url, options);
  if (!url.ok) throw new GitError('INVALID_INPUT', url.reason);
  const ref = validateGitRef(options.ref);
  if (!ref.ok) throw new GitError('INVALID_INPUT', ref.reason);
  if (!isAbsolute(options.dir)) throw new GitError('INVALID_INPUT', 'clone directory must be an absolute path');
  if (options.token !== undefined && !/^[\x21-\x7e]{1,4096}$/.test(options.token)) throw new GitError('INVALID_INPUT', 'access token has invalid characters');
  if (options.username !== undefined && !/^[A-Za-z0-9._@-]{1,128}$/.test(options.username)) throw new GitError('INVALID_INPUT', 'invalid user name for the access token');
}

async function prepareTargetDir(dir: string): Promise<void> {
  try {
    if ((await readdir(dir)).length > 0) throw new GitError('INVALID_INPUT', `clone directory is not empty: ${dir}`);
  } catch (error) {
    if (error instanceof GitError) throw error;
    await mkdir(dirname(dir), { recursive: true });
  }
}

async function writeAskpassHelper(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'convoy-askpass-'));
  await chmod(dir, 0o700);
  const path = join(dir, 'askpass');
  await writeFile(path, ASKPASS_SCRIPT, { mode: 0o700 });
  return path;
}

async function runGit(args: string[], options: CloneOptions, redact: (text: string) => string, askpass: string | undefined): Promise<TreeRunResult> {
  const run = await runProcessTree('git', [...hardeningConfig(options), ...args], {
    env: gitEnvironment(options, askpass),
    signal: options.signal,
    timeoutMs: options.timeoutMs ?? DEFAULT_CLONE_TIMEOUT_MS,
    onLine: (line) => options.onLog?.(redact(line)),
    stopGraceMs: 2_000,
  });
  if (run.ending === 'cancelled') throw new GitError('CANCELLED', 'clone cancelled');
  if (run.ending === 'timed_out') throw new GitError('TIMED_OUT', 'clone timed out');
  if (run.spawnError) throw new GitError('CLONE_FAILED', `could not run git: ${redact(run.spawnError)}`);
  if (run.exitCode !== 0) {
    const detail = run.stderrTail.filter((l) => l.trim()).slice(-5).join('\n');
    throw new GitError('CLONE_FAILED', redact(detail || `git exited with code ${run.exitCode}`));
  }
  return run;
}

function hardeningConfig(policy: GitUrlPolicy): string[] {
  const settings: Record<string, string> = {
    'protocol.allow': 'never',
    'protocol.https.allow': 'always',
    'protocol.ssh.allow': 'always',
    'protocol.file.allow': policy.allowFile ? 'always' : 'never',
    'protocol.http.allow': policy.allowHttp ? 'always' : 'never',
    'core.hooksPath': '/dev/null',
    'core.fsmonitor': 'false',
    'submodule.recurse': 'false',
    'transfer.fsckObjects': 'true',
    // An empty helper list: no stored credentials are used, and the token is never stored.
    'credential.helper': '',
  };
  return Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]);
}

function gitEnvironment(options: CloneOptions, askpass: string | undefined): Record<string, string> {
  const protocols = ['https', 'ssh', ...(options.allowFile ? ['file'] : []), ...(options.allowHttp ? ['http'] : [])];
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: process.env.HOME ?? tmpdir(),
    LC_ALL: 'C',
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_ALLOW_PROTOCOL: protocols.join(':'),
    GIT_SSH_COMMAND: 'ssh -o BatchMode=yes',
  };
  if (askpass && options.token) {
    env.GIT_ASKPASS = askpass;
    env.CONVOY_GIT_USERNAME = options.username ?? 'x-access-token';
    env.CONVOY_GIT_TOKEN = options.token;
  }
  return env;
}

/** Replaces the token (raw or URL-encoded) in text that may reach logs or errors. */
function redactor(token: string | undefined): (text: string) => string {
  if (!token) return (text) => text;
  const forms = [...new Set([token, encodeURIComponent(token), Buffer.from(token).toString('base64')])];
  return (text) => forms.reduce((acc, form) => acc.split(form).join('***'), text);
}

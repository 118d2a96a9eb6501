// Shallow clone of one branch or one commit, recording the commit SHA. Inputs are validated before
// any process starts; git runs with argument arrays, `--` before positional arguments, no system or
// global config, only the allowed protocols, and no hooks. A token reaches git only through an
// askpass helper reading an environment variable: never argv, the URL, .git/config or the logs.
//
// The network side (src/platform/net): the host is resolved and every address checked before git
// runs, and git connects only to those vetted addresses, so DNS rebinding cannot swap them: over
// http(s) through CURLOPT_RESOLVE (and no redirects are followed), over ssh through HostName (the host
// key is still checked under the name, HostKeyAlias). What remains is ssh's own config: a ProxyCommand
// or ProxyJump an operator sets for a host still applies. A server that accepts and then stays silent
// fails after the connect timeout, not after the whole clone's; and every failure to reach a server
// reads the same, so clone errors cannot be used to tell open ports from closed ones.
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { connect, isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { runProcessTree, type TreeRunResult } from '../builder/process-tree.js';
import { resolveAndCheck, type HostResolver, type ResolvedAddress } from '../net/outbound-guard.js';
import { gitRemoteOf, isCommitSha, validateGitRef, validateGitUrl, type GitRemote, type GitUrlPolicy } from './validate.js';

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
  /** The whole clone (every git run together). Default 120 s. */
  timeoutMs?: number;
  /** Connecting, and any stretch of a transfer with nothing received. Default 10 s. */
  connectTimeoutMs?: number;
  /** DNS for the host check; the system resolver unless a test brings its own. */
  resolve?: HostResolver;
}

export interface CloneResult {
  commitSha: string;
  /** The commit's committer time: built images carry it as their creation time (reproducibly). */
  commitTime: Date;
}

/** REFUSED_HOST: the URL's host is internal (or resolves to an internal address) and not allowlisted. */
export type GitErrorCode = 'INVALID_INPUT' | 'REFUSED_HOST' | 'UNREACHABLE' | 'CLONE_FAILED' | 'CANCELLED' | 'TIMED_OUT';

export class GitError extends Error {
  constructor(
    readonly code: GitErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'GitError';
  }
}

export const DEFAULT_CLONE_TIMEOUT_MS = 120_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

// Reads its answers from the environment, so the token is never written to disk.
const ASKPASS_SCRIPT = `#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$CONVOY_GIT_USERNAME" ;;
  *) printf '%s\\n' "$CONVOY_GIT_TOKEN" ;;
esac
`;

export async function shallowClone(options: CloneOptions): Promise<CloneResult> {
  assertValidInput(options);
  const deadline = Date.now() + (options.timeoutMs ?? DEFAULT_CLONE_TIMEOUT_MS);
  const connection = await vettedConnection(options);
  await prepareTargetDir(options.dir);
  const redact = redactor(options.token);
  const askpass = options.token ? await writeAskpassHelper() : undefined;
  try {
    const git = (args: string[]) => runGit(args, { ...options, connection, deadline }, redact, askpass);
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
    const committed = await git(['-C', options.dir, 'show', '--no-patch', '--format=%ct', 'HEAD']);
    return { commitSha, commitTime: new Date(Number(committed.stdout.trim()) * 1000) };
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

/** Where git may connect: the host's vetted addresses (over ssh: the one that answered), or null for file://. */
type Connection = { remote: Extract<GitRemote, { host: string }>; addresses: ResolvedAddress[]; answered: ResolvedAddress } | null;

async function vettedConnection(options: CloneOptions): Promise<Connection> {
  const remote = gitRemoteOf(options.url);
  if (!remote) throw new GitError('INVALID_INPUT', 'Git URL has an invalid host name');
  if (remote.scheme === 'file') return null;
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const vetted = await resolveAndCheck(remote.host, options.outbound, { resolve: options.resolve, timeoutMs: connectTimeoutMs });
  if (!vetted.ok) throw new GitError('REFUSED_HOST', `Git URL host ${vetted.reason}`);
  // git has no connect timeout over http(s) (curl's default is 5 minutes, TLS handshake included),
  // and ssh's covers only the TCP connect: a host that drops packets, or a port that accepts and says
  // nothing, would hold the clone for its whole time limit. One probe with our timeout settles it.
  const answered = await serverAnswers(remote, vetted.addresses, connectTimeoutMs, options.signal);
  if (!answered) {
    if (options.signal?.aborted) throw new GitError('CANCELLED', 'clone cancelled');
    throw unreachable(remote.host);
  }
  return { remote, addresses: vetted.addresses, answered };
}

function unreachable(host: string): GitError {
  return new GitError('UNREACHABLE', `could not reach the Git server at ${host}`);
}

/**
 * The first address where a server answers within the timeout (a TLS handshake for https, an ssh
 * banner for ssh, a TCP connect for http, where curl's low-speed limit covers a silent server), or null.
 */
async function serverAnswers(remote: Extract<GitRemote, { host: string }>, addresses: ResolvedAddress[], timeoutMs: number, signal: AbortSignal | undefined): Promise<ResolvedAddress | null> {
  const attempt = (address: string) =>
    new Promise<boolean>((resolve) => {
      const socket =
        remote.scheme === 'https'
          ? tlsConnect({ host: address, port: remote.port, servername: isIP(remote.host) ? undefined : remote.host, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
          : connect({ host: address, port: remote.port });
      const timer = setTimeout(() => done(false), timeoutMs);
      const cancel = () => done(false);
      signal?.addEventListener('abort', cancel, { once: true });
      if (signal?.aborted) cancel();
      function done(answered: boolean) {
        clearTimeout(timer);
        signal?.removeEventListener('abort', cancel);
        socket.destroy();
        resolve(answered);
      }
      socket.once('error', () => done(false));
      if (remote.scheme === 'https') socket.once('secureConnect', () => done(true));
      else if (remote.scheme === 'ssh') socket.once('data', () => done(true));
      else socket.once('connect', () => done(true));
    });
  // The first address that answers settles it; false only once every one has failed.
  const candidates = addresses.slice(0, 8);
  const attempts = candidates.map((a) => attempt(a.address));
  return new Promise((resolve) => {
    attempts.forEach((pending, i) => void pending.then((answered) => answered && resolve(candidates[i])));
    void Promise.all(attempts).then(() => resolve(null));
  });
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

type RunContext = CloneOptions & { connection: Connection; deadline: number };

async function runGit(args: string[], options: RunContext, redact: (text: string) => string, askpass: string | undefined): Promise<TreeRunResult> {
  const run = await runProcessTree('git', [...hardeningConfig(options), ...args], {
    env: gitEnvironment(options, askpass),
    signal: options.signal,
    timeoutMs: Math.max(1, options.deadline - Date.now()),
    onLine: (line) => options.onLog?.(redact(line)),
    stopGraceMs: 2_000,
  });
  if (run.ending === 'cancelled') throw new GitError('CANCELLED', 'clone cancelled');
  if (run.ending === 'timed_out') throw new GitError('TIMED_OUT', `clone timed out after ${Math.round((options.timeoutMs ?? DEFAULT_CLONE_TIMEOUT_MS) / 1000)} s`);
  if (run.spawnError) throw new GitError('CLONE_FAILED', `could not run git: ${redact(run.spawnError)}`);
  if (run.exitCode !== 0) {
    const lines = run.stderrTail.filter((l) => l.trim());
    // Refused, reset, timed out or silent: one message, whatever the port, so errors map no ports.
    if (options.connection && lines.some((l) => CONNECTION_FAILURE.test(l))) throw unreachable(options.connection.remote.host);
    throw new GitError('CLONE_FAILED', redact(lines.slice(-5).join('\n') || `git exited with code ${run.exitCode}`));
  }
  return run;
}

// curl's and ssh's words for "could not talk to the server at all".
const CONNECTION_FAILURE =
  /Failed to connect|Couldn't connect|Could not resolve host|Connection refused|Connection timed out|Connection reset|Connection closed|Empty reply from server|Recv failure|Send failure|Operation too slow|Operation timed out|Network is unreachable|No route to host|ssh: connect to host|kex_exchange_identification/;

/** git's and ssh's settings take whole seconds. */
function connectSecondsOf(options: CloneOptions): number {
  return Math.max(1, Math.ceil((options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS) / 1000));
}

function hardeningConfig(options: RunContext): string[] {
  const policy: GitUrlPolicy = options;
  const connectSeconds = connectSecondsOf(options);
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
    // A redirect would send git to a host nobody checked.
    'http.followRedirects': 'false',
    // Less than 1 byte/s for this long aborts: a server that accepts and never answers, or stalls.
    'http.lowSpeedLimit': '1',
    'http.lowSpeedTime': String(connectSeconds),
  };
  const pins = pinnedResolve(options.connection);
  return [...Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]), ...pins.flatMap((pin) => ['-c', `http.curloptResolve=${pin}`])];
}

/** "host:port:addr,addr" for CURLOPT_RESOLVE: curl connects to the vetted addresses only. */
function pinnedResolve(connection: Connection): string[] {
  if (!connection || connection.remote.scheme === 'ssh') return [];
  const { host, port } = connection.remote;
  const addresses = connection.addresses.map((a) => (a.family === 6 ? `[${a.address}]` : a.address));
  return [`${host}:${port}:${addresses.join(',')}`];
}

function gitEnvironment(options: RunContext, askpass: string | undefined): Record<string, string> {
  const connectSeconds = connectSecondsOf(options);
  const protocols = ['https', 'ssh', ...(options.allowFile ? ['file'] : []), ...(options.allowHttp ? ['http'] : [])];
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: process.env.HOME ?? tmpdir(),
    LC_ALL: 'C',
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_ALLOW_PROTOCOL: protocols.join(':'),
    GIT_SSH_COMMAND: sshCommand(options.connection, connectSeconds),
  };
  if (askpass && options.token) {
    env.GIT_ASKPASS = askpass;
    env.CONVOY_GIT_USERNAME = options.username ?? 'x-access-token';
    env.CONVOY_GIT_TOKEN = options.token;
  }
  return env;
}

/**
 * git runs this through sh. ssh keeps the host's name for its config (Host blocks) and checks the
 * server's key under it (HostKeyAlias, in known_hosts' "[host]:port" form off port 22), but connects to
 * the vetted address (HostName on the command line wins over any config). Host and address are
 * validated, so single quotes are enough.
 */
function sshCommand(connection: Connection, connectSeconds: number): string {
  const options = ['BatchMode=yes', `ConnectTimeout=${connectSeconds}`, `ServerAliveInterval=${connectSeconds}`, 'ServerAliveCountMax=2'];
  if (connection?.remote.scheme === 'ssh') {
    const { host, port } = connection.remote;
    options.push(`HostName=${connection.answered.address}`, `HostKeyAlias=${port === 22 ? host : `[${host}]:${port}`}`);
  }
  return ['ssh', ...options.flatMap((option) => ['-o', `'${option}'`])].join(' ');
}

/** Replaces the token (raw or URL-encoded) in text that may reach logs or errors. */
function redactor(token: string | undefined): (text: string) => string {
  if (!token) return (text) => text;
  const forms = [...new Set([token, encodeURIComponent(token), Buffer.from(token).toString('base64')])];
  return (text) => forms.reduce((acc, form) => acc.split(form).join('***'), text);
}

// Git sources: strict URL and ref validation, shallow clones of a branch or a commit from real
// repositories in temp dirs, private repositories with a token that never shows, language detection,
// and the network guard: no internal hosts, pinned addresses, no redirects, short timeouts.
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GitError, shallowClone } from '../../src/platform/git/clone.js';
import { detectSource } from '../../src/platform/git/detect.js';
import { validateGitRef, validateGitUrl } from '../../src/platform/git/validate.js';
import type { HostResolver } from '../../src/platform/net/outbound-guard.js';
import { commitFiles, git, initRepo, removeDirs, serveRedirects, servePrivateRepos, serveSilentPort, serveSshBanner, tempDir } from '../helpers/git.js';
import { nonce } from '../helpers/nix.js';

describe('validateGitUrl', () => {
  it.each([
    'https://github.com/convoy/app.git',
    'https://gitlab.example.com:8443/group/sub-group/app',
    'ssh://git@github.com/convoy/app.git',
    'ssh://git@git.example.com:2222/convoy/app.git',
    'git@github.com:convoy/app.git',
    'deploy@git.example.com:/srv/git/app.git',
  ])('accepts %s', (url) => {
    expect(validateGitUrl(url)).toEqual({ ok: true });
  });

  it('accepts file:// and http:// only when allowed', () => {
    expect(validateGitUrl('file:///srv/git/app.git', { allowFile: true })).toEqual({ ok: true });
    expect(validateGitUrl('file:///srv/git/app.git')).toEqual({ ok: false, reason: 'file:// Git URLs are not allowed here' });
    expect(validateGitUrl('http://git.lan/app.git', { allowHttp: true })).toEqual({ ok: true });
    expect(validateGitUrl('http://git.lan/app.git')).toMatchObject({ ok: false });
  });

  it.each([
    ['--upload-pack=touch /tmp/x', 'must be plain ASCII'],
    ['--upload-pack=touch${IFS}/tmp/x', 'must not start with "-"'],
    ['-oProxyCommand=touch${IFS}/tmp/x', 'must not start with "-"'],
    ['ssh://-oProxyCommand=touch/repo', 'characters that are not allowed'],
    ['ssh://-oProxyCommandtouch/repo', 'invalid host name'],
    ['git@-oProxyCommand:repo', 'invalid host name'],
    ['git@github.com:-repo', 'invalid repository path'],
    ['ext::sh -c touch% /tmp/x', 'must be plain ASCII'],
    ['ext::sh', 'transport helpers'],
    ['fd::3', 'transport helpers'],
    ['file:///etc', 'file:// Git URLs are not allowed here'],
    ['https://github.com/convoy/app;rm -rf /', 'must be plain ASCII'],
    ['https://github.com/convoy/app;rm', 'characters that are not allowed'],
    ['https://github.com/$(touch)/app', 'characters that are not allowed'],
    ['https://github.com/`id`/app', 'characters that are not allowed'],
    ['https://user:secret@github.com/convoy/app', 'must not contain credentials'],
    ['https://token@github.com/convoy/app', 'must not contain credentials'],
    ['https://g\u0456thub.com/convoy/app', 'must be plain ASCII'], // Cyrillic і
    ['https://github.com/convoy/\u0430pp', 'must be plain ASCII'], // Cyrillic а
    ['https://github\uff0ecom/convoy/app', 'must be plain ASCII'], // fullwidth full stop
    ['https://github.com/convoy/app\n', 'must be plain ASCII'],
    ['https://github.com/../../etc/passwd', 'invalid repository path'],
    ['https://github.com', 'must include a repository path'],
    ['ftp://example.com/app', 'must use https://, ssh://'],
    ['github.com/convoy/app', 'must use https://, ssh://'],
    ['', 'Git URL is required'],
    ['https://github.com:0/convoy/app', 'invalid port'],
    ['https://github.com:99999/convoy/app', 'invalid port'],
  ])('refuses %j', (url, reason) => {
    const result = validateGitUrl(url);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toContain(reason);
  });

  it.each([
    ['https://127.0.0.1/convoy/app.git', 'Git URL host 127.0.0.1 is an IP address: use a host name'],
    ['https://127.0.0.1:8443/x.git', 'Git URL host 127.0.0.1 is an IP address: use a host name'],
    ['https://2130706433/x.git', 'Git URL host 2130706433 (127.0.0.1) is an IP address: use a host name'],
    ['https://0x7f.1/x.git', 'Git URL host 0x7f.1 (127.0.0.1) is an IP address: use a host name'],
    ['https://0177.0.0.1/x.git', 'Git URL host 0177.0.0.1 (127.0.0.1) is an IP address: use a host name'],
    ['https://169.254.169.254/latest/meta-data.git', 'Git URL host 169.254.169.254 is an IP address: use a host name'],
    ['https://140.82.112.3/convoy/app.git', 'Git URL host 140.82.112.3 is an IP address: use a host name'],
    ['ssh://git@100.64.0.1:2222/app.git', 'Git URL host 100.64.0.1 is an IP address: use a host name'],
    ['git@10.0.0.5:app.git', 'Git URL host 10.0.0.5 is an IP address: use a host name'],
    ['deploy@192.168.1.10:/srv/git/app.git', 'Git URL host 192.168.1.10 is an IP address: use a host name'],
    ['https://[::1]/x.git', 'Git URL must name a host, not an IPv6 address: use a host name'],
    ['https://[::ffff:127.0.0.1]:443/x.git', 'Git URL must name a host, not an IPv6 address: use a host name'],
    ['ssh://git@[fe80::1%25eth0]/x.git', 'Git URL must name a host, not an IPv6 address: use a host name'],
    ['git@[fd00:ec2::254]:x.git', 'Git URL must name a host, not an IPv6 address: use a host name'],
    ['https://localhost/x.git', 'Git URL host localhost is a local host name'],
    ['https://LOCALHOST:8080/x.git', 'Git URL host localhost is a local host name'],
    ['ssh://git@api.localhost/x.git', 'Git URL host api.localhost is a local host name'],
    ['https://localhost./x.git', 'Git URL has an invalid host name'],
    ['https://metadata.google.internal/computeMetadata/v1.git', 'Git URL host metadata.google.internal is an internal host name'],
    ['https://gitlab/group/app.git', 'Git URL host gitlab is not a fully qualified host name (it has no dot)'],
    ['git@gitlab:group/app.git', 'Git URL host gitlab is not a fully qualified host name (it has no dot)'],
  ])('refuses the internal host of %j', (url, reason) => {
    expect(validateGitUrl(url, { allowHttp: true })).toEqual({ ok: false, reason });
  });

  it('refuses the same internal address with the same words whatever the port', () => {
    const reasons = new Set([1, 22, 5432, 6379, 8443].map((port) => JSON.stringify(validateGitUrl(`https://127.0.0.1:${port}/x.git`))));
    expect(reasons.size).toBe(1);
  });

  it("refuses the installation's own hosts and lets the operator's allowlist through", () => {
    const outbound = { allowedHosts: ['gitserver', '10.20.0.0/16', '127.0.0.1'], platformHosts: ['convoy.example.com', 'db.internal.example.com'] };
    expect(validateGitUrl('https://convoy.example.com/x.git', { outbound })).toEqual({ ok: false, reason: "Git URL host convoy.example.com is one of this installation's own hosts" });
    expect(validateGitUrl('ssh://git@db.internal.example.com/x.git', { outbound })).toMatchObject({ ok: false });
    expect(validateGitUrl('https://gitserver/group/app.git', { outbound })).toEqual({ ok: true });
    expect(validateGitUrl('git@10.20.3.4:app.git', { outbound })).toEqual({ ok: true });
    expect(validateGitUrl('http://127.0.0.1:8080/app.git', { allowHttp: true, outbound })).toEqual({ ok: true });
    expect(validateGitUrl('https://10.21.0.1/app.git', { outbound })).toMatchObject({ ok: false });
    expect(validateGitUrl('https://127.0.0.2/app.git', { outbound })).toMatchObject({ ok: false });
  });
});

describe('validateGitRef', () => {
  it.each(['main', 'feature/login-form', 'release-1.2', 'v1.0.0', 'user_branch', 'a'.repeat(40), '0123456789abcdef0123456789abcdef01234567'])('accepts %s', (ref) => {
    expect(validateGitRef(ref)).toEqual({ ok: true });
  });

  it.each([
    '--upload-pack=touch /tmp/x',
    '--upload-pack=touch',
    '-b',
    'main; rm -rf /',
    'main;rm',
    '$(id)',
    '../x',
    'a..b',
    'main@{1}',
    'ma in',
    'm\u0430in', // Cyrillic а
    'main\n',
    'main\u0000',
    'x.lock',
    '/main',
    'main/',
    'a//b',
    '.hidden',
    'feature/.hidden',
    'main.',
    '',
    'a'.repeat(256),
  ])('refuses %j', (ref) => {
    expect(validateGitRef(ref).ok).toBe(false);
  });
});

describe('shallowClone', () => {
  let workDir: string;
  let origin: string;
  let firstCommit: string;
  let secondCommit: string;
  let featureCommit: string;

  beforeAll(async () => {
    workDir = await tempDir('git-test');
    origin = join(workDir, 'origin');
    await initRepo(origin);
    firstCommit = await commitFiles(origin, { 'default.nix': '# version 1\n', 'README.md': 'one\n' }, 'first');
    secondCommit = await commitFiles(origin, { 'default.nix': '# version 2\n' }, 'second');
    await git(origin, ['checkout', '--quiet', '-b', 'feature/login']);
    featureCommit = await commitFiles(origin, { 'default.nix': '# feature\n' }, 'feature');
    await git(origin, ['checkout', '--quiet', 'main']);
  });

  afterAll(async () => {
    await removeDirs(workDir);
  });

  const originUrl = () => `file://${origin}`;
  const cloneDir = () => join(workDir, `clone-${nonce()}`);

  it('clones the tip of a branch, one commit deep, and records its SHA', async () => {
    const dir = cloneDir();
    const logs: string[] = [];
    const result = await shallowClone({ url: originUrl(), ref: 'main', dir, allowFile: true, onLog: (line) => logs.push(line) });
    // The commit's own time comes along: built images carry it as their creation time.
    const committedAt = new Date(Number(await git(origin, ['show', '--no-patch', '--format=%ct', secondCommit])) * 1000);
    expect(result).toEqual({ commitSha: secondCommit, commitTime: committedAt });
    expect(await readFile(join(dir, 'default.nix'), 'utf8')).toBe('# version 2\n');
    expect(await git(dir, ['rev-list', '--count', 'HEAD'])).toBe('1');
    expect(logs.join('\n')).toContain('Cloning into');
  });

  it('clones a branch whose name has a slash', async () => {
    const dir = cloneDir();
    expect(await shallowClone({ url: originUrl(), ref: 'feature/login', dir, allowFile: true })).toMatchObject({ commitSha: featureCommit });
    expect(await readFile(join(dir, 'default.nix'), 'utf8')).toBe('# feature\n');
  });

  it('checks out an older commit by its SHA', async () => {
    const dir = cloneDir();
    expect(await shallowClone({ url: originUrl(), ref: firstCommit, dir, allowFile: true })).toMatchObject({ commitSha: firstCommit });
    expect(await readFile(join(dir, 'default.nix'), 'utf8')).toBe('# version 1\n');
    expect(await git(dir, ['rev-list', '--count', 'HEAD'])).toBe('1');
  });

  it('fails with git\'s message for a branch that does not exist', async () => {
    const error = await shallowClone({ url: originUrl(), ref: 'nope', dir: cloneDir(), allowFile: true }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitError);
    expect(error).toMatchObject({ code: 'CLONE_FAILED', message: expect.stringContaining('Remote branch nope not found') });
  });

  it('refuses file:// unless allowed, before running git', async () => {
    const dir = cloneDir();
    await expect(shallowClone({ url: originUrl(), ref: 'main', dir })).rejects.toMatchObject({ code: 'INVALID_INPUT', message: 'file:// Git URLs are not allowed here' });
    expect(existsSync(dir)).toBe(false);
  });

  it.each([
    { url: '--upload-pack=touch ${MARKER}', ref: 'main' },
    { url: '--upload-pack=touch${IFS}${MARKER}', ref: 'main' },
    { url: '-oProxyCommand=touch${IFS}${MARKER}', ref: 'main' },
    { url: 'ssh://-oProxyCommand=touch${IFS}${MARKER}/repo', ref: 'main' },
    { url: 'ext::sh -c touch% ${MARKER}', ref: 'main' },
    { url: 'ext::touch${IFS}${MARKER}', ref: 'main' },
    { url: '${ORIGIN}', ref: '--upload-pack=touch ${MARKER}' },
    { url: '${ORIGIN}', ref: '--upload-pack=touch${IFS}${MARKER}' },
    { url: '${ORIGIN}', ref: 'main; touch ${MARKER}' },
    { url: '${ORIGIN}', ref: '$(touch ${MARKER})' },
    { url: '${ORIGIN}', ref: '../x' },
    { url: '${ORIGIN}', ref: 'm\u0430in' },
  ])('refuses url $url ref $ref without running anything', async ({ url, ref }) => {
    const marker = join(tmpdir(), `convoy-pwned-${nonce()}`);
    const fill = (text: string) => text.replaceAll('${MARKER}', marker).replaceAll('${ORIGIN}', originUrl());
    const dir = cloneDir();
    const error = await shallowClone({ url: fill(url), ref: fill(ref), dir, allowFile: true }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'GitError', code: 'INVALID_INPUT' });
    expect(existsSync(marker)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });

  it('keeps a token out of errors and logs', async () => {
    const token = `ghp_${nonce()}${nonce()}`;
    const logs: string[] = [];
    const error = await shallowClone({ url: originUrl(), ref: 'nope', dir: cloneDir(), allowFile: true, token, onLog: (l) => logs.push(l) }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'CLONE_FAILED' });
    expect(String((error as Error).message)).not.toContain(token);
    expect(JSON.stringify(error)).not.toContain(token);
    expect(logs.join('\n')).not.toContain(token);
  });
});

describe('shallowClone of a private repository', () => {
  const username = 'x-access-token';
  const token = `glpat-${nonce()}${nonce()}`;
  let workDir: string;
  let server: Awaited<ReturnType<typeof servePrivateRepos>>;
  let commit: string;

  beforeAll(async () => {
    workDir = await tempDir('git-private');
    const repo = join(workDir, 'repos', 'app');
    await initRepo(repo);
    commit = await commitFiles(repo, { 'index.html': '<p>private</p>\n' });
    server = await servePrivateRepos(join(workDir, 'repos'), { username, token });
  });

  afterAll(async () => {
    await server.close();
    await removeDirs(workDir);
  });

  it('clones with the token sent by the askpass helper, never stored or logged', async () => {
    const dir = join(workDir, 'clone-ok');
    const logs: string[] = [];
    const askpassDirsBefore = await askpassDirs();
    const result = await shallowClone({ url: server.urlOf('app'), ref: 'main', dir, token, allowHttp: true, outbound: LOOPBACK_ALLOWED, onLog: (l) => logs.push(l) });

    expect(result).toMatchObject({ commitSha: commit });
    expect(await readFile(join(dir, 'index.html'), 'utf8')).toBe('<p>private</p>\n');
    // The server saw the credentials (after a 401 challenge); the clone kept no trace of them.
    expect(server.authorizations).toContain(`Basic ${Buffer.from(`${username}:${token}`).toString('base64')}`);
    const config = await readFile(join(dir, '.git', 'config'), 'utf8');
    expect(config).toContain(`url = ${server.urlOf('app')}`);
    expect(config).not.toContain(token);
    expect(logs.join('\n')).not.toContain(token);
    expect(await askpassDirs()).toEqual(askpassDirsBefore);
  });

  it('fails without the token, and with a wrong one, without showing it', async () => {
    const withoutToken = await shallowClone({ url: server.urlOf('app'), ref: 'main', dir: join(workDir, 'clone-anon'), allowHttp: true, outbound: LOOPBACK_ALLOWED }).catch((e: unknown) => e);
    expect(withoutToken).toMatchObject({ code: 'CLONE_FAILED', message: expect.stringMatching(/could not read Username|Authentication failed/) });

    const wrong = `${token}-wrong`;
    const logs: string[] = [];
    const withWrongToken = await shallowClone({ url: server.urlOf('app'), ref: 'main', dir: join(workDir, 'clone-wrong'), allowHttp: true, outbound: LOOPBACK_ALLOWED, token: wrong, onLog: (l) => logs.push(l) }).catch((e: unknown) => e);
    expect(withWrongToken).toMatchObject({ code: 'CLONE_FAILED', message: expect.stringContaining('Authentication failed') });
    expect((withWrongToken as Error).message).not.toContain(wrong);
    expect(logs.join('\n')).not.toContain(wrong);
  });
});

describe('shallowClone network guard', () => {
  const username = 'x-access-token';
  const token = `glpat-${nonce()}${nonce()}`;
  // There is no DNS here: this name resolves only through the resolver handed to the clone, so a
  // clone that reaches the server proves git connected to the vetted address, not to a lookup of its own.
  const NAME = 'git.convoy-test.invalid';
  const toLoopback: HostResolver = async () => [{ address: '127.0.0.1', family: 4 }];
  let workDir: string;
  let server: Awaited<ReturnType<typeof servePrivateRepos>>;
  let serverPort: number;
  let commit: string;

  beforeAll(async () => {
    workDir = await tempDir('git-guard');
    const repo = join(workDir, 'repos', 'app');
    await initRepo(repo);
    commit = await commitFiles(repo, { 'index.html': '<p>guarded</p>\n' });
    server = await servePrivateRepos(join(workDir, 'repos'), { username, token });
    serverPort = Number(new URL(server.urlOf('app')).port);
  });

  afterAll(async () => {
    await server.close();
    await removeDirs(workDir);
  });

  const cloneDir = () => join(workDir, `clone-${nonce()}`);

  it('refuses a name that resolves to a loopback address before git runs', async () => {
    const dir = cloneDir();
    const requestsBefore = server.authorizations.length;
    const error = await shallowClone({ url: `http://${NAME}:${serverPort}/app`, ref: 'main', dir, token, allowHttp: true, resolve: toLoopback }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GitError);
    expect(error).toMatchObject({ code: 'REFUSED_HOST', message: `Git URL host ${NAME} resolves to a loopback address 127.0.0.1` });
    expect(server.authorizations.length).toBe(requestsBefore);
    expect(existsSync(dir)).toBe(false);
  });

  it('refuses a name when one of its addresses is internal, with the system resolver too', async () => {
    const mixed: HostResolver = async () => [
      { address: '140.82.112.3', family: 4 },
      { address: '169.254.169.254', family: 4 },
    ];
    await expect(shallowClone({ url: `https://${NAME}/app.git`, ref: 'main', dir: cloneDir(), resolve: mixed })).rejects.toMatchObject({
      code: 'REFUSED_HOST',
      message: `Git URL host ${NAME} resolves to the cloud metadata address 169.254.169.254`,
    });
    // A name nobody can resolve fails before git too, and says only that.
    await expect(shallowClone({ url: `https://${NAME}/app.git`, ref: 'main', dir: cloneDir() })).rejects.toMatchObject({ code: 'REFUSED_HOST', message: `Git URL host ${NAME} could not be resolved` });
  });

  it('answers the same whatever the port, open or closed', async () => {
    const closed = await freePort();
    const messages = new Set<string>();
    for (const port of [serverPort, closed, 22, 6379]) {
      const error = await shallowClone({ url: `https://${NAME}:${port}/app.git`, ref: 'main', dir: cloneDir(), resolve: toLoopback }).catch((e: unknown) => e);
      messages.add(`${(error as GitError).code}: ${(error as GitError).message}`);
    }
    expect([...messages]).toEqual([`REFUSED_HOST: Git URL host ${NAME} resolves to a loopback address 127.0.0.1`]);
  });

  it('connects to the vetted address only (pinned), never to a fresh lookup', async () => {
    const dir = cloneDir();
    const result = await shallowClone({ url: `http://${NAME}:${serverPort}/app`, ref: 'main', dir, token, allowHttp: true, outbound: LOOPBACK_ALLOWED, resolve: toLoopback });
    expect(result).toMatchObject({ commitSha: commit });
    expect(await readFile(join(dir, 'index.html'), 'utf8')).toBe('<p>guarded</p>\n');
  });

  it('connects ssh to the vetted address too, under the name', async () => {
    const sshd = await serveSshBanner();
    try {
      const error = await shallowClone({ url: `ssh://git@${NAME}:${sshd.port}/app.git`, ref: 'main', dir: cloneDir(), outbound: LOOPBACK_ALLOWED, resolve: toLoopback, connectTimeoutMs: 2_000 }).catch((e: unknown) => e);
      // The fake server hangs up after the greeting; what matters is that ssh itself got there.
      expect(error).toBeInstanceOf(GitError);
      expect(sshd.received.some((data) => data.startsWith('SSH-2.0-'))).toBe(true);
    } finally {
      await sshd.close();
    }
  });

  it('does not follow redirects to a host nobody checked', async () => {
    const redirector = await serveRedirects(`http://127.0.0.1:${serverPort}`);
    try {
      const requestsBefore = server.authorizations.length;
      const error = await shallowClone({ url: `http://127.0.0.1:${redirector.port}/app`, ref: 'main', dir: cloneDir(), token, allowHttp: true, outbound: LOOPBACK_ALLOWED }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'CLONE_FAILED' });
      expect(redirector.connections()).toBeGreaterThan(0);
      expect(server.authorizations.length).toBe(requestsBefore);
    } finally {
      await redirector.close();
    }
  });

  it.each(['http', 'https', 'ssh'])('gives up on a %s server that accepts and never answers within the connect timeout', async (scheme) => {
    const silent = await serveSilentPort();
    try {
      const started = Date.now();
      const url = scheme === 'ssh' ? `ssh://git@127.0.0.1:${silent.port}/app.git` : `${scheme}://127.0.0.1:${silent.port}/app.git`;
      const error = await shallowClone({ url, ref: 'main', dir: cloneDir(), allowHttp: true, outbound: LOOPBACK_ALLOWED, connectTimeoutMs: 2_000, timeoutMs: 60_000 }).catch((e: unknown) => e);
      const elapsed = Date.now() - started;
      expect(error).toMatchObject({ code: 'UNREACHABLE', message: 'could not reach the Git server at 127.0.0.1' });
      expect(silent.connections()).toBeGreaterThan(0);
      expect(elapsed).toBeGreaterThanOrEqual(1_900);
      expect(elapsed).toBeLessThan(8_000);
    } finally {
      await silent.close();
    }
  });

  it('answers the same for a closed port and a silent one on an allowlisted host', async () => {
    const silent = await serveSilentPort();
    try {
      const messages = new Set<string>();
      for (const port of [silent.port, await freePort()]) {
        const error = await shallowClone({ url: `http://127.0.0.1:${port}/app.git`, ref: 'main', dir: cloneDir(), allowHttp: true, outbound: LOOPBACK_ALLOWED, connectTimeoutMs: 1_000 }).catch((e: unknown) => e);
        messages.add(`${(error as GitError).code}: ${(error as GitError).message}`);
      }
      expect([...messages]).toEqual(['UNREACHABLE: could not reach the Git server at 127.0.0.1']);
    } finally {
      await silent.close();
    }
  });

  it('stops a transfer that trickles on forever at the clone time limit', async () => {
    const trickle = await serveSilentPort({ trickleEveryMs: 200 });
    try {
      const started = Date.now();
      const error = await shallowClone({ url: `http://127.0.0.1:${trickle.port}/app.git`, ref: 'main', dir: cloneDir(), allowHttp: true, outbound: LOOPBACK_ALLOWED, connectTimeoutMs: 2_000, timeoutMs: 4_000 }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'TIMED_OUT', message: 'clone timed out after 4 s' });
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await trickle.close();
    }
  });
});

describe('detectSource', () => {
  let workDir: string;
  beforeAll(async () => {
    workDir = await tempDir('detect');
  });
  afterAll(async () => {
    await removeDirs(workDir);
  });

  it.each([
    [{ 'default.nix': '' }, 'nix'],
    [{ 'flake.nix': '' }, 'nix'],
    [{ 'default.nix': '', 'package.json': '{}' }, 'nix'],
    [{ 'package.json': '{}', 'index.html': '' }, 'node'],
    [{ 'requirements.txt': 'flask\n' }, 'python'],
    [{ 'pyproject.toml': '' }, 'python'],
    [{ 'go.mod': 'module example.com/app\n' }, 'go'],
    [{ 'index.html': '' }, 'static'],
    [{ 'public/index.html': '' }, 'static'],
    [{ 'README.md': '' }, null],
  ] as const)('%j is %s', async (files, expected) => {
    const dir = join(workDir, nonce());
    for (const [path, content] of Object.entries(files)) {
      await mkdir(join(dir, path, '..'), { recursive: true });
      await writeFile(join(dir, path), content);
    }
    expect(await detectSource(dir)).toBe(expected);
  });

  it('follows a symlinked default.nix but not a directory named like a marker', async () => {
    const linked = join(workDir, nonce());
    await mkdir(join(linked, 'nix'), { recursive: true });
    await writeFile(join(linked, 'nix', 'default.nix'), '');
    await symlink('nix/default.nix', join(linked, 'default.nix'));
    expect(await detectSource(linked)).toBe('nix');

    const fake = join(workDir, nonce());
    await mkdir(join(fake, 'package.json'), { recursive: true });
    expect(await detectSource(fake)).toBe(null);
  });
});

/** Lets 127.0.0.1 through the outbound guard, as an operator would for an internal Git server. */
const LOOPBACK_ALLOWED = { allowedHosts: ['127.0.0.1'] };

/** A port nothing listens on (it was free a moment ago). */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

async function askpassDirs(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((name) => name.startsWith('convoy-askpass-')).sort();
}

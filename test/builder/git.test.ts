// Git sources: strict URL and ref validation, shallow clones of a branch or a commit from real
// repositories in temp dirs, private repositories with a token that never shows, language detection.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GitError, shallowClone } from '../../src/platform/git/clone.js';
import { detectSource } from '../../src/platform/git/detect.js';
import { validateGitRef, validateGitUrl } from '../../src/platform/git/validate.js';
import { commitFiles, git, initRepo, removeDirs, servePrivateRepos, tempDir } from '../helpers/git.js';
import { nonce } from '../helpers/nix.js';

describe('validateGitUrl', () => {
  it.each([
    'https://github.com/convoy/app.git',
    'https://gitlab.example.com:8443/group/sub-group/app',
    'ssh://git@github.com/convoy/app.git',
    'ssh://git@git.example.com:2222/convoy/app.git',
    'git@github.com:convoy/app.git',
    'deploy@10.0.0.5:/srv/git/app.git',
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
  ])('refuses %j', (url, reason) => {
    const result = validateGitUrl(url);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toContain(reason);
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
    expect(result).toEqual({ commitSha: secondCommit });
    expect(await readFile(join(dir, 'default.nix'), 'utf8')).toBe('# version 2\n');
    expect(await git(dir, ['rev-list', '--count', 'HEAD'])).toBe('1');
    expect(logs.join('\n')).toContain('Cloning into');
  });

  it('clones a branch whose name has a slash', async () => {
    const dir = cloneDir();
    expect(await shallowClone({ url: originUrl(), ref: 'feature/login', dir, allowFile: true })).toEqual({ commitSha: featureCommit });
    expect(await readFile(join(dir, 'default.nix'), 'utf8')).toBe('# feature\n');
  });

  it('checks out an older commit by its SHA', async () => {
    const dir = cloneDir();
    expect(await shallowClone({ url: originUrl(), ref: firstCommit, dir, allowFile: true })).toEqual({ commitSha: firstCommit });
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
    const result = await shallowClone({ url: server.urlOf('app'), ref: 'main', dir, token, allowHttp: true, onLog: (l) => logs.push(l) });

    expect(result).toEqual({ commitSha: commit });
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
    const withoutToken = await shallowClone({ url: server.urlOf('app'), ref: 'main', dir: join(workDir, 'clone-anon'), allowHttp: true }).catch((e: unknown) => e);
    expect(withoutToken).toMatchObject({ code: 'CLONE_FAILED', message: expect.stringMatching(/could not read Username|Authentication failed/) });

    const wrong = `${token}-wrong`;
    const logs: string[] = [];
    const withWrongToken = await shallowClone({ url: server.urlOf('app'), ref: 'main', dir: join(workDir, 'clone-wrong'), allowHttp: true, token: wrong, onLog: (l) => logs.push(l) }).catch((e: unknown) => e);
    expect(withWrongToken).toMatchObject({ code: 'CLONE_FAILED', message: expect.stringContaining('Authentication failed') });
    expect((withWrongToken as Error).message).not.toContain(wrong);
    expect(logs.join('\n')).not.toContain(wrong);
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

async function askpassDirs(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((name) => name.startsWith('convoy-askpass-')).sort();
}

// A repository from clone to build output: its own default.nix (at a chosen commit), its own
// flake.nix, or a detected static site built with the offline template.
import { copyFile, mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILT_IN_TEMPLATES_DIR, loadTemplate, templateBuildSource } from '../../src/platform/builder/templates.js';
import { shallowClone } from '../../src/platform/git/clone.js';
import { detectSource } from '../../src/platform/git/detect.js';
import { commitFiles, initRepo, removeDirs, tempDir } from '../helpers/git.js';
import { NIX_LIB_DIR, nixString, nonce, testNixBuilder } from '../helpers/nix.js';

const builder = testNixBuilder();
let workDir: string;

beforeAll(async () => {
  workDir = await tempDir('repository-build');
});

afterAll(async () => {
  await removeDirs(workDir);
});

/** A repository default.nix: a page saying `text`, built with Convoy's offline library. */
function pageExpression(text: string): string {
  return `{ convoyBusybox }:
(import ${nixString(NIX_LIB_DIR)}).bootstrap.runBusybox {
  name = "repo-page";
  busybox = convoyBusybox;
  script = "mkdir -p $out/share/www; echo ${text} > $out/share/www/index.html";
}
`;
}

describe('building a repository', () => {
  it('builds its default.nix at the cloned commit, and the same commit again from the cache', async () => {
    const id = nonce();
    const origin = join(workDir, `origin-${id}`);
    await initRepo(origin);
    const v1 = await commitFiles(origin, { 'default.nix': pageExpression(`v1-${id}`) }, 'v1');
    await commitFiles(origin, { 'default.nix': pageExpression(`v2-${id}`) }, 'v2');

    const atV1 = join(workDir, `clone-v1-${id}`);
    expect(await shallowClone({ url: `file://${origin}`, ref: v1, dir: atV1, allowFile: true })).toMatchObject({ commitSha: v1 });
    expect(await detectSource(atV1)).toBe('nix');
    const build = await builder.build({ kind: 'file', path: atV1 });
    expect(build).toMatchObject({ status: 'SUCCEEDED', cacheHit: false });
    expect(await readFile(join(build.outPath!, 'share/www/index.html'), 'utf8')).toBe(`v1-${id}\n`);

    const atMain = join(workDir, `clone-main-${id}`);
    await shallowClone({ url: `file://${origin}`, ref: 'main', dir: atMain, allowFile: true });
    const latest = await builder.build({ kind: 'file', path: atMain });
    expect(await readFile(join(latest.outPath!, 'share/www/index.html'), 'utf8')).toBe(`v2-${id}\n`);

    const again = join(workDir, `clone-v1-again-${id}`);
    await shallowClone({ url: `file://${origin}`, ref: v1, dir: again, allowFile: true });
    expect(await builder.build({ kind: 'file', path: again })).toMatchObject({ status: 'SUCCEEDED', cacheHit: true, outPath: build.outPath });
  });

  it('builds the default package of its flake.nix', async () => {
    const id = nonce();
    const origin = join(workDir, `flake-${id}`);
    await initRepo(origin);
    // A flake evaluates in pure mode: it can only use what the repository holds, so it carries a busybox.
    await mkdir(join(origin, 'tools'), { recursive: true });
    await copyFile('/bin/busybox', join(origin, 'tools', 'busybox'));
    await commitFiles(origin, {
      'flake.nix': `{
  outputs = { self }: let
    tools = builtins.path { path = ./tools; name = "tools"; };
  in {
    packages.${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux.default = derivation {
      name = "flake-app-${id}";
      system = "${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux";
      builder = "\${tools}/busybox";
      args = [ "sh" "-c" "echo flake-${id} > $out" ];
    };
  };
}
`,
    });
    const dir = join(workDir, `flake-clone-${id}`);
    await shallowClone({ url: `file://${origin}`, ref: 'main', dir, allowFile: true });
    expect(await detectSource(dir)).toBe('nix');
    const build = await builder.build({ kind: 'file', path: dir });
    expect(build).toMatchObject({ status: 'SUCCEEDED', drvPath: expect.stringContaining(`flake-app-${id}.drv`) });
    expect(await readFile(build.outPath!, 'utf8')).toBe(`flake-${id}\n`);
  });

  it('serves a detected static site with the offline template, without the repository\'s .git', async () => {
    const id = nonce();
    const origin = join(workDir, `site-${id}`);
    await initRepo(origin);
    await commitFiles(origin, { 'index.html': `<p>site ${id}</p>\n`, 'css/site.css': 'p { color: teal }\n' });
    const dir = join(workDir, `site-clone-${id}`);
    await shallowClone({ url: `file://${origin}`, ref: 'main', dir, allowFile: true });
    expect(await detectSource(dir)).toBe('static');

    const template = await loadTemplate(join(BUILT_IN_TEMPLATES_DIR, 'busybox-http'));
    const build = await builder.build(templateBuildSource(template, 'app', { repositoryDir: dir }));
    expect(build.status).toBe('SUCCEEDED');
    const www = join(build.outPath!, 'share/www');
    expect((await readdir(www)).sort()).toEqual(['css', 'healthz', 'index.html']);
    expect(await readFile(join(www, 'index.html'), 'utf8')).toBe(`<p>site ${id}</p>\n`);
  });

  it('reports a repository without a Nix expression', async () => {
    const dir = join(workDir, `empty-${nonce()}`);
    await mkdir(dir);
    expect(await builder.build({ kind: 'file', path: dir })).toMatchObject({ status: 'FAILED', error: `no default.nix or flake.nix in ${dir}` });
  });
});

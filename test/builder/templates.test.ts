// The built-in templates: their template.json files load and agree with their Nix expressions; the
// Nix parses; what a user sees when a template cannot evaluate (no nixpkgs, a bad argument).
import { execa } from 'execa';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BUILT_IN_TEMPLATES_DIR,
  componentsInStartOrder,
  loadTemplate,
  loadTemplates,
  startCommand,
  templateBuildSource,
  type Template,
} from '../../src/platform/builder/templates.js';
import { removeDirs, tempDir } from '../helpers/git.js';
import { NIX_LIB_DIR, nixString, testNixBuilder } from '../helpers/nix.js';

const builder = testNixBuilder({ nixPath: '' });
let templates: Template[];
let workDir: string;

beforeAll(async () => {
  templates = await loadTemplates();
  workDir = await tempDir('templates');
});

afterAll(async () => {
  await removeDirs(workDir);
});

const byName = (name: string) => templates.find((t) => t.name === name)!;

describe('built-in templates', () => {
  it('include Node.js, Python, Go, static, a multi-service stack and an offline template', () => {
    expect(templates.map((t) => [t.name, t.category, t.requiresNixpkgs])).toEqual([
      ['busybox-http', 'example', false],
      ['go', 'runtime', true],
      ['multi-service', 'stack', true],
      ['nodejs', 'runtime', true],
      ['python', 'runtime', true],
      ['static', 'static', true],
    ]);
    for (const template of templates) {
      for (const component of template.components) {
        expect(component.start.length).toBeGreaterThan(0);
        expect(component.port).toBeGreaterThan(0);
        expect(component.resources.cpu).toBeGreaterThan(0);
        expect(component.resources.memoryMb).toBeGreaterThan(0);
      }
    }
  });

  it('start the database before the app in the multi-service template, and say how to connect', () => {
    const stack = byName('multi-service');
    expect(componentsInStartOrder(stack).map((c) => c.name)).toEqual(['db', 'app']);
    const [db, app] = componentsInStartOrder(stack);
    expect(app.dependsOn).toEqual([{ component: 'db', envPrefix: 'DATABASE' }]);
    expect(db).toMatchObject({ port: 5432, volumes: ['/data'], generatedSecrets: ['POSTGRES_PASSWORD'], connection: { scheme: 'postgresql' } });
  });

  it('have Nix expressions (and a library) that parse', async () => {
    const files = [...templates.map((t) => join(t.dir, 'default.nix')), ...['default.nix', 'bootstrap.nix', 'nixpkgs.nix'].map((f) => join(NIX_LIB_DIR, f))];
    for (const file of files) {
      const result = await execa('nix-instantiate', ['--parse', file], { reject: false });
      expect({ file, exitCode: result.exitCode, stderr: result.stderr }).toEqual({ file, exitCode: 0, stderr: '' });
    }
  });

  it('define every component of template.json as an attribute of default.nix', async () => {
    for (const template of templates) {
      // The attribute names are known without nixpkgs: component values are never forced here.
      const expression = `let
        template = import ${nixString(template.dir)};
        args = builtins.intersectAttrs (builtins.functionArgs template) { pkgs = { }; src = /tmp; };
      in builtins.attrNames (template args)`;
      const result = await execa('nix-instantiate', ['--eval', '--strict', '--json', '--expr', expression]);
      expect({ template: template.name, components: JSON.parse(result.stdout) }).toEqual({ template: template.name, components: template.components.map((c) => c.name).sort() });
    }
  });

  it('resolve a relative start command against the built output', () => {
    expect(startCommand({ start: ['bin/convoy-start', '--flag'] }, '/nix/store/abc-app')).toEqual(['/nix/store/abc-app/bin/convoy-start', '--flag']);
    expect(startCommand({ start: ['/convoy/bin/busybox', 'httpd'] }, '/nix/store/abc-app')).toEqual(['/convoy/bin/busybox', 'httpd']);
  });
});

describe('evaluating templates', () => {
  it('explains that nixpkgs is missing for a nixpkgs template on a node without it', async () => {
    const repo = join(workDir, 'node-app');
    await mkdir(repo, { recursive: true });
    await writeFile(join(repo, 'package.json'), '{"name":"app"}');
    const result = await builder.evaluate(templateBuildSource(byName('nodejs'), 'app', { repositoryDir: repo }));
    expect(result).toEqual({ ok: false, error: expect.stringMatching(/^error: file 'nixpkgs' was not found in the Nix search path/) });
  });

  it('reports a bad template argument in the template\'s own words', async () => {
    const result = await builder.evaluate(templateBuildSource(byName('busybox-http'), 'app', { args: { port: '80; rm -rf /' } }));
    expect(result).toEqual({ ok: false, error: 'error: busybox-http: port must be a number, got "80; rm -rf /"' });
  });

  it('never takes the repository directory (`src`) from user arguments', () => {
    const source = templateBuildSource(byName('busybox-http'), 'app', { args: { src: '/etc', content: 'x' } });
    expect(source).toMatchObject({ kind: 'template', args: { content: 'x' } });
    expect(source.args).not.toHaveProperty('src');
  });

  it('refuses a component the template does not have and a repository template without a repository', () => {
    expect(() => templateBuildSource(byName('busybox-http'), 'db')).toThrow('template busybox-http has no component db');
    expect(() => templateBuildSource(byName('nodejs'), 'app')).toThrow('template nodejs builds a repository: give its directory');
  });
});

describe('loading a template', () => {
  async function writeTemplate(name: string, json: unknown): Promise<string> {
    const dir = join(workDir, name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'default.nix'), '{ }: { }');
    await writeFile(join(dir, 'template.json'), JSON.stringify(json));
    return dir;
  }
  const base = {
    name: 'demo',
    title: 'Demo',
    category: 'example',
    description: 'demo',
    requiresNixpkgs: false,
    source: 'none',
    resources: { cpu: 0.1, memoryMb: 32 },
  };
  const component = (name: string, dependsOn: string[] = []) => ({
    name,
    port: 8080,
    start: ['bin/convoy-start'],
    dependsOn: dependsOn.map((c) => ({ component: c, envPrefix: c.toUpperCase() })),
  });

  it('refuses circular and unknown dependencies', async () => {
    const circular = await writeTemplate('circular', { ...base, components: [component('a', ['b']), component('b', ['a'])] });
    await expect(loadTemplate(circular)).rejects.toThrow('template demo: circular dependency a -> b -> a');
    const unknown = await writeTemplate('unknown', { ...base, components: [component('a', ['ghost'])] });
    await expect(loadTemplate(unknown)).rejects.toThrow('template demo: a depends on unknown component ghost');
  });

  it('names the invalid field of a template.json', async () => {
    const dir = await writeTemplate('bad-port', { ...base, components: [{ ...component('a'), port: 70000 }] });
    await expect(loadTemplate(dir)).rejects.toThrow(/components\[0\]\.port/);
  });

  it('gives each component the template\'s default resources unless it has its own', async () => {
    const dir = await writeTemplate('resources', { ...base, components: [component('a'), { ...component('b'), resources: { cpu: 2, memoryMb: 1024 } }] });
    const template = await loadTemplate(dir);
    expect(template.components.map((c) => c.resources)).toEqual([{ cpu: 0.1, memoryMb: 32 }, { cpu: 2, memoryMb: 1024 }]);
  });

  it('is a template directory from the built-in set by default', () => {
    expect(byName('busybox-http').dir).toBe(join(BUILT_IN_TEMPLATES_DIR, 'busybox-http'));
  });
});

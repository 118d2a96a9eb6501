// Built-in templates: nix/templates/<name>/{default.nix, template.json}. template.json describes what
// the Nix expression cannot: ports, start command, default resources, components and dependencies.
import { access, readdir, readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { BuildArgs, BuildSource } from './builder.js';

/** Convoy's Nix library (lib/) and built-in templates (templates/). */
export const CONVOY_NIX_DIR = fileURLToPath(new URL('../../../nix', import.meta.url));
export const BUILT_IN_TEMPLATES_DIR = join(CONVOY_NIX_DIR, 'templates');

const NAME = /^[a-z][a-z0-9-]*$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const resourcesSchema = z.object({
  cpu: z.number().positive().max(64),
  memoryMb: z.number().int().min(4).max(1_048_576),
});

const componentSchema = z.object({
  name: z.string().regex(NAME),
  description: z.string().default(''),
  /** The port the component listens on; null for workers with no network service. */
  port: z.number().int().min(1).max(65535).nullable(),
  /** Run inside the image; relative paths are relative to the component's store path. */
  start: z.array(z.string().min(1)).min(1),
  healthCheck: z.object({ path: z.string().startsWith('/') }).optional(),
  env: z.record(z.string().regex(ENV_NAME), z.string()).default({}),
  /** Env vars Convoy fills with a random secret on deploy (e.g. a database password). */
  generatedSecrets: z.array(z.string().regex(ENV_NAME)).default([]),
  volumes: z.array(z.string().startsWith('/')).default([]),
  resources: resourcesSchema.optional(),
  /** Dependencies start first; each gives the dependent `<envPrefix>_URL`, `_HOST`, `_PORT`, ... */
  dependsOn: z.array(z.object({ component: z.string().regex(NAME), envPrefix: z.string().regex(/^[A-Z][A-Z0-9_]*$/) })).default([]),
  /** How dependents connect: which of this component's env vars hold the user, password and database. */
  connection: z
    .object({
      scheme: z.string().regex(/^[a-z][a-z0-9+.-]*$/),
      userEnv: z.string().regex(ENV_NAME).optional(),
      passwordEnv: z.string().regex(ENV_NAME).optional(),
      databaseEnv: z.string().regex(ENV_NAME).optional(),
    })
    .optional(),
});

const templateFileSchema = z.object({
  name: z.string().regex(NAME),
  title: z.string().min(1),
  category: z.string().regex(NAME),
  description: z.string().min(1),
  /** False for self-contained templates that build with no nixpkgs (offline installs, tests). */
  requiresNixpkgs: z.boolean(),
  /** Whether the template builds a repository, passed to it as the `src` argument. */
  source: z.enum(['none', 'optional', 'repository']),
  resources: resourcesSchema,
  args: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.object({ description: z.string(), default: z.string().optional() })).default({}),
  components: z.array(componentSchema).min(1),
});

export type TemplateComponent = z.infer<typeof componentSchema> & { resources: z.infer<typeof resourcesSchema> };
export type Template = Omit<z.infer<typeof templateFileSchema>, 'components'> & {
  /** Absolute path of the template directory (holds default.nix). */
  dir: string;
  components: TemplateComponent[];
};

export class TemplateError extends Error {}

export async function loadTemplate(dir: string): Promise<Template> {
  if (!isAbsolute(dir)) throw new TemplateError(`template directory must be absolute: ${dir}`);
  const file = join(dir, 'template.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new TemplateError(`cannot read ${file}: ${(error as Error).message}`);
  }
  const parsed = templateFileSchema.safeParse(raw);
  if (!parsed.success) throw new TemplateError(`${file}: ${z.prettifyError(parsed.error)}`);
  try {
    await access(join(dir, 'default.nix'));
  } catch {
    throw new TemplateError(`${dir} has no default.nix`);
  }
  const template: Template = {
    ...parsed.data,
    dir,
    components: parsed.data.components.map((c) => ({ ...c, resources: c.resources ?? parsed.data.resources })),
  };
  componentsInStartOrder(template); // Rejects unknown or circular dependencies now rather than at deploy.
  return template;
}

/** Every template under `root` (default: Convoy's built-in ones), sorted by name. */
export async function loadTemplates(root: string = BUILT_IN_TEMPLATES_DIR): Promise<Template[]> {
  const entries = await readdir(root, { withFileTypes: true });
  const dirs = entries.filter((e) => e.isDirectory()).map((e) => join(root, e.name));
  const templates = await Promise.all(dirs.map(loadTemplate));
  return templates.sort((a, b) => a.name.localeCompare(b.name));
}

/** Components ordered so that each comes after the ones it depends on. */
export function componentsInStartOrder(template: Pick<Template, 'name' | 'components'>): TemplateComponent[] {
  const byName = new Map(template.components.map((c) => [c.name, c]));
  const ordered: TemplateComponent[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (component: TemplateComponent, path: string[]) => {
    if (state.get(component.name) === 'done') return;
    if (state.get(component.name) === 'visiting') {
      throw new TemplateError(`template ${template.name}: circular dependency ${[...path, component.name].join(' -> ')}`);
    }
    state.set(component.name, 'visiting');
    for (const dependency of component.dependsOn) {
      const target = byName.get(dependency.component);
      if (!target) throw new TemplateError(`template ${template.name}: ${component.name} depends on unknown component ${dependency.component}`);
      visit(target, [...path, component.name]);
    }
    state.set(component.name, 'done');
    ordered.push(component);
  };
  for (const component of template.components) visit(component, []);
  return ordered;
}

/**
 * The build source for one component. `repositoryDir` is passed as `src`; users' `args` can never set
 * `src` themselves, as it names a directory the evaluation may read.
 */
export function templateBuildSource(template: Template, component: string, options: { args?: BuildArgs; repositoryDir?: string } = {}): BuildSource {
  if (!template.components.some((c) => c.name === component)) throw new TemplateError(`template ${template.name} has no component ${component}`);
  if (template.source === 'repository' && !options.repositoryDir) throw new TemplateError(`template ${template.name} builds a repository: give its directory`);
  const args: BuildArgs = Object.fromEntries(Object.entries(options.args ?? {}).filter(([name]) => name !== 'src'));
  if (options.repositoryDir) args.src = options.repositoryDir;
  return { kind: 'template', templateDir: template.dir, component, args };
}

/** The component's start command with relative paths resolved against its store path. */
export function startCommand(component: Pick<TemplateComponent, 'start'>, outPath: string): string[] {
  const [program, ...rest] = component.start;
  return [program.startsWith('/') ? program : `${outPath}/${program}`, ...rest];
}

// Template input rules, built from the shared validation primitives. Whether a component's Nix
// expression evaluates is checked by the service, with the builder, after these rules pass.
import { z } from 'zod';
import { cpu, displayName, dnsLabel, memoryMb, port } from '../../shared/validation.js';
import { envList } from '../services/validation.js';

export const TEMPLATE_CATEGORIES = ['web', 'api', 'worker', 'database', 'runtime', 'static', 'stack', 'example', 'other'] as const;
export type TemplateCategory = (typeof TEMPLATE_CATEGORIES)[number];

export const MAX_COMPONENTS = 10;
export const MAX_EXPRESSION_BYTES = 65_536;

export const templateCategory = z.enum(TEMPLATE_CATEGORIES, { message: `must be one of ${TEMPLATE_CATEGORIES.join(', ')}` });

const description = z
  .string()
  .max(2000, 'must be at most 2000 characters')
  .refine((v) => !/[\u0000-\u0008\u000b-\u001f\u007f]/.test(v), 'must not contain control characters other than newlines and tabs');

// Component names become Nix attribute names and env var prefixes of their dependents
// (`db` gives DB_HOST, DB_PORT, ...), so, like the built-in templates' components, they start with a letter.
const componentName = dnsLabel.refine((v) => /^[a-z]/.test(v), 'must start with a letter');

const nixExpression = z
  .string()
  .min(1, 'must not be empty')
  .max(MAX_EXPRESSION_BYTES, 'must be at most 64 KiB')
  .refine((v) => Buffer.byteLength(v, 'utf8') <= MAX_EXPRESSION_BYTES, 'must be at most 64 KiB')
  .refine((v) => !v.includes('\u0000'), 'must not contain NUL characters');

const componentSpec = z.object({
  name: componentName,
  expression: nixExpression,
  port,
  /** Exec form; a relative program is relative to the component's output (its store path). */
  start: z.array(z.string().min(1, 'must not be empty').max(1024, 'must be at most 1024 characters')).min(1, 'must not be empty').max(32, 'must have at most 32 arguments').nullish(),
  env: envList.default([]),
  dependsOn: z.array(componentName).max(MAX_COMPONENTS).default([]),
});

/** Component names are unique; dependencies name other components and form no cycle. */
const componentList = z
  .array(componentSpec)
  .min(1, 'must have at least one component')
  .max(MAX_COMPONENTS, `must have at most ${MAX_COMPONENTS} components`)
  .superRefine((components, ctx) => {
    const index = new Map<string, number>();
    components.forEach((c, i) => {
      if (index.has(c.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate component ${c.name}` });
      else index.set(c.name, i);
    });
    let dependenciesKnown = true;
    components.forEach((c, i) => {
      const seen = new Set<string>();
      c.dependsOn.forEach((dependency, j) => {
        if (dependency === c.name) ctx.addIssue({ code: 'custom', path: [i, 'dependsOn', j], message: 'a component cannot depend on itself' });
        else if (!index.has(dependency)) ctx.addIssue({ code: 'custom', path: [i, 'dependsOn', j], message: `no component named ${dependency}` });
        else if (seen.has(dependency)) ctx.addIssue({ code: 'custom', path: [i, 'dependsOn', j], message: `duplicate dependency ${dependency}` });
        else {
          seen.add(dependency);
          return;
        }
        dependenciesKnown = false;
      });
    });
    if (!dependenciesKnown) return;
    const cycle = findCycle(components);
    if (cycle) ctx.addIssue({ code: 'custom', path: [index.get(cycle[0])!, 'dependsOn'], message: `circular dependency ${cycle.join(' -> ')}` });
  });

/** The first dependency cycle found, as component names from and back to its first member. */
function findCycle(components: { name: string; dependsOn: string[] }[]): string[] | null {
  const byName = new Map(components.map((c) => [c.name, c]));
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: string[]): string[] | null => {
    if (state.get(name) === 'done') return null;
    if (state.get(name) === 'visiting') return [...path.slice(path.indexOf(name)), name];
    state.set(name, 'visiting');
    for (const dependency of byName.get(name)!.dependsOn) {
      const cycle = visit(dependency, [...path, name]);
      if (cycle) return cycle;
    }
    state.set(name, 'done');
    return null;
  };
  for (const c of components) {
    const cycle = visit(c.name, []);
    if (cycle) return cycle;
  }
  return null;
}

const defaultResources = z.object({ cpuLimit: cpu.nullish(), memoryLimitMb: memoryMb.nullish() });

export const createTemplateInput = z.object({
  slug: dnsLabel,
  name: displayName,
  description: description.default(''),
  category: templateCategory,
  components: componentList,
  defaultEnv: envList.default([]),
  defaultResources: defaultResources.default({}),
});

export const updateTemplateInput = z.object({
  slug: dnsLabel.nullish(),
  name: displayName.nullish(),
  description: description.nullish(),
  category: templateCategory.nullish(),
  components: componentList.nullish(),
  defaultEnv: envList.nullish(),
  defaultResources: defaultResources.nullish(),
});

export type CreateTemplateInput = z.output<typeof createTemplateInput>;
export type UpdateTemplateInput = z.output<typeof updateTemplateInput>;
export type ComponentSpec = z.output<typeof componentSpec>;

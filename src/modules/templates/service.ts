import { isDeepStrictEqual } from 'node:util';
import type { Db } from '../../platform/db/client.js';
import type { Prisma, Template } from '../../generated/prisma/client.js';
import { Role } from '../../generated/prisma/enums.js';
import { loadTemplates, type Template as BuiltInTemplate } from '../../platform/builder/index.js';
import type { Evaluator } from './evaluator.js';
import { parseInput } from '../common/parse.js';
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../common/errors.js';
import { recordAudit } from '../audit/audit.js';
import { hasRole, type Actor } from '../auth/caller.js';
import {
  createTemplateInput,
  TEMPLATE_CATEGORIES,
  updateTemplateInput,
  type ComponentSpec,
  type TemplateCategory,
} from './validation.js';

/** Expressions are evaluated by the build executor, never in this process (see builds/evaluations.ts). */
export type TemplateDeps = { db: Db; evaluator: Pick<Evaluator, 'evaluate'> };

/**
 * One component as stored in Template.components. Built-ins keep their template.json fields and build
 * nix/templates/<slug>/default.nix (attribute <name>); organization templates carry their expression.
 * Dependents of a component receive `<envPrefix>_HOST`, `_PORT`, `_URL`, ... on deploy.
 */
export type StoredComponent = {
  name: string;
  port: number | null;
  start?: string[];
  env?: Record<string, string>;
  dependsOn?: { component: string; envPrefix: string }[];
  expression?: string;
  /** Built-ins declare the HTTP path their app answers health checks on. */
  healthCheck?: { path?: string };
};

/** The component that no other depends on: the one a service built from the template runs. */
export function mainComponent(template: Pick<Template, 'components'>): StoredComponent | undefined {
  const components = componentsOf(template);
  return components.find((c) => !components.some((o) => (o.dependsOn ?? []).some((d) => d.component === c.name))) ?? components[0];
}

export function componentsOf(template: Pick<Template, 'components'>): StoredComponent[] {
  return Array.isArray(template.components) ? (template.components as unknown as StoredComponent[]) : [];
}

/** Categories outside Convoy's fixed list (in a template.json) are listed as `other`. */
export function categoryOf(category: string): TemplateCategory {
  return (TEMPLATE_CATEGORIES as readonly string[]).includes(category) ? (category as TemplateCategory) : 'other';
}

function builtInColumns(template: BuiltInTemplate) {
  // Through JSON so that the comparison with the stored (jsonb) value sees no undefined fields.
  const components = JSON.parse(JSON.stringify(template.components)) as Prisma.InputJsonValue;
  return {
    name: template.title,
    description: template.description,
    category: categoryOf(template.category),
    components,
    defaultEnv: {},
    defaultCpu: template.resources.cpu,
    defaultMemoryMb: template.resources.memoryMb,
  };
}

function builtInColumnsOf(t: Template): Record<keyof ReturnType<typeof builtInColumns>, unknown> {
  return { name: t.name, description: t.description, category: t.category, components: t.components, defaultEnv: t.defaultEnv, defaultCpu: t.defaultCpu, defaultMemoryMb: t.defaultMemoryMb };
}

/**
 * Makes the built-in templates in the database match nix/templates: creates and updates them, and
 * removes those no longer on disk unless a service still references them. Writes nothing when they
 * already match, so every API replica can run it at start.
 */
export async function syncBuiltInTemplates(deps: { db: Db }, root?: string): Promise<{ created: string[]; updated: string[]; removed: string[] }> {
  const onDisk = await loadTemplates(root);
  return deps.db.$transaction(async (tx) => {
    // Built-ins have a null organizationId, which the unique index never treats as a duplicate:
    // replicas starting together are serialised here instead.
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext('convoy:sync-built-in-templates'))`;
    const stored = await tx.template.findMany({ where: { organizationId: null, builtIn: true } });
    const created: string[] = [];
    const updated: string[] = [];
    for (const template of onDisk) {
      const columns = builtInColumns(template);
      const current = stored.find((t) => t.slug === template.name);
      if (!current) {
        await tx.template.create({ data: { organizationId: null, builtIn: true, slug: template.name, ...columns } });
        created.push(template.name);
      } else if (!isDeepStrictEqual(builtInColumnsOf(current), columns)) {
        await tx.template.update({ where: { id: current.id }, data: columns });
        updated.push(template.name);
      }
    }
    const gone = await tx.template.findMany({
      where: { id: { in: stored.filter((t) => !onDisk.some((d) => d.name === t.slug)).map((t) => t.id) }, services: { none: {} } },
      select: { id: true, slug: true },
    });
    await tx.template.deleteMany({ where: { id: { in: gone.map((t) => t.id) } } });
    const removed = gone.map((t) => t.slug);
    if (created.length + updated.length + removed.length > 0) {
      await recordAudit(tx, {}, 'template.sync_built_in', 'Template', null, { created, updated, removed });
    }
    return { created, updated, removed };
  });
}

/** Built-in templates and the organization's own. */
export function visibleTo(actor: Pick<Actor, 'organizationId'>): Prisma.TemplateWhereInput {
  return { OR: [{ organizationId: actor.organizationId }, { organizationId: null, builtIn: true }] };
}

export type TemplateFilter = { search?: string | null; category?: TemplateCategory | null };

/** Built-in templates and the organization's own, filtered by a name, slug or description substring and a category. */
export function templateListWhere(actor: Pick<Actor, 'organizationId'>, filter: TemplateFilter | null | undefined): Prisma.TemplateWhereInput {
  const search = filter?.search?.trim();
  if (search && search.length > 100) throw ValidationError.single(['search'], 'must be at most 100 characters');
  const conditions: Prisma.TemplateWhereInput[] = [visibleTo(actor)];
  if (filter?.category) conditions.push({ category: filter.category });
  if (search) {
    conditions.push({
      OR: [
        { name: { contains: search, mode: 'insensitive' } },
        { slug: { contains: search, mode: 'insensitive' } },
        { description: { contains: search, mode: 'insensitive' } },
      ],
    });
  }
  return { AND: conditions };
}

/** Built-ins first, then by name. */
export const TEMPLATE_ORDER: Prisma.TemplateOrderByWithRelationInput[] = [{ builtIn: 'desc' }, { name: 'asc' }, { id: 'asc' }];

export async function listTemplates(deps: Pick<TemplateDeps, 'db'>, actor: Pick<Actor, 'organizationId'>, filter: TemplateFilter = {}): Promise<Template[]> {
  return deps.db.template.findMany({ where: templateListWhere(actor, filter), orderBy: TEMPLATE_ORDER });
}

/** Scoped lookup: another organization's template is indistinguishable from a missing one. */
export async function getTemplate(deps: Pick<TemplateDeps, 'db'>, actor: Pick<Actor, 'organizationId'>, id: string): Promise<Template> {
  const template = typeof id === 'string' && id.length <= 64
    ? await deps.db.template.findFirst({ where: { AND: [{ id }, visibleTo(actor)] } })
    : null;
  if (!template) throw new NotFoundError('Template', String(id).slice(0, 64));
  return template;
}

function assertCanManageTemplates(actor: Actor) {
  if (!hasRole(actor, Role.ADMIN)) throw new ForbiddenError('Only owners and admins can manage templates');
}

/** The organization's own template, for changes: built-ins are read-only. */
async function getEditableTemplate(deps: Pick<TemplateDeps, 'db'>, actor: Actor, id: string): Promise<Template> {
  const template = await getTemplate(deps, actor, id);
  if (template.builtIn) throw new ForbiddenError('Built-in templates are read-only');
  return template;
}

/** Slugs are unique among the templates an organization sees, built-ins included. */
async function assertSlugFree(db: Db, organizationId: string, slug: string, exceptId?: string) {
  const taken = await db.template.findFirst({
    where: { slug, OR: [{ organizationId }, { organizationId: null }], ...(exceptId ? { id: { not: exceptId } } : {}) },
    select: { builtIn: true },
  });
  if (taken) throw new ConflictError(taken.builtIn ? `${slug} is the slug of a built-in template` : `A template with the slug ${slug} already exists`, 'slug');
}

/** Every component's expression must parse and evaluate to one derivation; the field error carries Nix's message. */
async function assertComponentsEvaluate(evaluator: TemplateDeps['evaluator'], organizationId: string, components: ComponentSpec[]) {
  const results = await Promise.all(components.map((c) => evaluator.evaluate(organizationId, c.expression)));
  const errors = results.flatMap((result, i) =>
    result.ok ? [] : [{ path: ['components', String(i), 'expression'], message: result.error.trim() || 'does not evaluate' }],
  );
  if (errors.length > 0) throw new ValidationError(errors);
}

function envObject(env: { name: string; value: string }[]): Record<string, string> {
  return Object.fromEntries(env.map((v) => [v.name, v.value]));
}

/** `my-db` -> `MY_DB` (component names start with a letter, so this is a valid env var prefix). */
function envPrefixFor(component: string): string {
  return component.toUpperCase().replace(/-/g, '_');
}

function storedComponents(components: ComponentSpec[]): Prisma.InputJsonValue {
  return components.map((c): StoredComponent => ({
    name: c.name,
    expression: c.expression,
    port: c.port,
    ...(c.start ? { start: c.start } : {}),
    env: envObject(c.env),
    dependsOn: c.dependsOn.map((component) => ({ component, envPrefix: envPrefixFor(component) })),
  }));
}

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: string }).code === 'P2002';
}

export async function createTemplate(deps: TemplateDeps, actor: Actor, input: unknown): Promise<Template> {
  assertCanManageTemplates(actor);
  const parsed = parseInput(createTemplateInput, input);
  await assertSlugFree(deps.db, actor.organizationId, parsed.slug);
  await assertComponentsEvaluate(deps.evaluator, actor.organizationId, parsed.components);
  try {
    return await deps.db.$transaction(async (tx) => {
      const created = await tx.template.create({
        data: {
          organizationId: actor.organizationId,
          builtIn: false,
          slug: parsed.slug,
          name: parsed.name,
          description: parsed.description,
          category: parsed.category,
          components: storedComponents(parsed.components),
          defaultEnv: envObject(parsed.defaultEnv),
          defaultCpu: parsed.defaultResources.cpuLimit ?? null,
          defaultMemoryMb: parsed.defaultResources.memoryLimitMb ?? null,
        },
      });
      await recordAudit(tx, actor, 'template.create', 'Template', created.id, { slug: created.slug, components: parsed.components.map((c) => c.name) });
      return created;
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw new ConflictError(`A template with the slug ${parsed.slug} already exists`, 'slug');
    throw error;
  }
}

export async function updateTemplate(deps: TemplateDeps, actor: Actor, id: string, input: unknown): Promise<Template> {
  assertCanManageTemplates(actor);
  const parsed = parseInput(updateTemplateInput, input);
  const current = await getEditableTemplate(deps, actor, id);
  if (parsed.slug && parsed.slug !== current.slug) await assertSlugFree(deps.db, actor.organizationId, parsed.slug, current.id);
  if (parsed.components) await assertComponentsEvaluate(deps.evaluator, actor.organizationId, parsed.components);

  const data: Prisma.TemplateUpdateInput = {};
  if (parsed.slug) data.slug = parsed.slug;
  if (parsed.name) data.name = parsed.name;
  if (parsed.description != null) data.description = parsed.description;
  if (parsed.category) data.category = parsed.category;
  if (parsed.components) data.components = storedComponents(parsed.components);
  if (parsed.defaultEnv) data.defaultEnv = envObject(parsed.defaultEnv);
  if (parsed.defaultResources) {
    data.defaultCpu = parsed.defaultResources.cpuLimit ?? null;
    data.defaultMemoryMb = parsed.defaultResources.memoryLimitMb ?? null;
  }
  try {
    return await deps.db.$transaction(async (tx) => {
      const updated = await tx.template.update({ where: { id: current.id }, data });
      await recordAudit(tx, actor, 'template.update', 'Template', current.id, {
        slug: updated.slug,
        fields: Object.keys(parsed).filter((k) => (parsed as Record<string, unknown>)[k] != null),
      });
      return updated;
    });
  } catch (error) {
    if (isUniqueViolation(error)) throw new ConflictError(`A template with the slug ${parsed.slug} already exists`, 'slug');
    throw error;
  }
}

/** Refused while a service uses the template; deleted services let go of it (their history keeps the source type). */
export async function deleteTemplate(deps: Pick<TemplateDeps, 'db'>, actor: Actor, id: string): Promise<Template> {
  assertCanManageTemplates(actor);
  const template = await getEditableTemplate(deps, actor, id);
  const inUse = () => new ConflictError(`Template ${template.slug} is used by a service; change or delete those services first`);
  try {
    return await deps.db.$transaction(async (tx) => {
      if (await tx.service.count({ where: { templateId: template.id, deletedAt: null } })) throw inUse();
      // Service.templateId restricts deletion of the template, deleted services included.
      await tx.service.updateMany({ where: { templateId: template.id, deletedAt: { not: null } }, data: { templateId: null } });
      const deleted = await tx.template.delete({ where: { id: template.id } });
      await recordAudit(tx, actor, 'template.delete', 'Template', template.id, { slug: template.slug });
      return deleted;
    });
  } catch (error) {
    // A service created meanwhile: the foreign key refuses the delete.
    if ((error as { code?: string }).code === 'P2003') throw inUse();
    throw error;
  }
}

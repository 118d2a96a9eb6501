import { builder } from '../../graphql/builder.js';
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../common/errors.js';
import { actorOf } from '../common/graphql.js';
import * as templates from './service.js';
import { TEMPLATE_CATEGORIES, type TemplateCategory } from './validation.js';

const TemplateCategoryEnum = builder.enumType('TemplateCategory', {
  values: Object.fromEntries(TEMPLATE_CATEGORIES.map((c) => [c.toUpperCase(), { value: c }])) as Record<Uppercase<TemplateCategory>, { value: TemplateCategory }>,
});

const TemplateEnvVar = builder.simpleObject('TemplateEnvVar', { fields: (t) => ({ name: t.string(), value: t.string() }) });

function envList(env: unknown): { name: string; value: string }[] {
  return Object.entries((env ?? {}) as Record<string, string>).map(([name, value]) => ({ name, value }));
}

const TemplateComponent = builder.objectRef<templates.StoredComponent>('TemplateComponent').implement({
  description: 'One service of a template; multi-service templates deploy their components in dependency order',
  fields: (t) => ({
    name: t.exposeString('name'),
    port: t.exposeInt('port', { nullable: true }),
    start: t.exposeStringList('start', { nullable: true, description: 'Exec form; a relative program is relative to the build output' }),
    env: t.field({ type: [TemplateEnvVar], resolve: (c) => envList(c.env) }),
    dependsOn: t.stringList({ description: 'Components started first; their connection details are injected into this one\'s env', resolve: (c) => (c.dependsOn ?? []).map((d) => d.component) }),
    expression: t.exposeString('expression', { nullable: true, description: 'The Nix expression; null for built-in templates, which build from Convoy\'s own files' }),
  }),
});

const TemplateResources = builder.simpleObject('TemplateResources', {
  fields: (t) => ({ cpuLimit: t.float({ nullable: true }), memoryLimitMb: t.int({ nullable: true }) }),
});

// Every field reads the row's own columns: deleteTemplate returns the deleted row itself.
builder.prismaObject('Template', {
  fields: (t) => ({
    id: t.exposeID('id'),
    slug: t.exposeString('slug'),
    name: t.exposeString('name'),
    description: t.exposeString('description'),
    category: t.field({ type: TemplateCategoryEnum, resolve: (tpl) => templates.categoryOf(tpl.category) }),
    builtIn: t.exposeBoolean('builtIn', { description: 'Shipped with Convoy, visible to every organization and read-only' }),
    components: t.field({ type: [TemplateComponent], resolve: (tpl) => templates.componentsOf(tpl) }),
    defaultEnv: t.field({ type: [TemplateEnvVar], resolve: (tpl) => envList(tpl.defaultEnv) }),
    defaultResources: t.field({ type: TemplateResources, resolve: (tpl) => ({ cpuLimit: tpl.defaultCpu, memoryLimitMb: tpl.defaultMemoryMb }) }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

builder.queryField('template', (t) =>
  t.prismaField({
    type: 'Template',
    nullable: true,
    description: 'A built-in template or one of the organization\'s own',
    authScopes: { member: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, args, ctx) =>
      ctx.app.db.template.findFirst({ ...query, where: { AND: [{ id: String(args.id) }, templates.visibleTo(actorOf(ctx))] } }),
  }),
);

builder.queryField('templates', (t) =>
  t.prismaConnection({
    type: 'Template',
    cursor: 'id',
    description: 'Built-in templates, then the organization\'s own, by name',
    authScopes: { member: true },
    maxSize: 100,
    defaultSize: 20,
    args: {
      search: t.arg.string({ description: 'Case-insensitive substring of the name, slug or description' }),
      category: t.arg({ type: TemplateCategoryEnum }),
    },
    resolve: (query, _root, args, ctx) =>
      ctx.app.db.template.findMany({ ...query, where: templates.templateListWhere(actorOf(ctx), args), orderBy: templates.TEMPLATE_ORDER }),
  }),
);

const TemplateEnvVarInput = builder.inputType('TemplateEnvVarInput', { fields: (t) => ({ name: t.string({ required: true }), value: t.string({ required: true }) }) });

const TemplateComponentInput = builder.inputType('TemplateComponentInput', {
  fields: (t) => ({
    name: t.string({ required: true, description: 'A DNS label starting with a letter, unique in the template' }),
    expression: t.string({ required: true, description: 'A Nix expression (at most 64 KiB) evaluating to one derivation; it may take `{ convoyBusybox }`' }),
    port: t.int({ required: true }),
    start: t.stringList({ description: 'Exec form; a relative program is relative to the build output' }),
    env: t.field({ type: [TemplateEnvVarInput] }),
    dependsOn: t.stringList({ description: 'Names of components this one needs; no cycles' }),
  }),
});

const TemplateResourcesInput = builder.inputType('TemplateResourcesInput', {
  fields: (t) => ({ cpuLimit: t.float(), memoryLimitMb: t.int() }),
});

const CreateTemplateInput = builder.inputType('CreateTemplateInput', {
  fields: (t) => ({
    slug: t.string({ required: true, description: 'A DNS label, unique among the templates the organization sees' }),
    name: t.string({ required: true }),
    description: t.string(),
    category: t.field({ type: TemplateCategoryEnum, required: true }),
    components: t.field({ type: [TemplateComponentInput], required: true, description: 'Each expression is evaluated before anything is saved' }),
    defaultEnv: t.field({ type: [TemplateEnvVarInput] }),
    defaultResources: t.field({ type: TemplateResourcesInput }),
  }),
});

const UpdateTemplateInput = builder.inputType('UpdateTemplateInput', {
  description: 'Fields left out keep their value; components, defaultEnv and defaultResources are replaced as a whole',
  fields: (t) => ({
    slug: t.string(),
    name: t.string(),
    description: t.string(),
    category: t.field({ type: TemplateCategoryEnum }),
    components: t.field({ type: [TemplateComponentInput] }),
    defaultEnv: t.field({ type: [TemplateEnvVarInput] }),
    defaultResources: t.field({ type: TemplateResourcesInput }),
  }),
});

builder.mutationField('createTemplate', (t) =>
  t.prismaField({
    type: 'Template',
    description: 'Creates an organization template (owners and admins)',
    authScopes: { member: true },
    errors: { types: [ValidationError, ForbiddenError, ConflictError], directResult: true, union: { name: 'CreateTemplateResult' } },
    args: { input: t.arg({ type: CreateTemplateInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) => {
      const template = await templates.createTemplate(ctx.app, actorOf(ctx), input);
      return ctx.app.db.template.findUniqueOrThrow({ ...query, where: { id: template.id } });
    },
  }),
);

builder.mutationField('updateTemplate', (t) =>
  t.prismaField({
    type: 'Template',
    description: 'Changes an organization template (owners and admins); built-in templates are read-only',
    authScopes: { member: true },
    errors: { types: [ValidationError, NotFoundError, ForbiddenError, ConflictError], directResult: true, union: { name: 'UpdateTemplateResult' } },
    args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateTemplateInput, required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const template = await templates.updateTemplate(ctx.app, actorOf(ctx), String(args.id), args.input);
      return ctx.app.db.template.findUniqueOrThrow({ ...query, where: { id: template.id } });
    },
  }),
);

builder.mutationField('deleteTemplate', (t) =>
  t.prismaField({
    type: 'Template',
    description: 'Deletes an organization template no service uses (owners and admins); returns it as it was',
    authScopes: { member: true },
    errors: { types: [NotFoundError, ForbiddenError, ConflictError], directResult: true, union: { name: 'DeleteTemplateResult' } },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_query, _root, args, ctx) => templates.deleteTemplate(ctx.app, actorOf(ctx), String(args.id)),
  }),
);

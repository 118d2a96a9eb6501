import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { addMemberByInvitation } from './helpers/members.js';
import { busyboxExpression } from './helpers/nix.js';
import { syncBuiltInTemplates } from '../src/modules/templates/service.js';
import { BUILT_IN_TEMPLATES_DIR } from '../src/platform/builder/index.js';

let api: TestApi;
let alice: TestUser; // owner of her organization
let carol: TestUser; // a MEMBER of alice's organization
let bob: TestUser; // another organization
beforeAll(async () => {
  // The controller evaluates templates' expressions (the API never does: test/template-evaluation.test.ts).
  api = await startTestApi({}, { controller: true });
  [alice, bob, carol] = await Promise.all([api.register('Alice'), api.register('Bob'), api.register('Carol')]);
  await addMemberByInvitation(api, alice, carol, 'MEMBER');
  await syncBuiltInTemplates(api.app);
});
afterAll(async () => {
  await api?.close();
});

const asAlice = () => ({ token: alice.accessToken });
const asCarol = () => ({ token: carol.accessToken, org: alice.organizationId });
const asBob = () => ({ token: bob.accessToken });

const FIELDS = `id slug name description category builtIn components { name port start env { name value } dependsOn expression } defaultEnv { name value } defaultResources { cpuLimit memoryLimitMb }`;
const RESULT = `__typename ... on Template { ${FIELDS} } ... on ValidationError { fieldErrors { path message } } ... on ConflictError { field } ... on Error { message }`;
const CREATE = `mutation($i: CreateTemplateInput!) { createTemplate(input: $i) { ${RESULT} } }`;
const UPDATE = `mutation($id: ID!, $i: UpdateTemplateInput!) { updateTemplate(id: $id, input: $i) { ${RESULT} ... on NotFoundError { resourceType } } }`;
const DELETE = `mutation($id: ID!) { deleteTemplate(id: $id) { __typename ... on Template { id slug components { name expression } } ... on NotFoundError { resourceType } ... on Error { message } } }`;
const GET = `query($id: ID!) { template(id: $id) { ${FIELDS} } }`;
const LIST = `query($search: String, $category: TemplateCategory, $after: String, $first: Int) { templates(first: $first, after: $after, search: $search, category: $category) { edges { node { slug builtIn category } } pageInfo { hasNextPage endCursor } } }`;

// Evaluates under restricted evaluation: no file reads, no nixpkgs.
const PLAIN_DERIVATION = `builtins.derivation { name = "plain"; system = builtins.currentSystem; builder = "/bin/sh"; }`;

function component(name: string, extra: Record<string, unknown> = {}) {
  return { name, expression: PLAIN_DERIVATION, port: 8080, ...extra };
}

async function gqlData(query: string, variables: Record<string, unknown>, auth: { token: string; org?: string }) {
  const result = await api.gql(query, variables, auth);
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  return result.data;
}

async function create(input: Record<string, unknown>, auth = asAlice()) {
  return (await gqlData(CREATE, { i: { name: 'A template', category: 'WEB', components: [component('app')], ...input } }, auth)).createTemplate;
}

async function slugs(variables: Record<string, unknown>, auth: { token: string; org?: string }) {
  const data = await gqlData(LIST, { first: 100, ...variables }, auth);
  return data.templates.edges.map((e: any) => e.node.slug) as string[];
}

describe('built-in templates', () => {
  it('are synced from nix/templates, listed first for every organization, and a second sync writes nothing', async () => {
    expect(await syncBuiltInTemplates(api.app)).toEqual({ created: [], updated: [], removed: [] });
    const list = await gqlData(LIST, { first: 100 }, asBob());
    const busybox = list.templates.edges.find((e: any) => e.node.slug === 'busybox-http');
    expect(busybox.node).toEqual({ slug: 'busybox-http', builtIn: true, category: 'EXAMPLE' });
    expect(list.templates.edges.slice(0, 6).every((e: any) => e.node.builtIn)).toBe(true);

    const row = await api.app.db.template.findFirstOrThrow({ where: { slug: 'multi-service', organizationId: null } });
    const multi = (await gqlData(GET, { id: row.id }, asBob())).template;
    expect(multi).toMatchObject({ builtIn: true, category: 'STACK', defaultResources: { cpuLimit: 0.5, memoryLimitMb: 512 } });
    expect(multi.components).toEqual([
      expect.objectContaining({ name: 'db', port: 5432, start: ['bin/convoy-start'], dependsOn: [], expression: null }),
      expect.objectContaining({ name: 'app', port: 3000, dependsOn: ['db'], env: [{ name: 'PORT', value: '3000' }, { name: 'NODE_ENV', value: 'production' }] }),
    ]);
  });

  it('follow nix/templates: changed ones are updated, removed ones deleted unless a service uses them', async () => {
    const go = await api.app.db.template.findFirstOrThrow({ where: { slug: 'go', organizationId: null } });
    const service = await gqlData(`mutation($i: CreateServiceInput!) { createService(input: $i) { __typename } }`, { i: { name: 'go-app', source: { templateId: go.id } } }, asAlice());
    expect(service.createService.__typename).toBe('Service');
    // A templates directory holding only busybox-http, with another title.
    const root = await mkdtemp(join(tmpdir(), 'convoy-templates-'));
    try {
      await cp(join(BUILT_IN_TEMPLATES_DIR, 'busybox-http'), join(root, 'busybox-http'), { recursive: true });
      const file = join(root, 'busybox-http', 'template.json');
      await writeFile(file, JSON.stringify({ ...JSON.parse(await readFile(file, 'utf8')), title: 'Renamed on disk' }));
      const result = await syncBuiltInTemplates(api.app, root);
      expect(result).toEqual({ created: [], updated: ['busybox-http'], removed: ['multi-service', 'nodejs', 'python', 'static'] });
      expect(await api.app.db.template.findFirstOrThrow({ where: { slug: 'busybox-http', organizationId: null } })).toMatchObject({ name: 'Renamed on disk' });
      expect(await api.app.db.template.count({ where: { id: go.id } })).toBe(1);
    } finally {
      await rm(root, { recursive: true, force: true });
      const restored = await syncBuiltInTemplates(api.app);
      expect(restored).toEqual({ created: ['multi-service', 'nodejs', 'python', 'static'], updated: ['busybox-http'], removed: [] });
    }
  });

  it('cannot be updated or deleted, even by an owner', async () => {
    const row = await api.app.db.template.findFirstOrThrow({ where: { slug: 'busybox-http', organizationId: null } });
    expect((await gqlData(UPDATE, { id: row.id, i: { name: 'Mine now' } }, asAlice())).updateTemplate.__typename).toBe('ForbiddenError');
    expect((await gqlData(DELETE, { id: row.id }, asAlice())).deleteTemplate.__typename).toBe('ForbiddenError');
    expect(await api.app.db.template.findUniqueOrThrow({ where: { id: row.id } })).toMatchObject({ name: row.name });
  });
});

describe('organization templates', () => {
  it('an admin creates a multi-component template whose expressions evaluate', async () => {
    const template = await create({
      slug: 'app-with-cache',
      name: 'App with cache',
      description: 'An app and its cache',
      category: 'STACK',
      components: [
        component('web', { start: ['bin/serve', '--port', '8080'], env: [{ name: 'MODE', value: 'prod' }], dependsOn: ['cache'] }),
        { name: 'cache', expression: busyboxExpression('cache', 'mkdir -p $out/bin'), port: 6379 },
      ],
      defaultEnv: [{ name: 'LOG_LEVEL', value: 'info' }],
      defaultResources: { cpuLimit: 0.25, memoryLimitMb: 128 },
    });
    expect(template).toMatchObject({
      __typename: 'Template',
      slug: 'app-with-cache',
      builtIn: false,
      category: 'STACK',
      components: [
        { name: 'web', port: 8080, start: ['bin/serve', '--port', '8080'], env: [{ name: 'MODE', value: 'prod' }], dependsOn: ['cache'], expression: PLAIN_DERIVATION },
        { name: 'cache', port: 6379, start: null, env: [], dependsOn: [] },
      ],
      defaultEnv: [{ name: 'LOG_LEVEL', value: 'info' }],
      defaultResources: { cpuLimit: 0.25, memoryLimitMb: 128 },
    });
    // Stored in the built-ins' shape, so deploys read both alike.
    const row = await api.app.db.template.findUniqueOrThrow({ where: { id: template.id } });
    expect((row.components as any[])[0].dependsOn).toEqual([{ component: 'cache', envPrefix: 'CACHE' }]);
    const audit = await api.app.db.auditLogEntry.findFirst({ where: { action: 'template.create', resourceId: template.id } });
    expect(audit).toMatchObject({ actorUserId: alice.id, organizationId: alice.organizationId });
  });

  it("refuses expressions that do not parse or evaluate with Nix's error text, and stores nothing", async () => {
    const before = await api.app.db.template.count();
    const auditBefore = await api.app.db.auditLogEntry.count();
    const result = await create({
      slug: 'broken',
      components: [component('ok'), component('syntax', { expression: '{ a = ; }' }), component('undefined', { expression: 'notDefinedAnywhere + 1' })],
    });
    expect(result.__typename).toBe('ValidationError');
    expect(result.fieldErrors.map((e: any) => e.path.join('.'))).toEqual(['components.1.expression', 'components.2.expression']);
    expect(result.fieldErrors[0].message).toMatch(/^error: syntax error, unexpected ';'/);
    expect(result.fieldErrors[1].message).toMatch(/^error: undefined variable 'notDefinedAnywhere'/);
    expect(result.fieldErrors[1].message).toBe(result.fieldErrors[1].message.trim());
    expect(await api.app.db.template.count()).toBe(before);
    expect(await api.app.db.auditLogEntry.count()).toBe(auditBefore);

    // The same check on update: the stored components stay as they were.
    const template = await create({ slug: 'will-not-break' });
    const update = await gqlData(UPDATE, { id: template.id, i: { components: [component('app', { expression: 'throw "no"' })] } }, asAlice());
    expect(update.updateTemplate.fieldErrors).toEqual([{ path: ['components', '0', 'expression'], message: expect.stringContaining('no') }]);
    expect((await gqlData(GET, { id: template.id }, asAlice())).template.components[0].expression).toBe(PLAIN_DERIVATION);
  });

  it('refuses unknown, duplicate and circular dependencies before evaluating anything', async () => {
    const cases: [Record<string, unknown>[], string, RegExp][] = [
      [[component('a', { dependsOn: ['nope'] })], 'components.0.dependsOn.0', /no component named nope/],
      [[component('a', { dependsOn: ['a'] })], 'components.0.dependsOn.0', /itself/],
      [[component('a'), component('a')], 'components.1.name', /duplicate component/],
      [[component('a', { dependsOn: ['b'] }), component('b', { dependsOn: ['c'] }), component('c', { dependsOn: ['a'] })], 'components.0.dependsOn', /circular dependency a -> b -> c -> a/],
      [[component('1st')], 'components.0.name', /start with a letter/],
      [[], 'components', /at least one component/],
      [[component('a', { expression: 'x'.repeat(70_000) })], 'components.0.expression', /64 KiB/],
    ];
    for (const [components, path, message] of cases) {
      const result = await create({ slug: 'deps', components });
      expect(result.__typename).toBe('ValidationError');
      expect(result.fieldErrors).toContainEqual({ path: path.split('.'), message: expect.stringMatching(message) });
    }
    expect((await create({ slug: 'Not A Slug' })).fieldErrors).toContainEqual({ path: ['slug'], message: expect.any(String) });
    expect((await create({ slug: 'cpu', defaultResources: { cpuLimit: 1000 } })).fieldErrors).toContainEqual({ path: ['defaultResources', 'cpuLimit'], message: expect.any(String) });
  });

  it('only owners and admins change templates; members see them', async () => {
    const template = await create({ slug: 'admins-only' });
    expect((await create({ slug: 'by-member' }, asCarol())).__typename).toBe('ForbiddenError');
    expect((await gqlData(UPDATE, { id: template.id, i: { name: 'x' } }, asCarol())).updateTemplate.__typename).toBe('ForbiddenError');
    expect((await gqlData(DELETE, { id: template.id }, asCarol())).deleteTemplate.__typename).toBe('ForbiddenError');
    expect((await gqlData(GET, { id: template.id }, asCarol())).template.slug).toBe('admins-only');
    expect(await api.app.db.template.count({ where: { slug: 'by-member' } })).toBe(0);
  });

  it('refuses a slug the organization already sees, its own or a built-in, but not another organization\'s', async () => {
    const first = await create({ slug: 'unique-slug' });
    expect(await create({ slug: 'unique-slug' })).toMatchObject({ __typename: 'ConflictError', field: 'slug' });
    expect(await create({ slug: 'busybox-http' })).toMatchObject({ __typename: 'ConflictError', field: 'slug' });
    expect((await create({ slug: 'unique-slug' }, asBob())).__typename).toBe('Template');
    const other = await create({ slug: 'other-slug' });
    expect((await gqlData(UPDATE, { id: other.id, i: { slug: 'unique-slug' } }, asAlice())).updateTemplate).toMatchObject({ __typename: 'ConflictError', field: 'slug' });
    const renamed = await gqlData(UPDATE, { id: first.id, i: { slug: 'renamed-slug', name: 'Renamed', category: 'API', defaultEnv: [{ name: 'X', value: '1' }] } }, asAlice());
    expect(renamed.updateTemplate).toMatchObject({ slug: 'renamed-slug', name: 'Renamed', category: 'API', defaultEnv: [{ name: 'X', value: '1' }], components: [{ name: 'app' }] });
  });

  it('searches by name, slug or description and filters by category, with pagination', async () => {
    const user = await api.register();
    const auth = { token: user.accessToken };
    await create({ slug: 'queue-worker', name: 'Queue Worker', category: 'WORKER' }, auth);
    await create({ slug: 'pg', name: 'Postgres', description: 'A relational database', category: 'DATABASE' }, auth);
    await create({ slug: 'blog', name: 'Blog', category: 'WEB' }, auth);
    expect(await slugs({ search: 'queue WORK' }, auth)).toEqual(['queue-worker']);
    expect(await slugs({ search: 'RELATIONAL' }, auth)).toEqual(['pg']);
    expect(await slugs({ category: 'DATABASE' }, auth)).toEqual(['pg']);
    expect(await slugs({ category: 'STACK' }, auth)).toEqual(['multi-service']);
    expect(await slugs({ category: 'WORKER', search: 'blog' }, auth)).toEqual([]);

    const all: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 10; page++) {
      const data: any = await gqlData(LIST, { first: 4, after }, auth);
      all.push(...data.templates.edges.map((e: any) => e.node.slug));
      if (!data.templates.pageInfo.hasNextPage) break;
      after = data.templates.pageInfo.endCursor;
    }
    expect(all).toEqual([...(await slugs({}, auth))]);
    expect(all.slice(-3)).toEqual(['blog', 'pg', 'queue-worker']);
    expect(new Set(all).size).toBe(all.length);
  });

  it('templates(first: 50) with every field costs a constant number of SQL queries', async () => {
    const user = await api.register();
    const count = async () => {
      api.queries.length = 0;
      const result = await api.gql(`{ templates(first: 50) { edges { node { ${FIELDS} } } } }`, {}, { token: user.accessToken });
      expect(result.errors).toBeUndefined();
      return api.queries.length;
    };
    const builtInsOnly = await count();
    for (let i = 0; i < 5; i++) await create({ slug: `t${i}`, components: [component('app'), component('worker', { dependsOn: ['app'] })] }, { token: user.accessToken });
    expect(await count()).toBe(builtInsOnly);
    expect(builtInsOnly).toBeLessThanOrEqual(4);
  });

  it("another organization's template behaves exactly like a missing one", async () => {
    const template = await create({ slug: 'private-template' });
    for (const id of [template.id, 'cm0000000000000000000000']) {
      expect((await gqlData(GET, { id }, asBob())).template).toBeNull();
      expect((await gqlData(UPDATE, { id, i: { name: 'Stolen' } }, asBob())).updateTemplate).toMatchObject({ __typename: 'NotFoundError', resourceType: 'Template' });
      expect((await gqlData(DELETE, { id }, asBob())).deleteTemplate).toMatchObject({ __typename: 'NotFoundError', resourceType: 'Template' });
    }
    expect(await slugs({ search: 'private-template' }, asBob())).toEqual([]);
    expect(await api.app.db.template.findUniqueOrThrow({ where: { id: template.id } })).toMatchObject({ name: 'A template' });
  });

  it('refuses to delete a template a service uses, and deletes it once the service is deleted', async () => {
    const template = await create({ slug: 'in-use' });
    const service = await gqlData(
      `mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on Service { id source { type templateId } } ... on Error { message } } }`,
      { i: { name: 'from-template', source: { templateId: template.id } } },
      asAlice(),
    );
    expect(service.createService).toMatchObject({ __typename: 'Service', source: { type: 'TEMPLATE', templateId: template.id } });
    expect((await gqlData(DELETE, { id: template.id }, asAlice())).deleteTemplate.__typename).toBe('ConflictError');
    expect(await api.app.db.template.count({ where: { id: template.id } })).toBe(1);

    const deleted = await gqlData(`mutation($id: ID!) { deleteService(id: $id) { __typename } }`, { id: service.createService.id }, asAlice());
    expect(deleted.deleteService.__typename).toBe('Service');
    expect((await gqlData(DELETE, { id: template.id }, asAlice())).deleteTemplate).toMatchObject({ __typename: 'Template', id: template.id, slug: 'in-use' });
    expect(await api.app.db.template.count({ where: { id: template.id } })).toBe(0);
    expect((await gqlData(GET, { id: template.id }, asAlice())).template).toBeNull();
    expect(await api.app.db.auditLogEntry.count({ where: { action: 'template.delete', resourceId: template.id } })).toBe(1);
  });
});

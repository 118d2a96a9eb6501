// What one tenant can claim from the installation: built images, custom domains and host ports.
// Two organizations (alice's, bob's) and a platform admin, through the GraphQL API; deploys run on the
// real swarm with the controller in-process.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { buildTestImage, TEST_APP_PORT } from './helpers/images.js';
import { uniqueName } from './helpers/swarm.js';
import { swarmServiceName } from '../src/modules/deployments/spec.js';

const BASE_DOMAIN = 'apps.convoy.test';
const API_PORT = 14_321;

let api: TestApi;
let admin: TestUser;
let alice: TestUser;
let bob: TestUser;
let appImage: string;

beforeAll(async () => {
  api = await startTestApi({ ...DEPLOY_TEST_SETTINGS, BASE_DOMAIN, PORT: String(API_PORT) }, { controller: true });
  // The first user to register operates the installation.
  admin = await api.register('Admin');
  [alice, bob] = await Promise.all([api.register('Alice'), api.register('Bob')]);
  appImage = await buildTestImage(`${uniqueName('convoy-test-tenant')}:v1`, { body: 'tenant app' });
});
afterAll(async () => {
  await api?.close();
});

const SERVICE_FIELDS = `id name hostname source { image } ports { target published } customDomains { domain status }`;
const HEALTH = { type: 'HTTP', path: '/health', port: TEST_APP_PORT, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 };

async function create(user: TestUser, input: Record<string, unknown>) {
  const result = await api.gql(
    `mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on Service { ${SERVICE_FIELDS} } ... on ValidationError { fieldErrors { path message } } ... on ConflictError { field } ... on Error { message } } }`,
    { i: { name: uniqueName('svc'), source: { image: 'nginx:1.27' }, ...input } },
    { token: user.accessToken },
  );
  expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
  return result.data.createService;
}

async function update(user: TestUser, id: string, input: Record<string, unknown>) {
  const result = await api.gql(
    `mutation($id: ID!, $i: UpdateServiceInput!) { updateService(id: $id, input: $i) { __typename ... on Service { ${SERVICE_FIELDS} } ... on ValidationError { fieldErrors { path message } } ... on ConflictError { field } ... on Error { message } } }`,
    { id, i: input },
    { token: user.accessToken },
  );
  expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
  return result.data.updateService;
}

async function lifecycle(user: TestUser, mutation: 'deployService' | 'redeployService', serviceId: string, image?: string) {
  const args = mutation === 'deployService' ? '(serviceId: $s, image: $image)' : '(serviceId: $s)';
  const vars = mutation === 'deployService' ? ', $image: String' : '';
  const result = await api.gql(
    `mutation($s: ID!${vars}) { ${mutation}${args} { __typename ... on Deployment { id status image } ... on Error { message } } }`,
    { s: serviceId, ...(image ? { image } : {}) },
    { token: user.accessToken },
  );
  expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
  return result.data[mutation];
}

async function service(user: TestUser, id: string) {
  return (await api.gql(`query($id: ID!) { service(id: $id) { ${SERVICE_FIELDS} } }`, { id }, { token: user.accessToken })).data.service;
}

/** A finished build of `serviceId`, as the build runner records it (a fixture: no Nix run needed). */
async function builtImageOf(serviceId: string, organizationId: string) {
  const build = await api.app.db.build.create({ data: { serviceId, sourceType: 'NIX', status: 'SUCCEEDED', finishedAt: new Date() } });
  const imageRef = `convoy/${organizationId.toLowerCase()}/${serviceId.toLowerCase()}:${build.id.toLowerCase()}`;
  await api.app.db.build.update({ where: { id: build.id }, data: { imageRef, imageId: `sha256:${'0'.repeat(64)}` } });
  return { buildId: build.id, imageRef };
}

async function waitForDeployment(user: TestUser, id: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await api.gql(`query($id: ID!) { deployment(id: $id) { status reason } }`, { id }, { token: user.accessToken });
    const deployment = result.data.deployment;
    if (['RUNNING', 'FAILED', 'COMPLETED'].includes(deployment.status)) return deployment;
    if (Date.now() > deadline) throw new Error(`deployment ${id} still ${deployment.status}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('images Convoy built belong to the organization that built them', () => {
  it('refuses another organization\'s built image like a missing one, deploying nothing', async () => {
    const bobs = await create(bob, { source: { nixExpression: 'import ./app.nix' } });
    const { imageRef: bobsImage } = await builtImageOf(bobs.id, bob.organizationId);
    const mine = await create(alice, {});

    const stolen = await lifecycle(alice, 'deployService', mine.id, bobsImage);
    const missing = await lifecycle(alice, 'deployService', mine.id, `convoy/${alice.organizationId.toLowerCase()}/${mine.id.toLowerCase()}:nosuchbuild`);
    expect(stolen).toEqual({ __typename: 'NotFoundError', message: `Image ${bobsImage} was not found` });
    expect(missing.__typename).toBe('NotFoundError');
    expect(missing.message).toMatch(/^Image convoy\/\S+ was not found$/);
    // The same image through the registry's name, or Docker Hub's normalised one, is the same image.
    for (const alias of [`registry.convoy.test:5000/${bobsImage}`, `docker.io/${bobsImage}`, `127.0.0.1:5000/${bobsImage}`]) {
      expect(await lifecycle(alice, 'deployService', mine.id, alias), alias).toEqual({ __typename: 'NotFoundError', message: `Image ${alias} was not found` });
    }
    // Nor can it become the service's image to be deployed later.
    const viaSource = await update(alice, mine.id, { source: { image: bobsImage } });
    expect(viaSource).toEqual({ __typename: 'NotFoundError', message: `Image ${bobsImage} was not found` });
    expect((await create(alice, { source: { image: bobsImage } })).__typename).toBe('NotFoundError');

    expect(await api.app.db.deployment.count({ where: { serviceId: mine.id } })).toBe(0);
    expect((await service(alice, mine.id)).source.image).toBe('nginx:1.27');
    expect(await api.app.db.service.count({ where: { organizationId: alice.organizationId, image: bobsImage } })).toBe(0);
  });

  it('deploys an image the organization built, from the same or another of its services', async () => {
    const builder = await create(alice, { source: { nixExpression: 'import ./app.nix' } });
    const { buildId, imageRef } = await builtImageOf(builder.id, alice.organizationId);
    const other = await create(alice, {});
    const deployment = await lifecycle(alice, 'deployService', other.id, imageRef);
    expect(deployment).toMatchObject({ __typename: 'Deployment', status: 'QUEUED', image: imageRef });
    // Recorded as built by Convoy: the health check uses Convoy's own probe inside the image.
    expect((await api.app.db.deployment.findUniqueOrThrow({ where: { id: deployment.id } })).buildId).toBe(buildId);
    expect((await lifecycle(alice, 'deployService', builder.id, imageRef)).__typename).toBe('Deployment');
  });
});

describe('custom domains', () => {
  it('refuses the platform\'s domain, its subdomains, another tenant\'s hostname and a domain taken in any organization, changing nothing', async () => {
    const bobs = await create(bob, { customDomains: ['shop.bob.example'] });
    expect(bobs.customDomains).toEqual([{ domain: 'shop.bob.example', status: 'PENDING' }]);
    const mine = await create(alice, { customDomains: ['www.alice.example'] });
    const alicesOther = await create(alice, { customDomains: ['blog.alice.example'] });

    const servicesBefore = await api.app.db.service.count();
    const refusals: [string, 'ValidationError' | 'ConflictError'][] = [
      [BASE_DOMAIN, 'ValidationError'],
      [`api.${BASE_DOMAIN}`, 'ValidationError'],
      [bobs.hostname, 'ValidationError'],
      ['shop.bob.example', 'ConflictError'],
      // The same answer when the other claim is in my own organization: it says nothing about who holds it.
      ['blog.alice.example', 'ConflictError'],
    ];
    for (const [domain, typename] of refusals) {
      const attempts = [
        { result: await update(alice, mine.id, { customDomains: ['www.alice.example', domain] }), index: 1 },
        { result: await create(alice, { customDomains: [domain] }), index: 0 },
      ];
      for (const { result, index } of attempts) {
        expect(result.__typename, domain).toBe(typename);
        if (typename === 'ValidationError') expect(result.fieldErrors.map((e: { path: string[] }) => e.path.join('.'))).toEqual([`customDomains.${index}`]);
        else expect(result).toEqual({ __typename: 'ConflictError', field: 'customDomains', message: `The domain ${domain} is already in use` });
      }
    }
    expect(await api.app.db.service.count()).toBe(servicesBefore);
    expect((await service(alice, mine.id)).customDomains).toEqual([{ domain: 'www.alice.example', status: 'PENDING' }]);
    expect((await service(bob, bobs.id)).customDomains).toEqual([{ domain: 'shop.bob.example', status: 'PENDING' }]);
    expect((await service(alice, alicesOther.id)).customDomains).toEqual([{ domain: 'blog.alice.example', status: 'PENDING' }]);
    expect(await api.app.db.customDomain.count({ where: { domain: { in: [BASE_DOMAIN, `api.${BASE_DOMAIN}`, bobs.hostname] } } })).toBe(0);
    expect(await api.app.db.customDomain.count({ where: { domain: 'shop.bob.example' } })).toBe(1);
  });

  it('refuses a service whose generated hostname another organization\'s service already has', async () => {
    const { slug } = await api.app.db.organization.findUniqueOrThrow({ where: { id: alice.organizationId } });
    const first = await create(alice, { name: 'web-shop' });
    // Fixture: an organization whose slug makes `web` + slug spell the same host name.
    const org = await api.app.db.organization.create({ data: { slug: `shop-${slug}`, name: 'Look-alike', memberships: { create: { userId: bob.id, role: 'OWNER' } } } });
    const second = await api.gql(
      `mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on ConflictError { field message } } }`,
      { i: { name: 'web', source: { image: 'nginx:1.27' } } },
      { token: bob.accessToken, org: org.id },
    );
    expect(second.data.createService).toEqual({ __typename: 'ConflictError', field: 'name', message: `The host name ${first.hostname} is already in use: choose another service name` });
    expect(await api.app.db.service.count({ where: { organizationId: org.id } })).toBe(0);
  });

  it('keeps a domain\'s status across updates and frees it when its service is deleted', async () => {
    const first = await create(alice, { customDomains: ['a.keep.example', 'b.keep.example'] });
    await api.app.db.customDomain.update({ where: { domain: 'a.keep.example' }, data: { status: 'VERIFIED', verifiedAt: new Date() } });
    const updated = await update(alice, first.id, { customDomains: ['a.keep.example', 'c.keep.example'] });
    expect(updated.customDomains).toEqual([{ domain: 'a.keep.example', status: 'VERIFIED' }, { domain: 'c.keep.example', status: 'PENDING' }]);
    expect((await create(bob, { customDomains: ['b.keep.example'] })).__typename).toBe('Service');
    await api.gql(`mutation($id: ID!) { deleteService(id: $id) { __typename } }`, { id: first.id }, { token: alice.accessToken });
    expect((await create(bob, { customDomains: ['a.keep.example'] })).customDomains).toEqual([{ domain: 'a.keep.example', status: 'PENDING' }]);
  });

  it('routes only the generated hostname until a domain is VERIFIED', async () => {
    const created = await create(alice, { source: { image: appImage }, ports: [{ target: TEST_APP_PORT }], healthCheck: HEALTH, customDomains: ['app.alice.example'] });
    expect(created.customDomains).toEqual([{ domain: 'app.alice.example', status: 'PENDING' }]);
    const rule = async () => {
      const swarm = await api.app.orchestrator.findServiceByName(swarmServiceName(created.id));
      return swarm!.labels[`traefik.http.routers.convoy-${created.id}.rule`];
    };

    const first = await lifecycle(alice, 'deployService', created.id);
    expect((await waitForDeployment(alice, first.id)).status).toBe('RUNNING');
    expect(await rule()).toBe(`Host(\`${created.hostname}\`)`);

    // What domain verification (the edge router's job) will do; then the next rollout routes it.
    await api.app.db.customDomain.update({ where: { domain: 'app.alice.example' }, data: { status: 'VERIFIED', verifiedAt: new Date() } });
    const second = await lifecycle(alice, 'redeployService', created.id);
    expect((await waitForDeployment(alice, second.id)).status).toBe('RUNNING');
    expect(await rule()).toBe(`Host(\`${created.hostname}\`) || Host(\`app.alice.example\`)`);
  });
});

describe('published host ports', () => {
  const reserved = [80, 443, 1023, 2377, 7946, 4789, API_PORT];

  it('refuses privileged, Swarm and API ports to a tenant on ports[i].published, changing nothing', async () => {
    for (const published of reserved) {
      const ports = [{ target: 8080, published: 18_080, mode: 'HOST' }, { target: 8081, published, mode: 'HOST' }];
      const created = await create(alice, { ports });
      expect(created.__typename, String(published)).toBe('ValidationError');
      expect(created.fieldErrors.map((e: { path: string[] }) => e.path.join('.'))).toEqual(['ports.1.published']);
    }
    const mine = await create(alice, { ports: [{ target: 8080, published: 18_081, mode: 'HOST' }] });
    expect(mine.__typename).toBe('Service');
    const refused = await update(alice, mine.id, { ports: [{ target: 8080, published: 4789, protocol: 'UDP' }] });
    expect(refused.fieldErrors.map((e: { path: string[] }) => e.path.join('.'))).toEqual(['ports.0.published']);
    expect((await service(alice, mine.id)).ports).toEqual([{ target: 8080, published: 18_081 }]);
    expect(await api.app.db.service.count({ where: { organizationId: alice.organizationId, ports: { array_contains: [{ published: 80 }] } } })).toBe(0);
  });

  it('lets a platform admin publish them (e.g. to run the edge router as a service)', async () => {
    const router = await create(admin, { ports: reserved.map((published, i) => ({ target: 8000 + i, published, mode: 'HOST' })) });
    expect(router.__typename).toBe('Service');
    expect(router.ports.map((p: { published: number }) => p.published)).toEqual(reserved);
  });
});

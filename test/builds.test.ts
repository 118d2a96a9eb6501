// Builds through the GraphQL API: real git repositories, real nix-build, images loaded into Docker and
// deployed on the real swarm by the in-process controller.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { commitFiles, initRepo, removeDirs, tempDir } from './helpers/git.js';
import { httpAppExpression, nonce, processesMentioning } from './helpers/nix.js';
import { ncGet, runProbeContainer, uniqueName } from './helpers/swarm.js';
import { subscribe } from './helpers/subscribe.js';
import { organizationNetworkName } from '../src/modules/deployments/spec.js';
import { pruneBuiltImages } from '../src/modules/deployments/images.js';

let api: TestApi;
let user: TestUser;
let repo: string;
const dirs: string[] = [];


const HEALTH = { type: 'HTTP', path: '/healthz', port: 8080, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 };

beforeAll(async () => {
  api = await startTestApi({ ...DEPLOY_TEST_SETTINGS, CONVOY_ALLOW_FILE_GIT_URLS: 'true' }, { controller: true });
  user = await api.register();
  repo = await tempDir('build-repo');
  dirs.push(repo);
  await initRepo(repo);
});
afterAll(async () => {
  await api?.close();
  await removeDirs(...dirs);
});

async function createGitService(name: string, url: string, extra: Record<string, unknown> = {}) {
  const result = await api.gql(
    `mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on Service { id } ... on Error { message } } }`,
    { i: { name, source: { gitUrl: url, gitBranch: 'main', ...extra }, ports: [{ target: 8080 }], healthCheck: HEALTH } },
    { token: user.accessToken },
  );
  expect(result.data.createService.__typename, JSON.stringify(result)).toBe('Service');
  return result.data.createService.id as string;
}

async function startBuild(serviceId: string, ref?: string) {
  const result = await api.gql(`mutation($s: ID!, $r: String) { buildService(serviceId: $s, ref: $r) { __typename ... on Build { id status } ... on Error { message } } }`, { s: serviceId, r: ref ?? null }, { token: user.accessToken });
  expect(result.data.buildService.__typename, JSON.stringify(result)).toBe('Build');
  return result.data.buildService.id as string;
}

const BUILD_FIELDS = `id status commitSha cacheHit imageRef imageId error logs durationMs storePath deployments { id status }`;

async function waitForBuild(id: string, statuses = ['SUCCEEDED', 'FAILED', 'CANCELLED'], timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await api.gql(`query($id: ID!) { build(id: $id) { ${BUILD_FIELDS} } }`, { id }, { token: user.accessToken });
    const build = result.data.build;
    if (statuses.includes(build.status)) return build;
    if (Date.now() > deadline) throw new Error(`build ${id} still ${build.status}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function waitForDeploymentOf(buildId: string) {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const deployment = await api.app.db.deployment.findFirst({ where: { buildId } });
    if (deployment && ['RUNNING', 'FAILED'].includes(deployment.status)) return deployment;
    if (Date.now() > deadline) throw new Error(`no finished deployment for build ${buildId}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function answer(name: string) {
  const probe = await runProbeContainer(organizationNetworkName(user.organizationId), ncGet(name, 8080));
  return probe.stdout.trim().split('\n').at(-1);
}

describe('building from Git', () => {
  it('builds two commits in turn, records each SHA, and serves the second; a broken commit fails and changes nothing', async () => {
    const first = await commitFiles(repo, { 'default.nix': httpAppExpression('commit one') }, 'first');
    const second = await commitFiles(repo, { 'default.nix': httpAppExpression('commit two') }, 'second');
    const name = uniqueName('git');
    const id = await createGitService(name, `file://${repo}`);

    const b1 = await waitForBuild(await startBuild(id, first));
    expect(b1).toMatchObject({ status: 'SUCCEEDED', commitSha: first });
    expect((await waitForDeploymentOf(b1.id)).status).toBe('RUNNING');
    expect(await answer(name)).toBe('commit one');

    // Follow the second build's log live.
    const buildId = await startBuild(id);
    const log = subscribe(api.url, user.accessToken, `subscription($id: ID!) { buildLogs(buildId: $id) { seq line } }`, { id: buildId }, 'buildLogs');
    const b2 = await waitForBuild(buildId);
    expect(b2).toMatchObject({ status: 'SUCCEEDED', commitSha: second });
    const lines = await log.waitFor((l) => l.some((x: any) => x.line.startsWith('image ')));
    expect(lines.map((l: any) => l.seq)).toEqual(lines.map((_: unknown, i: number) => i));
    expect(lines.map((l: any) => l.line).join('\n')).toContain(`checked out ${second}`);
    await log.close();
    const d2 = await waitForDeploymentOf(b2.id);
    expect(d2.status).toBe('RUNNING');
    expect(await answer(name)).toBe('commit two');

    await commitFiles(repo, { 'default.nix': '{ convoyBusybox }: this is not nix (' }, 'broken');
    const bad = await waitForBuild(await startBuild(id));
    expect(bad.status).toBe('FAILED');
    expect(bad.error).toMatch(/syntax error|unexpected/i);
    expect(bad.logs).toMatch(/syntax error|unexpected/i);
    expect(bad.deployments).toEqual([]);
    expect(await answer(name)).toBe('commit two');
    const service = await api.app.db.service.findUniqueOrThrow({ where: { id } });
    expect(service.currentDeploymentId).toBe(d2.id);
    expect(service.status).toBe('RUNNING');

    const history = await api.gql(`query($id: ID!) { deployments(serviceId: $id, first: 5) { edges { node { build { commitSha } } } } }`, { id }, { token: user.accessToken });
    expect(history.data.deployments.edges.map((e: any) => e.node.build.commitSha)).toEqual([second, first]);

    // Keeping one healthy deployment's image: the first build's image goes, the running one stays.
    const removed = await pruneBuiltImages(api.app, 1);
    expect(removed).toContain(b1.imageRef);
    expect(removed).not.toContain(b2.imageRef);
    await expect(api.app.docker.getImage(b1.imageRef).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect((await api.app.docker.getImage(b2.imageRef).inspect()).Id).toBe(b2.imageId);
  });

  it('a rebuild of an unchanged source is a cache hit with the same image', async () => {
    const dir = await tempDir('cache-repo');
    dirs.push(dir);
    await initRepo(dir);
    await commitFiles(dir, { 'default.nix': httpAppExpression(`cached ${nonce()}`) });
    const id = await createGitService(uniqueName('cache'), `file://${dir}`);
    const cold = await waitForBuild(await startBuild(id));
    expect(cold).toMatchObject({ status: 'SUCCEEDED', cacheHit: false });
    const rebuilt = await api.gql(`mutation($s: ID!) { rebuildService(serviceId: $s) { ... on Build { id } } }`, { s: id }, { token: user.accessToken });
    const warm = await waitForBuild(rebuilt.data.rebuildService.id);
    expect(warm).toMatchObject({ status: 'SUCCEEDED', cacheHit: true, storePath: cold.storePath, imageId: cold.imageId });
    expect(warm.logs).toContain('cache hit');
  });

  it('cancels a long build within seconds, leaving no build processes', async () => {
    const dir = await tempDir('slow-repo');
    dirs.push(dir);
    await initRepo(dir);
    const marker = `slow-${nonce()}`;
    await commitFiles(dir, { 'default.nix': httpAppExpression(marker, `echo building ${marker}; sleep 120`) });
    const id = await createGitService(uniqueName('slow'), `file://${dir}`);
    const buildId = await startBuild(id);
    const deadline = Date.now() + 30_000;
    while (!(await api.app.db.build.findUniqueOrThrow({ where: { id: buildId } })).logs.includes(`building ${marker}`)) {
      if (Date.now() > deadline) throw new Error('the build never started');
      await new Promise((r) => setTimeout(r, 100));
    }
    const asked = Date.now();
    const cancelled = await api.gql(`mutation($b: ID!) { cancelBuild(buildId: $b) { __typename ... on Build { id } } }`, { b: buildId }, { token: user.accessToken });
    expect(cancelled.data.cancelBuild.__typename).toBe('Build');
    const final = await waitForBuild(buildId);
    expect(final.status).toBe('CANCELLED');
    expect(Date.now() - asked).toBeLessThan(10_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(await processesMentioning(marker)).toEqual([]);
    expect(final.deployments).toEqual([]);
    expect((await api.app.db.service.findUniqueOrThrow({ where: { id } })).status).toBe('FAILED');
  });
});

describe('building from a template', () => {
  it('the offline busybox template builds, becomes an image, deploys and answers HTTP', async () => {
    const template = await api.app.db.template.findFirstOrThrow({ where: { slug: 'busybox-http', builtIn: true } });
    const name = uniqueName('tpl');
    const created = await api.gql(`mutation($i: CreateServiceInput!) { createService(input: $i) { ... on Service { id } } }`, { i: { name, source: { templateId: template.id }, ports: [{ target: 8080 }], healthCheck: HEALTH } }, { token: user.accessToken });
    const id = created.data.createService.id;
    const build = await waitForBuild(await startBuild(id));
    expect(build.status, build.logs).toBe('SUCCEEDED');
    expect(build.imageRef).toBe(`convoy/${user.organizationId.toLowerCase()}/${id.toLowerCase()}:${build.id.toLowerCase()}`);
    expect((await waitForDeploymentOf(build.id)).status).toBe('RUNNING');
    expect(await answer(name)).toContain('Hello from Convoy');
  });

  it('a service made from a template starts with its port, health check and resources', async () => {
    const template = await api.app.db.template.findFirstOrThrow({ where: { slug: 'busybox-http', builtIn: true } });
    const created = await api.gql(
      `mutation($i: CreateServiceInput!) { createService(input: $i) { ... on Service { ports { target } healthCheck { type path port } resources { cpuLimit memoryLimitMb } } } }`,
      { i: { name: uniqueName('prefill'), source: { templateId: template.id } } },
      { token: user.accessToken },
    );
    expect(created.data.createService).toEqual({ ports: [{ target: 8080 }], healthCheck: { type: 'HTTP', path: '/healthz', port: 8080 }, resources: { cpuLimit: 0.1, memoryLimitMb: 32 } });
  });
});

describe('hostile input and secrets', () => {
  it('refuses hostile refs before anything runs', async () => {
    const id = await createGitService(uniqueName('hostile'), `file://${repo}`);
    for (const ref of ['--upload-pack=touch /tmp/pwned', 'main; rm -rf /', '../etc', 'mаin']) {
      const result = await api.gql(`mutation($s: ID!, $r: String) { buildService(serviceId: $s, ref: $r) { __typename } }`, { s: id, r: ref }, { token: user.accessToken });
      expect(result.data.buildService.__typename).toBe('ValidationError');
    }
    expect(await api.app.db.build.count({ where: { serviceId: id } })).toBe(0);
  });

  it('never shows a repository token in responses, logs, errors or stored records', async () => {
    const token = `ghp_${nonce()}${nonce()}SECRET`;
    const ok = await createGitService(uniqueName('tok'), `file://${repo}`, { gitToken: token });
    const missing = await createGitService(uniqueName('tok-missing'), `file://${repo}-does-not-exist`, { gitToken: token });
    const builds = await Promise.all([waitForBuild(await startBuild(ok)), waitForBuild(await startBuild(missing))]);
    expect(builds[1].status).toBe('FAILED');
    const everything = JSON.stringify(await api.gql(`{ services(first: 50) { edges { node { source { gitUrl hasGitToken } builds(first: 5) { edges { node { logs error } } } } } } }`, {}, { token: user.accessToken }));
    expect(everything).toContain('"hasGitToken":true');
    expect(everything).not.toContain(token);
    const rows = JSON.stringify([await api.app.db.service.findMany(), await api.app.db.build.findMany(), await api.app.db.auditLogEntry.findMany()], (_k, v) => (typeof v === 'bigint' ? String(v) : v));
    expect(rows).not.toContain(token);
  });
});

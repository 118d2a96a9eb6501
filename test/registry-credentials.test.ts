// Private registries: an organization's login is stored encrypted, never returned, and used by Swarm
// to pull that organization's images only. Against a real registry with htpasswd auth on loopback.
import { execa, type ResultPromise } from 'execa';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEPLOY_TEST_SETTINGS, startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { buildTestImage, TEST_APP_PORT } from './helpers/images.js';
import { freeHostPort, testDocker, uniqueName } from './helpers/swarm.js';
import { waitFor } from './helpers/wait.js';
import { pushImage } from '../src/platform/images/docker.js';

const USERNAME = 'tenant';
const PASSWORD = 'tenant-registry-pass-1';
// bcrypt (cost 4) of PASSWORD: the registry's htpasswd file.
const HTPASSWD = `${USERNAME}:$2b$04$jlk1P1eghhlmQuMKKyrXIOGF/cMER2xG0rbmwOIcHeXpBiKfj89eu\n`;

let api: TestApi;
let alice: TestUser;
let bob: TestUser;
let workDir: string;
let registry: ResultPromise;
let registryHost: string;
let privateImage: string;

beforeAll(async () => {
  api = await startTestApi(DEPLOY_TEST_SETTINGS, { controller: true });
  await api.register('Admin');
  [alice, bob] = await Promise.all([api.register('Alice'), api.register('Bob')]);

  workDir = await mkdtemp(join(tmpdir(), 'convoy-private-registry-'));
  registryHost = `127.0.0.1:${await freeHostPort()}`;
  await writeFile(join(workDir, 'htpasswd'), HTPASSWD);
  await writeFile(
    join(workDir, 'config.yml'),
    `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${join(workDir, 'storage')}\nhttp:\n  addr: ${registryHost}\nauth:\n  htpasswd:\n    realm: convoy-test\n    path: ${join(workDir, 'htpasswd')}\n`,
  );
  registry = execa('docker-registry', ['serve', join(workDir, 'config.yml')], { reject: false, stdio: 'ignore' });
  await waitFor('the registry', async () => (await fetch(`http://${registryHost}/v2/`).catch(() => undefined))?.status === 401);

  // Pushed with the login, then forgotten locally: the node can only get it by pulling with credentials.
  const local = await buildTestImage(`${uniqueName('convoy-test-private')}:v1`, { body: 'private content' });
  privateImage = (await pushImage(testDocker, local, registryHost, { username: USERNAME, password: PASSWORD })).reference;
  for (const tag of [local, privateImage]) await testDocker.getImage(tag).remove({ force: true });
}, 60_000);

afterAll(async () => {
  await api?.close();
  if (privateImage) await testDocker.getImage(privateImage).remove({ force: true }).catch(() => undefined);
  registry?.kill('SIGTERM');
  await registry;
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

const CREDENTIAL = `__typename ... on RegistryCredential { registry username } ... on ValidationError { fieldErrors { path } } ... on Error { message }`;

async function setCredential(user: TestUser, input: Record<string, string>, org?: string) {
  const result = await api.gql(`mutation($i: SetRegistryCredentialInput!) { setRegistryCredential(input: $i) { ${CREDENTIAL} } }`, { i: input }, { token: user.accessToken, org });
  expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
  return result.data.setRegistryCredential;
}

async function listCredentials(user: TestUser) {
  return (await api.gql(`{ registryCredentials { registry username } }`, {}, { token: user.accessToken })).data.registryCredentials;
}

async function deployImage(user: TestUser, image: string) {
  const created = await api.gql(
    `mutation($i: CreateServiceInput!) { createService(input: $i) { __typename ... on Service { id } ... on Error { message } } }`,
    { i: { name: uniqueName('private'), source: { image }, healthCheck: { type: 'HTTP', path: '/health', port: TEST_APP_PORT, intervalSeconds: 1, timeoutSeconds: 2, retries: 2 } } },
    { token: user.accessToken },
  );
  const serviceId = created.data.createService.id;
  const deployed = await api.gql(`mutation($s: ID!) { deployService(serviceId: $s) { __typename ... on Deployment { id } ... on Error { message } } }`, { s: serviceId }, { token: user.accessToken });
  const id = deployed.data.deployService.id;
  const deadline = Date.now() + 75_000;
  for (;;) {
    const deployment = (await api.gql(`query($id: ID!) { deployment(id: $id) { status reason } }`, { id }, { token: user.accessToken })).data.deployment;
    if (['RUNNING', 'FAILED'].includes(deployment.status)) return deployment;
    if (Date.now() > deadline) throw new Error(`deployment ${id} still ${deployment.status}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('registry credentials', () => {
  it('stores a login per organization for owners and admins, encrypted and never returned', async () => {
    const saved = await setCredential(alice, { registry: registryHost, username: USERNAME, password: PASSWORD });
    expect(saved).toEqual({ __typename: 'RegistryCredential', registry: registryHost, username: USERNAME });
    expect(await listCredentials(alice)).toEqual([{ registry: registryHost, username: USERNAME }]);
    expect(await listCredentials(bob)).toEqual([]);

    // Neither the schema nor the stored row carries the password in clear.
    const everything = await api.gql(`{ __type(name: "RegistryCredential") { fields { name } } }`);
    expect(everything.data.__type.fields.map((f: { name: string }) => f.name).sort()).toEqual(['createdAt', 'id', 'registry', 'updatedAt', 'username']);
    const row = await api.app.db.registryCredential.findFirstOrThrow({ where: { organizationId: alice.organizationId } });
    expect(row.passwordEnc).not.toContain(PASSWORD);
    const audit = await api.app.db.auditLogEntry.findMany({ where: { organizationId: alice.organizationId, action: { startsWith: 'registry_credential' } } });
    expect(JSON.stringify(audit)).not.toContain(PASSWORD);

    // Another organization's credential behaves like a missing one.
    const foreignDelete = await api.gql(`mutation($r: String!) { deleteRegistryCredential(registry: $r) { __typename ... on Error { message } } }`, { r: registryHost }, { token: bob.accessToken });
    expect(foreignDelete.data.deleteRegistryCredential).toEqual({ __typename: 'NotFoundError', message: `RegistryCredential ${registryHost} was not found` });

    // A plain member cannot manage them.
    await api.app.db.membership.create({ data: { userId: bob.id, organizationId: alice.organizationId, role: 'MEMBER' } });
    expect((await setCredential(bob, { registry: 'ghcr.io', username: 'x', password: 'y' }, alice.organizationId)).__typename).toBe('ForbiddenError');
    expect((await setCredential(alice, { registry: 'https://evil/', username: 'x', password: 'y' })).fieldErrors).toEqual([{ path: ['registry'] }]);
    expect(await listCredentials(alice)).toEqual([{ registry: registryHost, username: USERNAME }]);
  });

  it('pulls a private image with the deploying organization\'s login only', async () => {
    // Bob first: once a node has pulled the image, Docker runs it from its cache without asking the registry.
    const withoutLogin = await deployImage(bob, privateImage);
    expect(withoutLogin).toMatchObject({ status: 'FAILED', reason: expect.stringContaining(`No such image: ${privateImage}`) });
    await setCredential(alice, { registry: registryHost, username: USERNAME, password: PASSWORD });
    const withLogin = await deployImage(alice, privateImage);
    expect(withLogin, JSON.stringify(withLogin)).toMatchObject({ status: 'RUNNING' });
  });
});

// Git URLs that point inside the installation (IP literals, loopback, private, link-local or metadata
// hosts, Convoy's own hosts) are refused by the API with a field error, and nothing is created or
// changed; an operator's allowlist (CONVOY_OUTBOUND_ALLOWED_HOSTS) lets chosen internal hosts through.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';

const CREATE = `mutation($i: CreateServiceInput!) { createService(input: $i) {
  __typename
  ... on Service { id source { type gitUrl } }
  ... on ValidationError { fieldErrors { path message } }
  ... on Error { message }
} }`;

const UPDATE = `mutation($id: ID!, $i: UpdateServiceInput!) { updateService(id: $id, input: $i) {
  __typename
  ... on Service { source { type image gitUrl } }
  ... on ValidationError { fieldErrors { path message } }
} }`;

async function createGitService(api: TestApi, user: TestUser, name: string, gitUrl: string) {
  const result = await api.gql(CREATE, { i: { name, source: { gitUrl } } }, { token: user.accessToken });
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  return result.data.createService;
}

describe('Git URLs on a default installation', () => {
  let api: TestApi;
  let alice: TestUser;
  beforeAll(async () => {
    api = await startTestApi({ BASE_DOMAIN: 'apps.convoy.example.com', CONVOY_PUBLIC_URL: 'https://convoy.example.com' });
    alice = await api.register('Alice');
  });
  afterAll(async () => {
    await api?.close();
  });

  it.each([
    ['https://127.0.0.1:8443/x.git', 'Git URL host 127.0.0.1 is an IP address: use a host name'],
    ['https://2130706433/x.git', 'Git URL host 2130706433 (127.0.0.1) is an IP address: use a host name'],
    ['https://0x7f.1/x.git', 'Git URL host 0x7f.1 (127.0.0.1) is an IP address: use a host name'],
    ['https://169.254.169.254/latest/meta-data.git', 'Git URL host 169.254.169.254 is an IP address: use a host name'],
    ['https://100.64.0.1/x.git', 'Git URL host 100.64.0.1 is an IP address: use a host name'],
    ['ssh://git@10.0.0.5/srv/app.git', 'Git URL host 10.0.0.5 is an IP address: use a host name'],
    ['git@192.168.1.10:app.git', 'Git URL host 192.168.1.10 is an IP address: use a host name'],
    ['https://[::1]/x.git', 'Git URL must name a host, not an IPv6 address: use a host name'],
    ['https://[::ffff:127.0.0.1]/x.git', 'Git URL must name a host, not an IPv6 address: use a host name'],
    ['https://localhost/x.git', 'Git URL host localhost is a local host name'],
    ['https://LOCALHOST:3000/x.git', 'Git URL host localhost is a local host name'],
    ['https://metadata.google.internal/x.git', 'Git URL host metadata.google.internal is an internal host name'],
    ['https://gitlab/x.git', 'Git URL host gitlab is not a fully qualified host name (it has no dot)'],
    ['https://convoy.example.com/x.git', "Git URL host convoy.example.com is one of this installation's own hosts"],
    ['https://apps.convoy.example.com/x.git', "Git URL host apps.convoy.example.com is one of this installation's own hosts"],
  ])('createService refuses %s and creates nothing', async (gitUrl, message) => {
    const before = await api.app.db.service.count();
    const auditBefore = await api.app.db.auditLogEntry.count();
    const payload = await createGitService(api, alice, 'internal', gitUrl);
    expect(payload).toMatchObject({ __typename: 'ValidationError', fieldErrors: [{ path: ['source', 'gitUrl'], message }] });
    expect(payload.fieldErrors).toHaveLength(1);
    expect(await api.app.db.service.count()).toBe(before);
    expect(await api.app.db.auditLogEntry.count()).toBe(auditBefore);
  });

  it('says the same for an internal address whatever the port', async () => {
    const answers = new Set<string>();
    for (const port of [22, 2375, 5432, 6379, 8443]) answers.add(JSON.stringify(await createGitService(api, alice, 'scan', `https://127.0.0.1:${port}/x.git`)));
    expect(answers.size).toBe(1);
  });

  it('updateService refuses an internal Git URL and keeps the old source', async () => {
    const created = await api.gql(CREATE, { i: { name: 'web', source: { image: 'nginx:1.27' } } }, { token: alice.accessToken });
    const id = created.data.createService.id;
    const update = await api.gql(UPDATE, { id, i: { source: { gitUrl: 'https://169.254.169.254/latest.git' } } }, { token: alice.accessToken });
    expect(update.data.updateService).toEqual({
      __typename: 'ValidationError',
      fieldErrors: [{ path: ['source', 'gitUrl'], message: 'Git URL host 169.254.169.254 is an IP address: use a host name' }],
    });
    const row = await api.app.db.service.findUniqueOrThrow({ where: { id } });
    expect(row).toMatchObject({ sourceType: 'IMAGE', image: 'nginx:1.27', gitUrl: null });
  });

  it('accepts a public host name', async () => {
    expect(await createGitService(api, alice, 'public', 'https://github.com/convoy/app.git')).toMatchObject({ __typename: 'Service', source: { type: 'GIT', gitUrl: 'https://github.com/convoy/app.git' } });
  });
});

describe('Git URLs with an operator allowlist', () => {
  let api: TestApi;
  let alice: TestUser;
  beforeAll(async () => {
    api = await startTestApi({ CONVOY_OUTBOUND_ALLOWED_HOSTS: 'gitserver, 10.20.0.0/16' });
    alice = await api.register('Alice');
  });
  afterAll(async () => {
    await api?.close();
  });

  it('accepts the allowlisted hosts and nothing next to them', async () => {
    expect(await createGitService(api, alice, 'corp-name', 'https://gitserver/group/app.git')).toMatchObject({ __typename: 'Service' });
    expect(await createGitService(api, alice, 'corp-range', 'ssh://git@10.20.1.2/srv/app.git')).toMatchObject({ __typename: 'Service' });
    expect(await createGitService(api, alice, 'corp-outside', 'ssh://git@10.21.1.2/srv/app.git')).toMatchObject({ __typename: 'ValidationError' });
    expect(await createGitService(api, alice, 'corp-local', 'https://localhost/app.git')).toMatchObject({ __typename: 'ValidationError' });
  });

  it("reads the allowlist and the installation's own hosts from the environment, refusing a malformed list", () => {
    const config = loadConfig({
      CONVOY_OUTBOUND_ALLOWED_HOSTS: 'git.corp.example, 10.20.0.0/16 127.0.0.1',
      BASE_DOMAIN: 'apps.example.com',
      CONVOY_PUBLIC_URL: 'https://convoy.example.com',
      DATABASE_URL: 'postgresql://convoy@db.example.com:5432/convoy',
      REDIS_URL: 'redis://10.0.0.7:6379/0',
    });
    expect(config.outbound).toEqual({ allowedHosts: ['git.corp.example', '10.20.0.0/16', '127.0.0.1'], platformHosts: ['apps.example.com', 'convoy.example.com', 'db.example.com', '10.0.0.7'] });
    expect(config.build).toMatchObject({ gitCloneTimeoutSeconds: 120, gitConnectTimeoutSeconds: 10 });
    expect(() => loadConfig({ CONVOY_OUTBOUND_ALLOWED_HOSTS: '10.0.0.0/33' })).toThrow(/CONVOY_OUTBOUND_ALLOWED_HOSTS/);
    expect(() => loadConfig({ CONVOY_OUTBOUND_ALLOWED_HOSTS: '*.corp.example' })).toThrow(/CONVOY_OUTBOUND_ALLOWED_HOSTS/);
  });
});

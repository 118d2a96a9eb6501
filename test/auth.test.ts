import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from './helpers/api.js';

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => {
  await api?.close();
});

const ME = `{ me { id email memberships { role organization { id personal } } } }`;
const REFRESH = `mutation($t: String!) { refreshToken(refreshToken: $t) { __typename ... on AuthPayload { tokens { accessToken refreshToken } } ... on Error { message } } }`;
const LOGIN = `mutation($input: LoginInput!) { login(input: $input) { __typename ... on AuthPayload { tokens { accessToken refreshToken } } ... on Error { message } } }`;

describe('accounts', () => {
  it('registers a user who owns a personal organization and can call me', async () => {
    const user = await api.register('Ada');
    const me = await api.gql(ME, {}, { token: user.accessToken });
    expect(me.errors).toBeUndefined();
    expect(me.data.me.email).toBe(user.email);
    expect(me.data.me.memberships).toEqual([{ role: 'OWNER', organization: { id: user.organizationId, personal: true } }]);
  });

  it('refuses a duplicate email with a conflict and weak passwords with a field error', async () => {
    const user = await api.register();
    const dup = await api.gql(`mutation($i: RegisterInput!) { register(input: $i) { __typename ... on ConflictError { field message } } }`, {
      i: { email: user.email.toUpperCase(), password: 'another long password', name: 'X' },
    });
    expect(dup.data.register).toEqual({ __typename: 'ConflictError', field: 'email', message: expect.stringContaining('already exists') });
    const weak = await api.gql(`mutation($i: RegisterInput!) { register(input: $i) { __typename ... on ValidationError { fieldErrors { path message } } } }`, {
      i: { email: 'not-an-email', password: 'short', name: '' },
    });
    expect(weak.data.register.__typename).toBe('ValidationError');
    expect(weak.data.register.fieldErrors.map((e: { path: string[] }) => e.path.join('.')).sort()).toEqual(['email', 'name', 'password']);
  });

  it('logs in with the password and refuses a wrong one without saying which part was wrong', async () => {
    const user = await api.register();
    const ok = await api.gql(LOGIN, { input: { email: user.email, password: user.password } });
    expect(ok.data.login.__typename).toBe('AuthPayload');
    const wrong = await api.gql(LOGIN, { input: { email: user.email, password: 'wrong password!!' } });
    const unknown = await api.gql(LOGIN, { input: { email: 'nobody@example.com', password: 'wrong password!!' } });
    expect(wrong.data.login).toEqual({ __typename: 'InvalidCredentialsError', message: 'Invalid credentials' });
    expect(unknown.data.login).toEqual(wrong.data.login);
  });

  it('rotates refresh tokens, and reuse of a spent one revokes the whole family', async () => {
    const user = await api.register();
    const first = await api.gql(REFRESH, { t: user.refreshToken });
    expect(first.data.refreshToken.__typename).toBe('AuthPayload');
    const second = first.data.refreshToken.tokens.refreshToken;
    expect(second).not.toBe(user.refreshToken);

    // The spent token is presented again: refused, and the newer token of the same login dies with it.
    const reuse = await api.gql(REFRESH, { t: user.refreshToken });
    expect(reuse.data.refreshToken.__typename).toBe('InvalidCredentialsError');
    const afterReuse = await api.gql(REFRESH, { t: second });
    expect(afterReuse.data.refreshToken.__typename).toBe('InvalidCredentialsError');

    // Another login (another family) is unaffected.
    const other = await api.gql(LOGIN, { input: { email: user.email, password: user.password } });
    const otherRefresh = await api.gql(REFRESH, { t: other.data.login.tokens.refreshToken });
    expect(otherRefresh.data.refreshToken.__typename).toBe('AuthPayload');
  });

  it('logout revokes the refresh token', async () => {
    const user = await api.register();
    const out = await api.gql(`mutation($t: String!) { logout(refreshToken: $t) }`, { t: user.refreshToken });
    expect(out.data.logout).toBe(true);
    const after = await api.gql(REFRESH, { t: user.refreshToken });
    expect(after.data.refreshToken.__typename).toBe('InvalidCredentialsError');
  });

  it('answers UNAUTHENTICATED without a token and for a forged one', async () => {
    const none = await api.gql(ME);
    expect(none.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    const user = await api.register();
    const [h, p] = user.accessToken.split('.');
    const forged = await api.gql(ME, {}, { token: `${h}.${p}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA` });
    expect(forged.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    expect(forged.data ?? null).toBeNull();
  });

  it('stores only password and token hashes', async () => {
    const user = await api.register();
    const row = await api.app.db.user.findUniqueOrThrow({ where: { id: user.id } });
    expect(row.passwordHash).not.toContain(user.password);
    expect(row.passwordHash).toMatch(/^scrypt\$/);
    const tokens = await api.app.db.refreshToken.findMany({ where: { userId: user.id } });
    expect(tokens.some((t) => t.tokenHash === user.refreshToken)).toBe(false);
  });
});

describe('API tokens', () => {
  it('creates a token shown once, authenticates with it, lists it without the secret, and revokes it', async () => {
    const user = await api.register();
    const created = await api.gql(
      `mutation { createApiToken(input: { name: "ci" }) { __typename ... on CreateApiTokenPayload { token apiToken { id name prefix } } } }`,
      {},
      { token: user.accessToken },
    );
    const { token, apiToken } = created.data.createApiToken;
    expect(token).toMatch(/^cvy_pat_/);
    expect(token.startsWith(apiToken.prefix)).toBe(true);

    const me = await api.gql(`{ me { id } organization { id } }`, {}, { token });
    expect(me.data).toEqual({ me: { id: user.id }, organization: { id: user.organizationId } });

    const listed = await api.gql(`{ apiTokens { id name prefix revokedAt } }`, {}, { token: user.accessToken });
    expect(JSON.stringify(listed)).not.toContain(token);
    expect(listed.data.apiTokens).toEqual([{ id: apiToken.id, name: 'ci', prefix: apiToken.prefix, revokedAt: null }]);
    const stored = await api.app.db.apiToken.findUniqueOrThrow({ where: { id: apiToken.id } });
    expect(stored.tokenHash).not.toBe(token);

    const revoked = await api.gql(`mutation($id: ID!) { revokeApiToken(id: $id) { __typename ... on ApiToken { revokedAt } } }`, { id: apiToken.id }, { token: user.accessToken });
    expect(revoked.data.revokeApiToken.revokedAt).toBeTruthy();
    const after = await api.gql(`{ me { id } }`, {}, { token });
    expect(after.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
  });

  it("cannot revoke another user's token", async () => {
    const alice = await api.register();
    const bob = await api.register();
    const created = await api.gql(`mutation { createApiToken(input: { name: "x" }) { ... on CreateApiTokenPayload { apiToken { id } } } }`, {}, { token: alice.accessToken });
    const id = created.data.createApiToken.apiToken.id;
    const attempt = await api.gql(`mutation($id: ID!) { revokeApiToken(id: $id) { __typename } }`, { id }, { token: bob.accessToken });
    expect(attempt.data.revokeApiToken.__typename).toBe('NotFoundError');
    expect((await api.app.db.apiToken.findUniqueOrThrow({ where: { id } })).revokedAt).toBeNull();
  });
});

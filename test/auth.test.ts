import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from './helpers/api.js';
import { createApp } from '../src/app.js';
import { startServer } from '../src/graphql/server.js';

let api: TestApi;
beforeAll(async () => {
  // The test client is a trusted proxy, so X-Forwarded-For gives each test its own client addresses.
  api = await startTestApi({ CONVOY_TRUSTED_PROXIES: '127.0.0.1', CONVOY_REGISTRATIONS_PER_HOUR: '40' });
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

/** A client address of its own, reached through the trusted proxy (the test client). */
function newAddress(): string {
  const b = randomBytes(3);
  return `10.${b[0]}.${b[1]}.${b[2]}`;
}

function from(address: string, token?: string) {
  return { token, headers: { 'x-forwarded-for': address } };
}

const RATE_LIMITED_LOGIN = `mutation($input: LoginInput!) { login(input: $input) { __typename ... on RateLimitedError { retryAfterSeconds message } ... on AuthPayload { tokens { accessToken } } } }`;
const RATE_LIMITED_REFRESH = `mutation($t: String!) { refreshToken(refreshToken: $t) { __typename ... on RateLimitedError { retryAfterSeconds } } }`;
const RATE_LIMITED_REGISTER = `mutation($i: RegisterInput!) { register(input: $i) { __typename ... on RateLimitedError { retryAfterSeconds } } }`;

describe('login limits', () => {
  it('refuses an address that keeps guessing one account, even the right password, without touching the account elsewhere or other accounts', async () => {
    const victim = await api.register();
    const bystander = await api.register();
    const attacker = newAddress();
    const answers: string[] = [];
    let lastRefusal: { retryAfterSeconds: number; message: string } | null = null;
    for (let i = 0; i < 200; i++) {
      const result = (await api.gql(RATE_LIMITED_LOGIN, { input: { email: victim.email, password: `wrong password ${i}` } }, from(attacker))).data.login;
      answers.push(result.__typename);
      if (result.__typename === 'RateLimitedError') lastRefusal = result;
    }
    // Ten guesses were checked; every later one was refused without looking at the password.
    expect(answers.slice(0, 10)).toEqual(Array(10).fill('InvalidCredentialsError'));
    expect(new Set(answers.slice(10))).toEqual(new Set(['RateLimitedError']));
    expect(lastRefusal!.retryAfterSeconds).toBeGreaterThan(0);
    expect(lastRefusal!.retryAfterSeconds).toBeLessThanOrEqual(15 * 60);

    const right = (await api.gql(RATE_LIMITED_LOGIN, { input: { email: victim.email, password: victim.password } }, from(attacker))).data.login;
    expect(right.__typename).toBe('RateLimitedError');
    // Another account from the same address, and the real user from their own address, are unaffected.
    expect((await api.gql(RATE_LIMITED_LOGIN, { input: { email: bystander.email, password: bystander.password } }, from(attacker))).data.login.__typename).toBe('AuthPayload');
    expect((await api.gql(RATE_LIMITED_LOGIN, { input: { email: victim.email, password: victim.password } }, from(newAddress()))).data.login.__typename).toBe('AuthPayload');
  });

  it('counts guesses sent in parallel before their passwords are checked', async () => {
    const victim = await api.register();
    const attacker = newAddress();
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => api.gql(RATE_LIMITED_LOGIN, { input: { email: victim.email, password: `parallel guess ${i}` } }, from(attacker))),
    );
    const kinds = answers.map((a) => a.data.login.__typename);
    expect(kinds.filter((k) => k === 'InvalidCredentialsError')).toHaveLength(10);
    expect(kinds.filter((k) => k === 'RateLimitedError')).toHaveLength(30);
  });

  it('a successful login clears the address-and-account counter', async () => {
    const user = await api.register();
    const address = newAddress();
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 9; i++) await api.gql(LOGIN, { input: { email: user.email, password: 'a typo password' } }, from(address));
      expect((await api.gql(RATE_LIMITED_LOGIN, { input: { email: user.email, password: user.password } }, from(address))).data.login.__typename).toBe('AuthPayload');
    }
  });

  it('locks an account guessed from many addresses only briefly', async () => {
    const victim = await api.register();
    const bystander = await api.register();
    // Six addresses, ten checked guesses each: past the account's own limit of fifty failures.
    await Promise.all(
      Array.from({ length: 6 }, async () => {
        const address = newAddress();
        for (let i = 0; i < 11; i++) await api.gql(LOGIN, { input: { email: victim.email, password: `spread guess ${i}` } }, from(address));
      }),
    );
    const right = (await api.gql(RATE_LIMITED_LOGIN, { input: { email: victim.email, password: victim.password } }, from(newAddress()))).data.login;
    expect(right.__typename).toBe('RateLimitedError');
    expect(right.retryAfterSeconds).toBeGreaterThan(0);
    expect(right.retryAfterSeconds).toBeLessThanOrEqual(5 * 60);
    expect((await api.gql(RATE_LIMITED_LOGIN, { input: { email: bystander.email, password: bystander.password } }, from(newAddress()))).data.login.__typename).toBe('AuthPayload');
  });

  it('refuses an address that tries many accounts', async () => {
    const user = await api.register();
    const sprayer = newAddress();
    const kinds: string[] = [];
    for (let batch = 0; batch < 11; batch++) {
      const answers = await Promise.all(
        Array.from({ length: 10 }, (_, i) => api.gql(RATE_LIMITED_LOGIN, { input: { email: `sprayed-${batch}-${i}-${randomBytes(3).toString('hex')}@example.com`, password: 'Summer2026!!' } }, from(sprayer))),
      );
      kinds.push(...answers.map((a) => a.data.login.__typename));
    }
    expect(kinds.filter((k) => k === 'InvalidCredentialsError')).toHaveLength(100);
    expect(kinds.filter((k) => k === 'RateLimitedError')).toHaveLength(10);
    expect((await api.gql(RATE_LIMITED_LOGIN, { input: { email: user.email, password: user.password } }, from(sprayer))).data.login.__typename).toBe('RateLimitedError');
    expect((await api.gql(RATE_LIMITED_LOGIN, { input: { email: user.email, password: user.password } }, from(newAddress()))).data.login.__typename).toBe('AuthPayload');
  });

  it('ignores X-Forwarded-For from clients that are not trusted proxies', async () => {
    const other = await startTestApi();
    try {
      const user = await other.register();
      // Each guess claims another address; without a trusted proxy they all count for the real peer.
      for (let i = 0; i < 10; i++) await other.gql(LOGIN, { input: { email: user.email, password: 'wrong password!!' } }, from(newAddress()));
      const right = await other.gql(RATE_LIMITED_LOGIN, { input: { email: user.email, password: user.password } }, from(newAddress()));
      expect(right.data.login.__typename).toBe('RateLimitedError');
    } finally {
      await other.close();
    }
  });
});

describe('registration and refresh limits', () => {
  it('limits registrations per address, counting every attempt', async () => {
    const address = newAddress();
    // The limit in this file is 40 an hour: one account made, 39 attempts refused as duplicates.
    const email = `many-${randomBytes(4).toString('hex')}@example.com`;
    const kinds: string[] = [];
    for (let batch = 0; batch < 5; batch++) {
      const attempts = await Promise.all(
        Array.from({ length: 8 }, () => api.gql(RATE_LIMITED_REGISTER, { i: { email, password: 'a long enough password', name: 'Many' } }, from(address))),
      );
      kinds.push(...attempts.map((a) => a.data?.register?.__typename ?? JSON.stringify(a.errors)));
    }
    expect(kinds.sort()).toEqual(['AuthPayload', ...Array(39).fill('ConflictError')]);
    const input = { email: `late-${randomBytes(4).toString('hex')}@example.com`, password: 'a long enough password', name: 'Late' };
    const refused = (await api.gql(RATE_LIMITED_REGISTER, { i: input }, from(address))).data.register;
    expect(refused.__typename).toBe('RateLimitedError');
    expect(refused.retryAfterSeconds).toBeGreaterThan(0);
    expect(await api.app.db.user.count({ where: { email: input.email } })).toBe(0);
    expect((await api.gql(RATE_LIMITED_REGISTER, { i: input }, from(newAddress()))).data.register.__typename).toBe('AuthPayload');
  });

  it('refuses an address that keeps presenting invalid refresh tokens, even a valid one', async () => {
    const user = await api.register();
    const address = newAddress();
    for (let i = 0; i < 30; i++) {
      const result = await api.gql(RATE_LIMITED_REFRESH, { t: `cvy_rt_${randomBytes(32).toString('base64url')}` }, from(address));
      expect(result.data.refreshToken.__typename).toBe('InvalidCredentialsError');
    }
    const refused = (await api.gql(RATE_LIMITED_REFRESH, { t: user.refreshToken }, from(address))).data.refreshToken;
    expect(refused.__typename).toBe('RateLimitedError');
    expect(refused.retryAfterSeconds).toBeGreaterThan(0);
    // The refused request did not spend the token: it still works from elsewhere.
    expect((await api.gql(RATE_LIMITED_REFRESH, { t: user.refreshToken }, from(newAddress()))).data.refreshToken.__typename).toBe('AuthPayload');
  });
});

describe('sessions', () => {
  it('logout ends the access tokens of that session at once, and only of that session', async () => {
    const user = await api.register();
    const other = (await api.gql(LOGIN, { input: { email: user.email, password: user.password } })).data.login.tokens;
    expect((await api.gql(ME, {}, { token: user.accessToken })).data.me.id).toBe(user.id);
    expect((await api.gql(`mutation($t: String!) { logout(refreshToken: $t) }`, { t: user.refreshToken })).data.logout).toBe(true);
    const after = await api.gql(ME, {}, { token: user.accessToken });
    expect(after.errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    expect(after.data ?? null).toBeNull();
    expect((await api.gql(ME, {}, { token: other.accessToken })).data.me.id).toBe(user.id);
  });

  it('reuse of a spent refresh token ends every access token of that login at once', async () => {
    const user = await api.register();
    const rotated = (await api.gql(REFRESH, { t: user.refreshToken })).data.refreshToken.tokens;
    expect((await api.gql(ME, {}, { token: rotated.accessToken })).data.me.id).toBe(user.id);
    expect((await api.gql(REFRESH, { t: user.refreshToken })).data.refreshToken.__typename).toBe('InvalidCredentialsError');
    for (const token of [user.accessToken, rotated.accessToken]) {
      expect((await api.gql(ME, {}, { token })).errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');
    }
  });

  it('another API process refuses an ended session within about a second', async () => {
    const second = await createApp(api.config);
    const server = await startServer(second, { port: 0, host: '127.0.0.1', docker: second.docker });
    try {
      const user = await api.register();
      const meThere = async () => {
        const response = await fetch(`${server.url}/graphql`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${user.accessToken}` },
          body: JSON.stringify({ query: ME }),
        });
        return (await response.json()) as { data?: { me?: { id: string } }; errors?: { extensions?: { code?: string } }[] };
      };
      expect((await meThere()).data?.me?.id).toBe(user.id);
      await api.gql(`mutation($t: String!) { logout(refreshToken: $t) }`, { t: user.refreshToken });
      const loggedOutAt = Date.now();
      let refusedAfterMs: number | null = null;
      while (Date.now() - loggedOutAt < 3000) {
        if ((await meThere()).errors?.[0]?.extensions?.code === 'UNAUTHENTICATED') {
          refusedAfterMs = Date.now() - loggedOutAt;
          break;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(refusedAfterMs).not.toBeNull();
      expect(refusedAfterMs!).toBeLessThan(1500);
    } finally {
      await server.close();
      await second.close();
    }
  });
});

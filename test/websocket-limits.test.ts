// The WebSocket endpoint against a hostile client, over raw sockets: what is closed, when, with which code.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';

const LIMITS = {
  CONVOY_WS_MAX_CONNECTIONS_PER_IP: '6',
  CONVOY_WS_MAX_UNAUTHENTICATED_PER_IP: '3',
  CONVOY_WS_MAX_CONNECTIONS_PER_CALLER: '2',
  CONVOY_WS_MAX_OPERATIONS_PER_CONNECTION: '3',
  CONVOY_WS_AUTH_TIMEOUT_SECONDS: '1',
};

let api: TestApi;
let users: TestUser[];
beforeAll(async () => {
  api = await startTestApi(LIMITS);
  users = [await api.register(), await api.register(), await api.register()];
});
afterAll(async () => {
  await api?.close();
});

type Raw = { ws: WebSocket; messages: any[]; closed: Promise<{ code: number; reason: string; at: number }>; openedAt: number };
const open: Raw[] = [];

async function connect(): Promise<Raw> {
  const ws = new WebSocket(`${api.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
  const messages: any[] = [];
  ws.on('message', (data) => messages.push(JSON.parse(String(data))));
  const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: String(reason), at: Date.now() })));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const raw = { ws, messages, closed, openedAt: Date.now() };
  open.push(raw);
  return raw;
}

async function waitFor<T>(probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** connection_init with these params; resolves to the ack, or to the close when the server refused. */
async function init(raw: Raw, payload?: Record<string, unknown>): Promise<'ack' | { code: number; reason: string }> {
  raw.ws.send(JSON.stringify({ type: 'connection_init', ...(payload ? { payload } : {}) }));
  return Promise.race([waitFor(() => (raw.messages.some((m) => m.type === 'connection_ack') ? ('ack' as const) : undefined)), raw.closed]);
}

async function authenticated(user: TestUser): Promise<Raw> {
  const raw = await connect();
  expect(await init(raw, { authorization: `Bearer ${user.accessToken}` })).toBe('ack');
  return raw;
}

afterEach(async () => {
  // Every socket closed and seen closed, so the next test starts with the server's counts at zero.
  await Promise.all(open.splice(0).map(async (raw) => {
    raw.ws.close();
    await raw.closed;
  }));
  await new Promise((r) => setTimeout(r, 100));
});

describe('WebSocket limits', () => {
  it('closes a connection_init without credentials with 4403: no subscription works anonymously', async () => {
    const raw = await connect();
    expect(await init(raw)).toMatchObject({ code: 4403 });
    const empty = await connect();
    expect(await init(empty, { 'x-convoy-organization': 'whatever' })).toMatchObject({ code: 4403, reason: expect.stringContaining('credentials') });
  });

  it('closes a socket that sends no connection_init with 4408 once the auth timeout passes', async () => {
    const raw = await connect();
    const closed = await raw.closed;
    expect(closed.code).toBe(4408);
    expect(closed.at - raw.openedAt).toBeGreaterThanOrEqual(900);
    expect(closed.at - raw.openedAt).toBeLessThan(2500);
  });

  it('answers operations of a refused credential with UNAUTHENTICATED, then closes the socket with 4401', async () => {
    const raw = await connect();
    expect(await init(raw, { authorization: 'Bearer cvy_wrk_not_a_credential_at_all' })).toBe('ack');
    raw.ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: '{ me { id } }' } }));
    const answer = await waitFor(() => raw.messages.find((m) => m.id === '1'));
    expect(JSON.stringify(answer)).toContain('UNAUTHENTICATED');
    const closed = await raw.closed;
    expect(closed.code).toBe(4401);
    expect(closed.at - raw.openedAt).toBeLessThan(2500);
  });

  it('keeps an authenticated socket open past the auth timeout', async () => {
    const raw = await authenticated(users[0]);
    await new Promise((r) => setTimeout(r, 1500));
    expect(raw.ws.readyState).toBe(WebSocket.OPEN);
    raw.ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: '{ me { id } }' } }));
    const answer = await waitFor(() => raw.messages.find((m) => m.id === '1' && m.type === 'next'));
    expect(answer.payload.data.me.id).toBe(users[0].id);
  });

  it('limits unauthenticated sockets per address (4429)', async () => {
    const pending = [await connect(), await connect(), await connect()];
    const fourth = await connect();
    expect((await fourth.closed).code).toBe(4429);
    // An authenticated socket from the same address is still let in once one pending socket authenticates.
    expect(await init(pending[0], { authorization: `Bearer ${users[0].accessToken}` })).toBe('ack');
    const again = await connect();
    expect(again.ws.readyState).toBe(WebSocket.OPEN);
  });

  it('limits sockets per user (4429), and lets a new one in when one closes', async () => {
    const first = await authenticated(users[0]);
    await authenticated(users[0]);
    const third = await connect();
    expect(await init(third, { authorization: `Bearer ${users[0].accessToken}` })).toMatchObject({ code: 4429, reason: expect.stringContaining('account') });
    // Another user is not affected.
    await authenticated(users[1]);
    first.ws.close();
    await first.closed;
    await new Promise((r) => setTimeout(r, 100));
    await authenticated(users[0]);
  });

  it('limits sockets per address (4429)', async () => {
    for (const user of users) {
      await authenticated(user);
      await authenticated(user);
    }
    const seventh = await connect();
    expect((await seventh.closed)).toMatchObject({ code: 4429, reason: expect.stringContaining('address') });
  });

  it('limits operations in flight on one socket (4429) and releases its subscriptions', async () => {
    const baseline = api.app.bus.listenerCount();
    const raw = await authenticated(users[2]);
    for (let i = 1; i <= 3; i++) raw.ws.send(JSON.stringify({ id: String(i), type: 'subscribe', payload: { query: 'subscription { serviceEvents { kind } }' } }));
    await waitFor(() => (api.app.bus.listenerCount() === baseline + 3 ? true : undefined));
    raw.ws.send(JSON.stringify({ id: '4', type: 'subscribe', payload: { query: 'subscription { serviceEvents { kind } }' } }));
    expect(await raw.closed).toMatchObject({ code: 4429, reason: expect.stringContaining('operations') });
    await waitFor(() => (api.app.bus.listenerCount() === baseline ? true : undefined));
  });
});

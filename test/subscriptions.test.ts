import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';

let api: TestApi;
let user: TestUser;
beforeAll(async () => {
  api = await startTestApi();
  user = await api.register();
});
afterAll(async () => {
  await api?.close();
});

const SUBSCRIBE = `subscription($id: ID) { serviceEvents(serviceId: $id) { kind serviceId name status previousStatus } }`;

async function createService(name: string): Promise<string> {
  const result = await api.gql(`mutation($n: String!) { createService(input: { name: $n, source: { image: "nginx" } }) { ... on Service { id } } }`, { n: name }, { token: user.accessToken });
  return result.data.createService.id;
}

async function updateReplicas(id: string, replicas: number) {
  await api.gql(`mutation($id: ID!, $r: Int!) { updateService(id: $id, input: { replicas: $r }) { __typename } }`, { id, r: replicas }, { token: user.accessToken });
}

function wsClient(token: string): Client {
  return createClient({ url: `${api.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0, lazy: true });
}

async function waitFor(condition: () => boolean, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('serviceEvents subscription', () => {
  it('delivers service changes over graphql-ws and releases the subscription when the socket closes', async () => {
    const id = await createService('ws-sub');
    const client = wsClient(user.accessToken);
    const events: any[] = [];
    const baseline = api.app.bus.listenerCount();
    const dispose = client.subscribe({ query: SUBSCRIBE, variables: { id } }, { next: (m) => events.push(m), error: (e) => events.push({ error: e }), complete: () => {} });
    await waitFor(() => api.app.bus.listenerCount() === baseline + 1);

    await updateReplicas(id, 2);
    await api.gql(`mutation($id: ID!) { deleteService(id: $id) { __typename } }`, { id }, { token: user.accessToken });
    await waitFor(() => events.length >= 2);
    expect(events.map((e) => e.data?.serviceEvents.kind)).toEqual(['UPDATED', 'DELETED']);
    expect(events[1].data.serviceEvents).toMatchObject({ serviceId: id, name: 'ws-sub', status: 'DELETING' });

    dispose();
    await client.dispose();
    await waitFor(() => api.app.bus.listenerCount() === baseline);
  });

  it('cleans up when the client vanishes without unsubscribing', async () => {
    const id = await createService('ws-drop');
    const baseline = api.app.bus.listenerCount();
    const socket = new WebSocket(`${api.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
    await new Promise((r) => socket.once('open', r));
    socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${user.accessToken}` } }));
    await new Promise((r) => socket.once('message', r));
    socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: SUBSCRIBE, variables: { id } } }));
    await waitFor(() => api.app.bus.listenerCount() === baseline + 1);
    socket.terminate();
    await waitFor(() => api.app.bus.listenerCount() === baseline);
  });

  it('refuses a WebSocket subscription without credentials', async () => {
    const client = createClient({ url: `${api.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
    const outcome = await new Promise<any>((resolve) => {
      client.subscribe({ query: SUBSCRIBE }, { next: (m) => resolve(m), error: (e) => resolve({ error: e }), complete: () => resolve({ complete: true }) });
    });
    await client.dispose();
    const errors = outcome.errors ?? outcome.error;
    expect(JSON.stringify(errors)).toContain('UNAUTHENTICATED');
  });

  it('delivers the organization-wide feed over SSE', async () => {
    const controller = new AbortController();
    const response = await fetch(`${api.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${user.accessToken}` },
      body: JSON.stringify({ query: SUBSCRIBE }),
      signal: controller.signal,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    // The subscription is registered once the stream is open; create a service and read its event.
    const created = (async () => {
      await waitFor(() => api.app.bus.listenerCount() === 1);
      return createService('sse-sub');
    })();
    while (!text.includes('"kind":"CREATED"')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    const id = await created;
    const line = text.split('\n').find((l) => l.startsWith('data:') && l.includes('CREATED'))!;
    expect(JSON.parse(line.slice(5)).data.serviceEvents).toMatchObject({ kind: 'CREATED', serviceId: id, name: 'sse-sub', status: 'PENDING' });
    controller.abort();
    // Aborting the request ends the subscription on the server.
    await waitFor(() => api.app.bus.listenerCount() === 0);
  });
});

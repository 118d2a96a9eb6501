// The agent's two GraphQL transports against a real API: a heartbeat over HTTP (GraphQLClient) and over
// graphql-ws (GraphQLWsClient) answers alike, and failures map to the same errors, which is what the
// agent's retry and give-up rules are written against.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { GraphQLClient, GraphQLNetworkError, GraphQLRequestError } from '../worker-agent/src/graphql-client.js';
import { GraphQLWsClient, websocketEndpoint } from '../worker-agent/src/graphql-ws-client.js';
import { REGISTER_WORKER, WORKER_HEARTBEAT } from '../worker-agent/src/agent.js';
import { waitFor } from './helpers/wait.js';

let api: TestApi;
let admin: TestUser;
const clients: GraphQLWsClient[] = [];

beforeAll(async () => {
  api = await startTestApi({ CONVOY_WORKER_HEARTBEAT_SECONDS: '7' });
  admin = await api.register('Platform Admin');
});
afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.close()));
  await api?.close();
});

const input = { cpuPercent: 12, memoryUsedMb: 1000, memoryTotalMb: 4000, diskUsedGb: 10, diskTotalGb: 50, load1: 0.5, containers: [] };

async function registerWorker(): Promise<{ id: string; credential: string }> {
  const created = await api.gql(`mutation { createWorkerJoinToken(ttlSeconds: 600) { ... on CreateWorkerJoinTokenPayload { token } } }`, {}, { token: admin.accessToken });
  const hostname = `node-${Math.random().toString(36).slice(2, 8)}`;
  const registration = { joinToken: created.data.createWorkerJoinToken.token, hostname, cpuCores: 2, memoryMb: 4096, diskGb: 50, agentVersion: 'test', labels: [] };
  const result = await api.gql(REGISTER_WORKER, { input: registration });
  return { id: result.data.registerWorker.worker.id, credential: result.data.registerWorker.credential };
}

function wsClient(credential: string, options: { timeoutMs?: number; url?: string } = {}): GraphQLWsClient {
  const client = new GraphQLWsClient({ url: options.url ?? api.url, timeoutMs: options.timeoutMs, headers: { authorization: `Bearer ${credential}` } });
  clients.push(client);
  return client;
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: Error) => error,
  );
}

describe('heartbeats over HTTP and over graphql-ws', () => {
  it('answer alike, many over one socket', async () => {
    const worker = await registerWorker();
    const http = new GraphQLClient({ url: api.url, headers: { authorization: `Bearer ${worker.credential}` } });
    const ws = wsClient(worker.credential);
    const expected = { workerHeartbeat: { worker: { id: worker.id, status: 'ONLINE' }, nextHeartbeatInSeconds: 7 } };
    expect(await http.request(WORKER_HEARTBEAT, { input })).toEqual(expected);
    for (let i = 0; i < 3; i++) expect(await ws.request(WORKER_HEARTBEAT, { input: { ...input, cpuPercent: 20 + i } })).toEqual(expected);
    // Steady heartbeats are answered before their batch is written: the last one lands a moment later.
    const lastCpu = async () => ((await api.app.db.worker.findUniqueOrThrow({ where: { id: worker.id } })).lastMetrics as { cpuPercent?: number } | null)?.cpuPercent;
    await waitFor('the last heartbeat to be written', async () => (await lastCpu()) === 22, 5000, 20);
  });

  it('refuse a bad credential with UNAUTHENTICATED, and a removed worker on its open socket', async () => {
    const stranger = `cvy_wrk_${'x'.repeat(43)}`;
    for (const client of [new GraphQLClient({ url: api.url, headers: { authorization: `Bearer ${stranger}` } }), wsClient(stranger)]) {
      const error = await rejection(client.request(WORKER_HEARTBEAT, { input }));
      expect(error).toBeInstanceOf(GraphQLRequestError);
      expect((error as GraphQLRequestError).code).toBe('UNAUTHENTICATED');
    }
    const worker = await registerWorker();
    const ws = wsClient(worker.credential);
    await ws.request(WORKER_HEARTBEAT, { input });
    const removed = await api.gql(`mutation($id: ID!) { removeWorker(id: $id, force: true) { __typename } }`, { id: worker.id }, { token: admin.accessToken });
    expect(removed.data.removeWorker.__typename).toBe('Worker');
    for (const query of [WORKER_HEARTBEAT, `{ currentWorker { id } }`]) {
      const error = await rejection(ws.request(query, { input }));
      expect((error as GraphQLRequestError).code).toBe('UNAUTHENTICATED');
    }
  });

  it('report an unreachable API, a late answer and a caller abort as the HTTP client does', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    expect(await rejection(wsClient('cvy_wrk_unused_credential', { url: `http://127.0.0.1:${closedPort}` }).request(WORKER_HEARTBEAT, { input }))).toBeInstanceOf(GraphQLNetworkError);

    // A server that accepts the connection and never answers.
    const accepted: net.Socket[] = [];
    const silent = net.createServer((socket) => accepted.push(socket)).listen(0, '127.0.0.1');
    await new Promise((r) => silent.once('listening', r));
    try {
      const url = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
      const late = await rejection(wsClient('cvy_wrk_unused_credential', { url, timeoutMs: 200 }).request(WORKER_HEARTBEAT, { input }));
      expect(late).toBeInstanceOf(GraphQLNetworkError);
      expect(late.message).toContain('within 200 ms');
      const controller = new AbortController();
      const pending = wsClient('cvy_wrk_unused_credential', { url }).request(WORKER_HEARTBEAT, { input }, { signal: controller.signal });
      controller.abort(new Error('stopping'));
      expect((await rejection(pending)).message).toBe('stopping');
    } finally {
      for (const socket of accepted) socket.destroy();
      silent.close();
    }
  });

  it('find the WebSocket endpoint from the API URL the agent is given', () => {
    expect(websocketEndpoint('http://api.example.com:4000')).toBe('ws://api.example.com:4000/graphql');
    expect(websocketEndpoint('https://api.example.com/convoy/graphql')).toBe('wss://api.example.com/convoy/graphql');
    expect(websocketEndpoint('ws://127.0.0.1:4000/')).toBe('ws://127.0.0.1:4000/graphql');
  });
});

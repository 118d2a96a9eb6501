import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { subscribe } from './helpers/subscribe.js';
import { publishBuildStatus } from '../src/modules/builds/service.js';
import { appendBuildLog } from '../src/modules/builds/runner.js';

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
    await waitFor(() => events.length >= 3);
    // First the service as it is, then what changed.
    expect(events.map((e) => e.data?.serviceEvents.kind)).toEqual(['CURRENT', 'UPDATED', 'DELETED']);
    expect(events[0].data.serviceEvents).toMatchObject({ serviceId: id, name: 'ws-sub', status: 'PENDING' });
    expect(events[2].data.serviceEvents).toMatchObject({ serviceId: id, name: 'ws-sub', status: 'DELETING' });

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

  it('refuses a WebSocket without credentials at connection_init (4403), and a bad token per operation', async () => {
    const client = createClient({ url: `${api.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
    const outcome = await new Promise<any>((resolve) => {
      client.subscribe({ query: SUBSCRIBE }, { next: (m) => resolve(m), error: (e) => resolve({ error: e }), complete: () => resolve({ complete: true }) });
    });
    await client.dispose();
    expect(outcome.error?.code).toBe(4403);

    const badToken = wsClient('not-a-valid-token-at-all');
    const refused = await new Promise<any>((resolve) => {
      badToken.subscribe({ query: SUBSCRIBE }, { next: (m) => resolve(m), error: (e) => resolve({ error: e }), complete: () => resolve({ complete: true }) });
    });
    await badToken.dispose();
    expect(JSON.stringify(refused.errors ?? refused.error)).toContain('UNAUTHENTICATED');
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

describe('status subscriptions start with the current state', () => {
  // A build can be RUNNING before buildService has answered: a subscriber must still learn of it.
  async function serviceWithBuildAndDeployment(name: string) {
    const id = await createService(name);
    const organizationId = (await api.app.db.service.findUniqueOrThrow({ where: { id } })).organizationId;
    const build = await api.app.db.build.create({ data: { serviceId: id, sourceType: 'IMAGE', status: 'RUNNING' } });
    const deployment = await api.app.db.deployment.create({ data: { serviceId: id, image: 'nginx', config: {}, replicas: 1, status: 'ROLLED_BACK', reason: 'the new tasks never became healthy', events: { create: [{ status: 'QUEUED', message: 'deploy nginx' }, { status: 'ROLLED_BACK', message: 'the new tasks never became healthy' }] } } });
    return { id, organizationId, build, deployment };
  }

  it('buildEvents: the running status at once, then the change, then completes', async () => {
    const { organizationId, build } = await serviceWithBuildAndDeployment('cur-build');
    const events = subscribe(api.url, user.accessToken, `subscription($id: ID!) { buildEvents(buildId: $id) { buildId status } }`, { id: build.id }, 'buildEvents');
    await events.waitFor((e) => e.length >= 1, 5000);
    expect(events.events).toEqual([{ buildId: build.id, status: 'RUNNING' }]);
    await api.app.db.build.update({ where: { id: build.id }, data: { status: 'SUCCEEDED' } });
    await publishBuildStatus(api.app, build, organizationId, 'SUCCEEDED', 'built');
    await events.waitFor((e) => e.length >= 2, 5000);
    expect(events.events.map((e: any) => e.status)).toEqual(['RUNNING', 'SUCCEEDED']);
    await events.close();
  });

  it('deploymentEvents of a finished rollout: its final status and reason, then the stream completes', async () => {
    const { deployment } = await serviceWithBuildAndDeployment('cur-deploy');
    const client = wsClient(user.accessToken);
    const received: any[] = [];
    const completed = new Promise<void>((resolve, reject) => {
      client.subscribe({ query: `subscription($id: ID!) { deploymentEvents(deploymentId: $id) { deploymentId status message } }`, variables: { id: deployment.id } }, { next: (m) => received.push(m), error: reject, complete: resolve });
    });
    await completed;
    await client.dispose();
    expect(received.map((m) => m.data?.deploymentEvents)).toEqual([{ deploymentId: deployment.id, status: 'ROLLED_BACK', message: 'the new tasks never became healthy' }]);
  });

  it('a status or log subscription on a quiet build lets go of its listener as soon as the client leaves', async () => {
    const { build } = await serviceWithBuildAndDeployment('cur-quiet');
    const baseline = api.app.bus.listenerCount();
    for (const query of ['subscription($id: ID!) { buildEvents(buildId: $id) { status } }', 'subscription($id: ID!) { buildLogs(buildId: $id) { seq line } }']) {
      const collected = subscribe(api.url, user.accessToken, query, { id: build.id }, 'x');
      await waitFor(() => api.app.bus.listenerCount() === baseline + 1);
      await collected.close();
      await waitFor(() => api.app.bus.listenerCount() === baseline);
    }
  });

  it("another organization's build or deployment behaves exactly like a missing one", async () => {
    const { build, deployment } = await serviceWithBuildAndDeployment('cur-other');
    const mallory = await api.register();
    const outcomes: string[] = [];
    for (const [query, id] of [
      ['subscription($id: ID!) { buildEvents(buildId: $id) { status } }', build.id],
      ['subscription($id: ID!) { buildEvents(buildId: $id) { status } }', 'cnotarealbuild000000000000'],
      ['subscription($id: ID!) { deploymentEvents(deploymentId: $id) { status } }', deployment.id],
      ['subscription($id: ID!) { deploymentEvents(deploymentId: $id) { status } }', 'cnotarealdeployment0000000'],
    ]) {
      const collected = subscribe(api.url, mallory.accessToken, query, { id }, 'x');
      await waitFor(() => collected.errors.length > 0 || collected.events.length > 0);
      outcomes.push(JSON.stringify(collected.errors).replace(id, '<id>'));
      await collected.close();
    }
    expect(outcomes[0]).toContain('NOT_FOUND');
    expect(outcomes[0]).toEqual(outcomes[1]);
    expect(outcomes[2]).toContain('NOT_FOUND');
    expect(outcomes[2]).toEqual(outcomes[3]);
  });
});

describe('resuming a subscription after a disconnect (an API restart)', () => {
  const LOGS = 'subscription($id: ID!, $after: Int) { buildLogs(buildId: $id, afterLine: $after) { seq line } }';
  const EVENTS = 'subscription($id: ID!, $after: ID) { deploymentEvents(deploymentId: $id, afterEventId: $after) { status message eventId } }';

  /** Every message of a subscription until it completes (or fails). */
  function untilComplete(token: string, query: string, variables: Record<string, unknown>) {
    const client = wsClient(token);
    const received: any[] = [];
    const done = new Promise<any[]>((resolve, reject) => {
      client.subscribe({ query, variables }, { next: (m) => received.push(m), error: reject, complete: () => resolve(received) });
    }).finally(() => client.dispose());
    return { received, done };
  }

  async function runningBuild(name: string) {
    const id = await createService(name);
    return api.app.db.build.create({ data: { serviceId: id, sourceType: 'IMAGE', status: 'RUNNING' } });
  }

  it('buildLogs(afterLine): the lines after the last one the client has, stored then live, none twice and none missing', async () => {
    const build = await runningBuild('resume-logs');
    await appendBuildLog(api.app, build.id, ['step 0', 'step 1']);
    const baseline = api.app.bus.listenerCount();
    const first = subscribe(api.url, user.accessToken, LOGS, { id: build.id }, 'buildLogs');
    await first.waitFor((e) => e.length >= 2, 5000);
    await appendBuildLog(api.app, build.id, ['step 2']);
    await first.waitFor((e) => e.length >= 3, 5000);
    await first.close();
    await waitFor(() => api.app.bus.listenerCount() === baseline);

    // The build goes on while the client is away; it comes back with the seq of its last line.
    await appendBuildLog(api.app, build.id, ['step 3', 'step 4']);
    const resumed = untilComplete(user.accessToken, LOGS, { id: build.id, after: first.events.at(-1).seq });
    await waitFor(() => resumed.received.length >= 2);
    await appendBuildLog(api.app, build.id, ['step 5']);
    await waitFor(() => resumed.received.length >= 3);
    await api.app.db.build.update({ where: { id: build.id }, data: { status: 'SUCCEEDED' } });
    await api.app.bus.publish('buildLog', build.id, { buildId: build.id, done: true, status: 'SUCCEEDED' });
    const afterwards = (await resumed.done).map((m) => m.data.buildLogs);

    expect(first.events).toEqual([0, 1, 2].map((seq) => ({ seq, line: `step ${seq}` })));
    expect(afterwards).toEqual([3, 4, 5].map((seq) => ({ seq, line: `step ${seq}` })));
    // A finished build's log from a given line: only what follows, then the stream completes.
    expect((await untilComplete(user.accessToken, LOGS, { id: build.id, after: 4 }).done).map((m) => m.data.buildLogs)).toEqual([{ seq: 5, line: 'step 5' }]);
    expect(await untilComplete(user.accessToken, LOGS, { id: build.id, after: 5 }).done).toEqual([]);
  });

  it('buildLogs(afterLine): a negative line is BAD_USER_INPUT; another organization\'s build is NOT_FOUND like a missing one', async () => {
    const build = await runningBuild('resume-logs-bad');
    const negative = subscribe(api.url, user.accessToken, LOGS, { id: build.id, after: -1 }, 'buildLogs');
    await waitFor(() => negative.errors.length > 0 || negative.events.length > 0);
    expect(JSON.stringify(negative.errors)).toContain('BAD_USER_INPUT');
    expect(negative.events).toEqual([]);
    await negative.close();

    const mallory = await api.register();
    const outcomes: string[] = [];
    for (const id of [build.id, 'cnotarealbuild000000000000']) {
      const collected = subscribe(api.url, mallory.accessToken, LOGS, { id, after: 0 }, 'buildLogs');
      await waitFor(() => collected.errors.length > 0 || collected.events.length > 0);
      outcomes.push(JSON.stringify(collected.errors).replace(id, '<id>'));
      await collected.close();
    }
    expect(outcomes[0]).toContain('NOT_FOUND');
    expect(outcomes[0]).toEqual(outcomes[1]);
  });

  async function deploymentWithEvents(name: string, statuses: string[]) {
    const id = await createService(name);
    const deployment = await api.app.db.deployment.create({
      data: { serviceId: id, image: 'nginx', config: {}, replicas: 1, status: statuses.at(-1) as any, events: { create: statuses.map((status) => ({ status: status as any, message: `now ${status.toLowerCase()}` })) } },
    });
    const events = await api.app.db.deploymentEvent.findMany({ where: { deploymentId: deployment.id }, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] });
    return { deployment, events };
  }

  it('deploymentEvents(afterEventId): exactly the stored events after that one; every event, the current state included, carries its eventId', async () => {
    const { deployment, events } = await deploymentWithEvents('resume-deploy', ['QUEUED', 'DEPLOYING', 'RUNNING']);
    expect(events.map((e) => e.status)).toEqual(['QUEUED', 'DEPLOYING', 'RUNNING']);
    const current = await untilComplete(user.accessToken, EVENTS, { id: deployment.id }).done;
    expect(current.map((m) => m.data.deploymentEvents)).toEqual([{ status: 'RUNNING', message: 'now running', eventId: events[2]!.id }]);

    const afterQueued = await untilComplete(user.accessToken, EVENTS, { id: deployment.id, after: events[0]!.id }).done;
    expect(afterQueued.map((m) => m.data.deploymentEvents)).toEqual([
      { status: 'DEPLOYING', message: 'now deploying', eventId: events[1]!.id },
      { status: 'RUNNING', message: 'now running', eventId: events[2]!.id },
    ]);
    // Nothing happened since the last one: nothing to send, and a finished rollout completes.
    expect(await untilComplete(user.accessToken, EVENTS, { id: deployment.id, after: events[2]!.id }).done).toEqual([]);
  });

  it("deploymentEvents(afterEventId): another deployment's or organization's event, or another organization's deployment, is NOT_FOUND like a missing one", async () => {
    const { deployment, events } = await deploymentWithEvents('resume-deploy-own', ['QUEUED', 'DEPLOYING']);
    const other = await deploymentWithEvents('resume-deploy-other', ['QUEUED']);
    const mallory = await api.register();
    const outcome = async (token: string, id: string, after: string) => {
      const collected = subscribe(api.url, token, EVENTS, { id, after }, 'deploymentEvents');
      await waitFor(() => collected.errors.length > 0 || collected.events.length > 0);
      await collected.close();
      expect(collected.events).toEqual([]);
      return JSON.stringify(collected.errors).replace(id, '<id>').replace(after, '<after>');
    };
    const missingEvent = await outcome(user.accessToken, deployment.id, 'cnotarealevent000000000000');
    expect(missingEvent).toContain('NOT_FOUND');
    expect(await outcome(user.accessToken, deployment.id, other.events[0]!.id)).toEqual(missingEvent);
    const missingDeployment = await outcome(mallory.accessToken, 'cnotarealdeployment0000000', events[0]!.id);
    expect(missingDeployment).toContain('NOT_FOUND');
    expect(await outcome(mallory.accessToken, deployment.id, events[0]!.id)).toEqual(missingDeployment);
  });
});

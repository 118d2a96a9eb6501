// Collects a subscription's events over a real graphql-ws connection.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

export type Collected<T> = { events: T[]; errors: unknown[]; waitFor(predicate: (events: T[]) => boolean, timeoutMs?: number): Promise<T[]>; close(): Promise<void> };

export function subscribe<T = any>(apiUrl: string, token: string, query: string, variables: Record<string, unknown>, field: string): Collected<T> {
  const client = createClient({ url: `${apiUrl.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0 });
  const events: T[] = [];
  const errors: unknown[] = [];
  const stop = client.subscribe<Record<string, T>>({ query, variables }, {
    next: (message) => (message.errors ? errors.push(message.errors) : events.push(message.data![field])),
    error: (error) => errors.push(error),
    complete: () => {},
  });
  return {
    events,
    errors,
    async waitFor(predicate, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(events)) {
        if (errors.length) throw new Error(`subscription failed: ${JSON.stringify(errors)}`);
        if (Date.now() > deadline) throw new Error(`subscription: condition not met; got ${JSON.stringify(events).slice(0, 800)}`);
        await new Promise((r) => setTimeout(r, 25));
      }
      return events;
    },
    async close() {
      stop();
      await client.dispose();
    },
  };
}

/** Resolves once the server has registered `count` more event-bus listeners than `baseline`. */
export async function waitForListeners(bus: { listenerCount(): number }, count: number, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (bus.listenerCount() < count) {
    if (Date.now() > deadline) throw new Error('subscription did not register in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

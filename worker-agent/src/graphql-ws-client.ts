// The agent's GraphQL client over one long-lived WebSocket (graphql-ws, the API's own /graphql path).
// Same contract as GraphQLClient (request() resolves to data, rejects with GraphQLRequestError when the
// API answered with errors and GraphQLNetworkError when it could not be reached), but the credential
// travels once, in connection_init, and each heartbeat is a single WebSocket frame each way: the API
// parses no HTTP request per heartbeat. The socket opens with the first request and stays open; a
// request that finds it closed opens a new one. The library never re-sends an operation: retrying a
// heartbeat is the agent's decision, as over HTTP.
import { createClient, type Client, type FormattedExecutionResult } from 'graphql-ws';
import WebSocket from 'ws';
import { GraphQLNetworkError, GraphQLRequestError, graphqlEndpoint, type GraphQLErrorPayload, type GraphQLRequestOptions } from './graphql-client.js';
import { boundedSignal } from './sleep.js';

export type GraphQLWsClientOptions = {
  url: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
  userAgent?: string;
  /** Idle sockets send a ping this often, so proxies and NAT keep the connection. */
  keepAliveMs?: number;
};

// setTimeout's ceiling: the socket stays open between heartbeats, however far apart they are.
const KEEP_SOCKET_OPEN_MS = 2 ** 31 - 1;

export class GraphQLWsClient {
  readonly url: string;
  private readonly client: Client;
  private readonly timeoutMs: number;

  constructor(options: GraphQLWsClientOptions) {
    this.url = websocketEndpoint(options.url);
    this.timeoutMs = options.timeoutMs ?? 10_000;
    const headers = { ...options.headers };
    this.client = createClient({
      url: this.url,
      // Connection params carry what HTTP sends as headers; the API reads Authorization from them.
      connectionParams: headers,
      webSocketImpl: class extends WebSocket {
        constructor(address: string, protocols?: string | string[]) {
          super(address, protocols, options.userAgent ? { headers: { 'user-agent': options.userAgent } } : {});
          // graphql-ws reports failures through close events; it drops its own error listener when it
          // terminates a socket still connecting (a timed-out request), and ws then emits an 'error'
          // nobody listens to, which would crash the agent.
          this.on('error', () => {});
        }
      },
      lazy: true,
      lazyCloseTimeout: KEEP_SOCKET_OPEN_MS,
      keepAlive: options.keepAliveMs ?? 15_000,
      retryAttempts: 0,
    });
  }

  /** Resolves to `data`; rejects with GraphQLRequestError when the result carries errors. */
  request<T>(query: string, variables: Record<string, unknown> = {}, options: GraphQLRequestOptions = {}): Promise<T> {
    if (options.headers && Object.keys(options.headers).length) {
      // Per-request headers would need a connection of their own.
      return Promise.reject(new Error('GraphQLWsClient sends headers once per connection; pass them to the constructor'));
    }
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const bounded = boundedSignal(options.signal, timeoutMs);
    return new Promise<T>((resolve, reject) => {
      let result: FormattedExecutionResult<Record<string, unknown>, unknown> | undefined;
      let settled = false;
      // Cancelling an operation completes it too: only the first outcome counts.
      const finish = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        bounded.signal.removeEventListener('abort', onAbort);
        bounded.dispose();
        outcome();
      };
      const cancel = this.client.subscribe<Record<string, unknown>>(
        { query, variables },
        {
          next: (value) => (result = value),
          error: (error) => finish(() => reject(toRequestError(error, this.url))),
          complete: () =>
            finish(() => {
              if (result?.errors?.length) reject(new GraphQLRequestError(result.errors as GraphQLErrorPayload[], 200));
              else if (result?.data === undefined || result.data === null) reject(new GraphQLNetworkError(`${this.url} answered without data`));
              else resolve(result.data as T);
            }),
        },
      );
      const onAbort = () => {
        cancel();
        // The caller's own abort is not a network failure: it propagates as is.
        if (options.signal?.aborted) return finish(() => reject(options.signal!.reason));
        // No answer in time: the socket may be dead without having noticed. The next request opens a new one.
        this.client.terminate();
        finish(() => reject(new GraphQLNetworkError(`no answer from ${this.url} within ${timeoutMs} ms`)));
      };
      if (bounded.signal.aborted) onAbort();
      else bounded.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Closes the socket and its timers (the agent's stop()); don't send requests after this. */
  async close(): Promise<void> {
    await this.client.dispose();
  }
}

/** An operation refused before execution (GraphQL errors), or the socket failed or closed (CloseEvent, Error). */
function toRequestError(error: unknown, url: string): Error {
  if (Array.isArray(error)) return new GraphQLRequestError(error as GraphQLErrorPayload[], 200);
  const close = error as { code?: number; reason?: string };
  if (typeof close?.code === 'number') return new GraphQLNetworkError(`${url} closed the connection: ${close.code}${close.reason ? ` ${close.reason}` : ''}`);
  const cause = error as { code?: string; message?: string };
  return new GraphQLNetworkError(`cannot reach ${url}: ${[cause?.code, cause?.message].filter(Boolean).join(' ') || String(error)}`, { cause: error });
}

/** Accepts the API's base URL or its GraphQL endpoint, http(s) or ws(s). */
export function websocketEndpoint(apiUrl: string): string {
  const url = new URL(graphqlEndpoint(apiUrl.replace(/^ws(s?):/, 'http$1:')));
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

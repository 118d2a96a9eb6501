// The agent's only way to the control plane: GraphQL over HTTP with fetch (undici keeps connections
// alive per origin). Deliberately tiny: the agent sends a handful of fixed operations.

import { boundedSignal } from './sleep.js';

export type GraphQLErrorPayload = { message: string; path?: (string | number)[]; extensions?: { code?: string } & Record<string, unknown> };

/** The API answered, with errors (`code` is the first error's `extensions.code`, e.g. UNAUTHENTICATED). */
export class GraphQLRequestError extends Error {
  readonly code: string;
  constructor(
    readonly errors: GraphQLErrorPayload[],
    readonly status: number,
  ) {
    super(errors.map((error) => (error.extensions?.code ? `${error.extensions.code}: ${error.message}` : error.message)).join('; '));
    this.name = 'GraphQLRequestError';
    this.code = errors[0]?.extensions?.code ?? 'UNKNOWN';
  }
}

/** The API could not be reached or gave no GraphQL answer: worth retrying later. */
export class GraphQLNetworkError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GraphQLNetworkError';
  }
}

export type GraphQLRequestOptions = {
  /** Aborts the request (the caller is stopping); the promise then rejects with the signal's reason. */
  signal?: AbortSignal;
  timeoutMs?: number;
  headers?: Record<string, string>;
};

export type GraphQLClientOptions = { url: string; headers?: Record<string, string>; timeoutMs?: number; userAgent?: string };

export class GraphQLClient {
  readonly url: string;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;

  constructor(options: GraphQLClientOptions) {
    this.url = graphqlEndpoint(options.url);
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.headers = {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json',
      ...(options.userAgent ? { 'user-agent': options.userAgent } : {}),
      ...options.headers,
    };
  }

  /** Resolves to `data`; rejects with GraphQLRequestError when the response carries errors. */
  async request<T>(query: string, variables: Record<string, unknown> = {}, options: GraphQLRequestOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const bounded = boundedSignal(options.signal, timeoutMs);
    let response: Response;
    let text: string;
    try {
      response = await fetch(this.url, { method: 'POST', headers: { ...this.headers, ...options.headers }, body: JSON.stringify({ query, variables }), signal: bounded.signal });
      text = await response.text();
    } catch (error) {
      // The caller's own abort is not a network failure: it propagates as is.
      if (options.signal?.aborted) throw options.signal.reason;
      if (bounded.timedOut()) throw new GraphQLNetworkError(`no answer from ${this.url} within ${timeoutMs} ms`, { cause: error });
      throw new GraphQLNetworkError(`cannot reach ${this.url}: ${describeFetchError(error)}`, { cause: error });
    } finally {
      bounded.dispose();
    }
    let body: { data?: T | null; errors?: GraphQLErrorPayload[] };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // A proxy's error page or a server that is not (yet) Convoy: transient from the agent's point of view.
      throw new GraphQLNetworkError(`${this.url} answered HTTP ${response.status} without a GraphQL response: ${text.slice(0, 200)}`);
    }
    if (body.errors?.length) throw new GraphQLRequestError(body.errors, response.status);
    if (body.data === undefined || body.data === null) throw new GraphQLNetworkError(`${this.url} answered HTTP ${response.status} without data`);
    return body.data;
  }
}

/** Accepts the API's base URL (http://host:4000) or its GraphQL endpoint (http://host:4000/graphql). */
export function graphqlEndpoint(apiUrl: string): string {
  const url = new URL(apiUrl);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`API URL ${apiUrl} must be http(s)`);
  if (!url.pathname.endsWith('/graphql')) url.pathname = `${url.pathname.replace(/\/+$/, '')}/graphql`;
  return url.toString();
}

function describeFetchError(error: unknown): string {
  // undici puts the useful part (ECONNREFUSED 127.0.0.1:4000) in the cause.
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code || cause?.message) return [cause.code, cause.message].filter(Boolean).join(' ');
  return error instanceof Error ? error.message : String(error);
}

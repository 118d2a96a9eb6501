// One HTTP port: GraphQL over HTTP and SSE (Yoga), graphql-ws on the same path, health and readiness.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { GraphQLError, getOperationAST, parse } from 'graphql';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Socket } from 'node:net';
import { useServer } from 'graphql-ws/use/ws';
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import { useGraphQlJit } from '@envelop/graphql-jit';
import type Docker from 'dockerode';
import { RequestCache } from '@pothos/plugin-scope-auth';
import type { App } from '../app.js';
import type { GraphQLContext } from './context.js';
import { schema } from './schema.js';
import { authenticate } from '../modules/auth/service.js';
import { DomainError, NotFoundError, ForbiddenError, UnauthenticatedError, ValidationError, ConflictError, QuotaExceededError, RateLimitedError, ServiceUnavailableError } from '../modules/common/errors.js';
import { asServiceUnavailable } from '../modules/common/unavailable.js';
import type { Caller } from '../modules/auth/caller.js';
import { checkReadiness } from './readiness.js';
import { corsOptions, graphiqlCspPlugin, setSecurityHeaders } from './http-security.js';
import { introspectionPlugin, storableStringsPlugin } from './operation-guards.js';
import { WebSocketLimits } from './websocket-limits.js';
import { handleLogDownload, LOG_DOWNLOAD_PATH } from '../modules/logs/http.js';
import { handleInstallScript, INSTALL_SCRIPT_PATH } from '../modules/workers/install.js';
import { CONVOY_GRAPHIQL_OPTIONS, GRAPHIQL_ASSETS_PATH, graphiqlEnabled, handleGraphiQLAsset, renderConvoyGraphiQL } from './graphiql.js';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;
// What an operation refused before it is parsed runs instead (graphql-ws wants an operation to run).
const REFUSED_OPERATION = parse('{ __typename }');
// Yoga's default request body limit, which this server enforces itself (see requestBodyLimitPlugin).
const MAX_REQUEST_BODY_BYTES = 25_000_000;

type ServerContext = { req?: IncomingMessage; res?: ServerResponse; connectionParams?: Record<string, unknown> };
type HeaderSource = { get(name: string): string | null };

// By name, not instanceof: graphql ships both CJS and ESM builds, and errors may come from either.
function isGraphQLError(error: unknown): error is GraphQLError {
  return error instanceof Error && error.name === 'GraphQLError';
}

function isPothosValidationError(error: unknown): error is Error {
  return error instanceof Error && error.name === 'PothosValidationError';
}

/** Errors that answer a client's mistake: not worth an error-level log line. */
function isExpectedError(error: unknown): boolean {
  const original = isGraphQLError(error) ? error.originalError : error;
  // An outage is logged once, as a warning, where it is answered (maskError).
  return original instanceof DomainError || isPothosValidationError(original) || asServiceUnavailable(original) !== null;
}

const MAX_ERROR_MESSAGE = 200;
function capMessage(message: string): string {
  return message.length <= MAX_ERROR_MESSAGE ? message : `${message.slice(0, MAX_ERROR_MESSAGE)}…`;
}

/**
 * The same error less the cause's text. Yoga answers application/json with 400 (not 200) only while that
 * text is attached, or when the status is not marked spec-only: the mark goes with the text.
 */
function withoutCause(error: GraphQLError): GraphQLError {
  const extensions = error.extensions as Record<string, unknown> | undefined;
  if (!extensions || !('originalError' in extensions)) return error;
  delete extensions.originalError;
  const http = extensions.http as { spec?: boolean; status?: number } | undefined;
  if (http?.spec) extensions.http = { ...http, spec: undefined };
  return error;
}

function errorCode(error: DomainError): string {
  if (error instanceof UnauthenticatedError) return 'UNAUTHENTICATED';
  if (error instanceof ForbiddenError) return 'FORBIDDEN';
  if (error instanceof NotFoundError) return 'NOT_FOUND';
  if (error instanceof ValidationError) return 'BAD_USER_INPUT';
  if (error instanceof ConflictError) return 'CONFLICT';
  if (error instanceof QuotaExceededError) return 'QUOTA_EXCEEDED';
  if (error instanceof RateLimitedError) return 'RATE_LIMITED';
  if (error instanceof ServiceUnavailableError) return 'SERVICE_UNAVAILABLE';
  return 'BAD_REQUEST';
}

/**
 * A dependency is down: retryable, and named so an operator knows which. A request that failed as a whole
 * (no path: authenticating needed the database) is answered 503; a field's error keeps the 200 that
 * graphql-over-http requires next to data (Yoga answers with the highest status its errors carry).
 */
function serviceUnavailable(error: ServiceUnavailableError, path?: readonly (string | number)[]): GraphQLError {
  const extensions = { code: 'SERVICE_UNAVAILABLE', dependency: error.dependency, retryable: true };
  return new GraphQLError(error.message, { extensions: path ? extensions : { ...extensions, http: { status: 503 } }, path });
}

// A WebSocket's connection params are sent once and read by every operation on it: read them once.
const connectionHeaders = new WeakMap<Record<string, unknown>, HeaderSource>();
const NO_HEADERS: HeaderSource = { get: () => null };

function headersFromConnectionParams(params: Record<string, unknown> | undefined): HeaderSource {
  if (!params) return NO_HEADERS;
  let headers = connectionHeaders.get(params);
  if (!headers) {
    const lower = new Map(Object.entries(params).map(([k, v]) => [k.toLowerCase(), typeof v === 'string' ? v : null]));
    headers = { get: (name) => lower.get(name.toLowerCase()) ?? null };
    connectionHeaders.set(params, headers);
  }
  return headers;
}

function requestIdPlugin(): Plugin {
  const ids = new WeakMap<Request, string>();
  return {
    onRequest({ request }) {
      const given = request.headers.get('x-request-id');
      ids.set(request, given && REQUEST_ID.test(given) ? given : randomUUID());
    },
    onResponse({ request, response }) {
      const id = ids.get(request);
      if (id) response.headers.set('x-request-id', id);
    },
    onContextBuilding({ context, extendContext }) {
      const request = (context as { request?: Request }).request;
      const id = (request && ids.get(request)) ?? randomUUID();
      extendContext({ requestId: id } as never);
    },
  };
}

/**
 * scope-auth keeps each operation's grant cache in a WeakMap keyed by the context, and the cache points
 * back at its context. V8's young-generation collector treats WeakMap values as live, so every
 * operation's context and what hangs off it survived until a full collection: measured, a few kB per
 * worker heartbeat promoted to the old generation. Dropped as soon as the operation is done.
 */
function releaseRequestCachesPlugin(): Plugin {
  return {
    onExecute({ args }) {
      return {
        onExecuteDone() {
          RequestCache.clearForContext(args.contextValue as object);
        },
      };
    },
  };
}

function bodyTooLarge(): GraphQLError {
  return new GraphQLError('Request body too large', { extensions: { code: 'REQUEST_ENTITY_TOO_LARGE', http: { status: 413 } } });
}

/**
 * Yoga's own body limit pipes every request body through a counting TransformStream: measured, about a
 * tenth of a millisecond of CPU per request, a sixth of what a worker heartbeat over HTTP costs. A body
 * with a valid Content-Length cannot be longer than that (Node's HTTP parser reads exactly that many
 * bytes, and refuses Content-Length next to Transfer-Encoding), so only a body without one (chunked)
 * is counted, as it is read.
 */
function requestBodyLimitPlugin(limit: number): Plugin {
  return {
    onRequestParse({ request, requestParser, setRequestParser, fetchAPI }) {
      const length = request.headers.get('content-length');
      if (length !== null) {
        if (!/^\d+$/.test(length)) throw new GraphQLError('Content-Length header is invalid.', { extensions: { code: 'BAD_REQUEST', http: { status: 400 } } });
        if (Number(length) > limit) throw bodyTooLarge();
        return;
      }
      if (!requestParser || !request.body) return;
      setRequestParser(async (unbounded) => {
        const reader = unbounded.body!.getReader();
        const chunks: Uint8Array[] = [];
        let size = 0;
        for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
          size += chunk.value.byteLength;
          if (size > limit) {
            await reader.cancel();
            throw bodyTooLarge();
          }
          chunks.push(chunk.value);
        }
        const body = Buffer.concat(chunks);
        return requestParser(new fetchAPI.Request(unbounded.url, { method: unbounded.method, headers: unbounded.headers, signal: unbounded.signal, body }));
      });
    },
  };
}

export function createGraphQLHandler(app: App): YogaServerInstance<ServerContext, GraphQLContext> {
  const { limits, nodeEnv } = app.config;
  return createYoga<ServerContext, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    graphiql: graphiqlEnabled(app.config) ? CONVOY_GRAPHIQL_OPTIONS : false,
    renderGraphiQL: renderConvoyGraphiQL,
    landingPage: false,
    // Enforced by requestBodyLimitPlugin, at a fraction of the cost.
    maxRequestBodySize: false,
    logging: {
      debug: (...args) => app.log.debug({ args }, 'yoga'),
      info: (...args) => app.log.info({ args }, 'yoga'),
      warn: (...args) => app.log.warn({ args }, 'yoga'),
      // Yoga reports every error it masked, expected ones too (a refused input, a missing service).
      error: (...args) => (args.length === 1 && isExpectedError(args[0]) ? app.log.debug({ args }, 'yoga') : app.log.error({ args }, 'yoga')),
    },
    cors: corsOptions(app.config.http.corsOrigins),
    maskedErrors: {
      maskError(error, message) {
        const original = isGraphQLError(error) ? error.originalError : error;
        const outage = asServiceUnavailable(original);
        if (outage) {
          app.log.warn({ err: original, dependency: outage.dependency }, 'dependency unavailable');
          return serviceUnavailable(outage, (error as GraphQLError).path);
        }
        if (original instanceof DomainError) {
          return new GraphQLError(original.message, { extensions: { code: errorCode(original) }, path: (error as GraphQLError).path });
        }
        // Pothos's checks of connection arguments and ids: the client's mistake, told briefly (a message
        // may quote the whole input).
        if (isPothosValidationError(original)) {
          return new GraphQLError(capMessage(original.message), { extensions: { code: 'BAD_USER_INPUT' }, path: (error as GraphQLError).path });
        }
        // GraphQLErrors are deliberate (auth, validation of the document): they pass through unmasked,
        // less what Yoga attaches of the cause (the JSON parser's text, which quotes the body).
        if (isGraphQLError(error) && (!error.originalError || isGraphQLError(error.originalError))) return withoutCause(error);
        app.log.error({ err: original }, 'unexpected error');
        return new GraphQLError(message, { extensions: { code: 'INTERNAL_SERVER_ERROR' }, path: (error as GraphQLError).path });
      },
    },
    plugins: [
      requestIdPlugin(),
      releaseRequestCachesPlugin(),
      graphiqlCspPlugin(),
      storableStringsPlugin(),
      introspectionPlugin(app.config.http.introspection),
      EnvelopArmorPlugin({
        maxDepth: { n: limits.maxDepth },
        maxAliases: { n: limits.maxAliases },
        costLimit: { maxCost: limits.maxCost },
        maxTokens: { n: limits.maxTokens },
        maxDirectives: { n: 50 },
        blockFieldSuggestion: { enabled: nodeEnv === 'production' },
      }),
      // After the request parsers Yoga registers, so it wraps the one that applies.
      requestBodyLimitPlugin(MAX_REQUEST_BODY_BYTES),
      // Worker agents' queries and mutations (heartbeats above all: most of the API's traffic) run
      // compiled: measured, a heartbeat's execution and variable coercion cost 88 µs in graphql-js and
      // 33 µs compiled. Only those: compiled execution breaks subscriptions (their arguments arrive
      // undefined) and plugin-prisma's query planning (more SQL statements for nested lists).
      useGraphQlJit({}, {
        enableIf: ({ contextValue, document, operationName }) =>
          (contextValue as Partial<GraphQLContext>).caller?.kind === 'worker' && getOperationAST(document, operationName)?.operation !== 'subscription',
      }),
    ],
    context: async (initial) => {
      const requestId = (initial as { requestId?: string }).requestId ?? randomUUID();
      const headers: HeaderSource = initial.request && !initial.connectionParams ? initial.request.headers : headersFromConnectionParams(initial.connectionParams);
      let caller: Caller;
      try {
        caller = await authenticate(app, headers);
      } catch (error) {
        if (error instanceof UnauthenticatedError) throw new GraphQLError(error.message, { extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } } });
        throw error;
      }
      const actor = caller.kind === 'user' && caller.organization ? { userId: caller.userId, organizationId: caller.organization.organizationId, role: caller.organization.role, requestId } : null;
      return { requestId, app, caller, actor };
    },
  });
}

// Past this much unsent data on a socket, sends wait for the network again (see coalesceFrames).
const WS_SEND_HIGH_WATER_BYTES = 64 * 1024;

/**
 * graphql-ws answers a query or mutation with two frames (next, then complete) and sends the second
 * only once the first was written, so each costs a write syscall of its own. Here a send is corked
 * until the end of the tick and reported written at once, so both frames of an answer leave in one
 * write; a socket with data piling up (a slow subscriber) waits for the network as before. ws keeps
 * its net.Socket private; without one, sends stay as they are.
 */
function coalesceFrames(ws: WebSocket): void {
  const raw = (ws as unknown as { _socket?: Socket })._socket;
  if (!raw || typeof raw.cork !== 'function') return;
  type Callback = (error?: Error) => void;
  const send = ws.send.bind(ws) as (data: unknown, options: object, cb?: Callback) => void;
  let corked = false;
  ws.send = ((data: unknown, optionsOrCb?: object | Callback, maybeCb?: Callback) => {
    const cb = typeof optionsOrCb === 'function' ? (optionsOrCb as Callback) : maybeCb;
    const options = typeof optionsOrCb === 'object' && optionsOrCb ? optionsOrCb : {};
    if (!corked) {
      corked = true;
      raw.cork();
      process.nextTick(() => {
        corked = false;
        raw.uncork();
      });
    }
    if (!cb || ws.bufferedAmount > WS_SEND_HIGH_WATER_BYTES) return send(data, options, cb);
    send(data, options);
    queueMicrotask(() => cb());
  }) as WebSocket['send'];
}

export type RunningServer = { server: Server; url: string; port: number; close(): Promise<void> };

export async function startServer(app: App, options: { port: number; host: string; docker?: Docker }): Promise<RunningServer> {
  const yoga = createGraphQLHandler(app);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    setSecurityHeaders(req, res, app.config.trustedProxies);
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok' }));
      return;
    }
    if (path === '/readyz') {
      void checkReadiness(app, options.docker).then((report) => {
        res.writeHead(report.ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(report));
      });
      return;
    }
    if (path.startsWith(GRAPHIQL_ASSETS_PATH) && graphiqlEnabled(app.config)) {
      void handleGraphiQLAsset(req, res, path);
      return;
    }
    if (path === INSTALL_SCRIPT_PATH && req.method === 'GET') {
      void handleInstallScript(app, req, res);
      return;
    }
    const logs = LOG_DOWNLOAD_PATH.exec(path);
    if (logs && req.method === 'GET') {
      void handleLogDownload(app, req, res, logs[1]);
      return;
    }
    void yoga(req, res);
  });

  const wsServer = new WebSocketServer({ server, path: yoga.graphqlEndpoint });
  const wsLimits = new WebSocketLimits(app.config.websocket, app.config.trustedProxies);
  wsServer.on('connection', (ws, req) => {
    wsLimits.opened(ws, req);
    coalesceFrames(ws);
  });
  // Every WebSocket operation goes through Yoga's envelop, so auth, limits and masking apply as on HTTP.
  const wsCleanup = useServer(
    {
      execute: (args: any) => args.rootValue.execute(args),
      subscribe: (args: any) => args.rootValue.subscribe(args),
      // WebSocketLimits closes sockets that never authenticate (with 4408 or 4401).
      connectionInitWaitTimeout: 0,
      onConnect: (ctx) => wsLimits.connect(ctx.extra.socket, headersFromConnectionParams(ctx.connectionParams), (headers) => authenticate(app, headers)),
      onSubscribe: async (ctx, _id, payload) => {
        if (!wsLimits.admitOperation(ctx.extra.socket, Object.keys(ctx.subscriptions).length)) {
          const refusal = { errors: [new GraphQLError('Too many operations in flight on this connection', { extensions: { code: 'TOO_MANY_REQUESTS' } })] };
          return { schema, document: REFUSED_OPERATION, contextValue: {}, rootValue: { execute: () => refusal, subscribe: () => refusal } };
        }
        // Only what the context factory reads: copying graphql-ws's connection state into every
        // operation's context made each one a large dictionary-mode object.
        const { schema: s, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          connectionParams: ctx.connectionParams,
          params: payload,
        });
        let document;
        try {
          document = parse(payload.query);
        } catch (error) {
          return [error as GraphQLError];
        }
        const errors = validate(s, document);
        if (errors.length > 0) return errors;
        const operation = { schema: s, operationName: payload.operationName, document, variableValues: payload.variables };
        let contextValue;
        try {
          contextValue = await contextFactory();
        } catch (error) {
          // The database or Redis failing while authenticating is not a refused credential: an agent
          // gives up on a credential after a few UNAUTHENTICATED answers, but retries this.
          const outage = isGraphQLError(error) ? null : asServiceUnavailable(error);
          if (outage) app.log.warn({ err: error, dependency: outage.dependency }, 'dependency unavailable');
          else if (!isGraphQLError(error)) app.log.error({ err: error }, 'unexpected error');
          const answer = isGraphQLError(error) ? error : outage ? serviceUnavailable(outage) : new GraphQLError('Unexpected error.', { extensions: { code: 'INTERNAL_SERVER_ERROR' } });
          const refusal = { errors: [answer] };
          // Answered as a result with errors, as over HTTP. (Errors returned from here must be graphql-ws's
          // own GraphQLError class, which the CJS and ESM builds of graphql can make another one.)
          return { ...operation, contextValue: {}, rootValue: { execute: () => refusal, subscribe: () => refusal } };
        }
        return { ...operation, contextValue, rootValue: { execute, subscribe } };
      },
    },
    wsServer,
  );

  await new Promise<void>((resolve) => server.listen(options.port, options.host, resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const url = `http://${options.host === '0.0.0.0' ? '127.0.0.1' : options.host}:${port}`;
  return {
    server,
    url,
    port,
    async close() {
      await wsCleanup.dispose();
      for (const client of wsServer.clients) client.terminate();
      await new Promise<void>((resolve) => wsServer.close(() => resolve()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

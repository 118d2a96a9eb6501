// One HTTP port: GraphQL over HTTP and SSE (Yoga), graphql-ws on the same path, health and readiness.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { GraphQLError } from 'graphql';
import { WebSocketServer } from 'ws';
import { useServer } from 'graphql-ws/use/ws';
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import type Docker from 'dockerode';
import type { App } from '../app.js';
import type { GraphQLContext } from './context.js';
import { schema } from './schema.js';
import { authenticate } from '../modules/auth/service.js';
import { DomainError, NotFoundError, ForbiddenError, UnauthenticatedError, ValidationError, ConflictError, QuotaExceededError } from '../modules/common/errors.js';
import type { Caller } from '../modules/auth/caller.js';
import { checkReadiness } from './readiness.js';
import { handleLogDownload, LOG_DOWNLOAD_PATH } from '../modules/logs/http.js';
import { handleInstallScript, INSTALL_SCRIPT_PATH } from '../modules/workers/install.js';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

type ServerContext = { req?: IncomingMessage; res?: ServerResponse; connectionParams?: Record<string, unknown> };
type HeaderSource = { get(name: string): string | null };

// By name, not instanceof: graphql ships both CJS and ESM builds, and errors may come from either.
function isGraphQLError(error: unknown): error is GraphQLError {
  return error instanceof Error && error.name === 'GraphQLError';
}

function errorCode(error: DomainError): string {
  if (error instanceof UnauthenticatedError) return 'UNAUTHENTICATED';
  if (error instanceof ForbiddenError) return 'FORBIDDEN';
  if (error instanceof NotFoundError) return 'NOT_FOUND';
  if (error instanceof ValidationError) return 'BAD_USER_INPUT';
  if (error instanceof ConflictError) return 'CONFLICT';
  if (error instanceof QuotaExceededError) return 'QUOTA_EXCEEDED';
  return 'BAD_REQUEST';
}

function headersFromConnectionParams(params: Record<string, unknown> | undefined): HeaderSource {
  const lower = new Map(Object.entries(params ?? {}).map(([k, v]) => [k.toLowerCase(), typeof v === 'string' ? v : null]));
  return { get: (name) => lower.get(name.toLowerCase()) ?? null };
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

export function createGraphQLHandler(app: App): YogaServerInstance<ServerContext, GraphQLContext> {
  const { limits, nodeEnv } = app.config;
  return createYoga<ServerContext, GraphQLContext>({
    schema,
    graphqlEndpoint: '/graphql',
    graphiql: nodeEnv !== 'production' ? { subscriptionsProtocol: 'WS' } : false,
    landingPage: false,
    logging: {
      debug: (...args) => app.log.debug({ args }, 'yoga'),
      info: (...args) => app.log.info({ args }, 'yoga'),
      warn: (...args) => app.log.warn({ args }, 'yoga'),
      error: (...args) => app.log.error({ args }, 'yoga'),
    },
    maskedErrors: {
      maskError(error, message) {
        const original = isGraphQLError(error) ? error.originalError : error;
        if (original instanceof DomainError) {
          return new GraphQLError(original.message, { extensions: { code: errorCode(original) }, path: (error as GraphQLError).path });
        }
        // GraphQLErrors are deliberate (auth, validation of the document): they pass through unmasked.
        if (isGraphQLError(error) && (!error.originalError || isGraphQLError(error.originalError))) return error;
        app.log.error({ err: original }, 'unexpected error');
        return new GraphQLError(message, { extensions: { code: 'INTERNAL_SERVER_ERROR' }, path: (error as GraphQLError).path });
      },
    },
    plugins: [
      requestIdPlugin(),
      EnvelopArmorPlugin({
        maxDepth: { n: limits.maxDepth },
        maxAliases: { n: limits.maxAliases },
        costLimit: { maxCost: limits.maxCost },
        maxTokens: { n: limits.maxTokens },
        maxDirectives: { n: 50 },
        blockFieldSuggestion: { enabled: nodeEnv === 'production' },
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
      const log = app.log.child({ requestId, ...(caller.kind === 'user' ? { userId: caller.userId } : caller.kind === 'worker' ? { workerId: caller.workerId } : {}) });
      return { requestId, log, app, caller, actor };
    },
  });
}

export type RunningServer = { server: Server; url: string; port: number; close(): Promise<void> };

export async function startServer(app: App, options: { port: number; host: string; docker?: Docker }): Promise<RunningServer> {
  const yoga = createGraphQLHandler(app);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
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
  // Every WebSocket operation goes through Yoga's envelop, so auth, limits and masking apply as on HTTP.
  const wsCleanup = useServer(
    {
      execute: (args: any) => args.rootValue.execute(args),
      subscribe: (args: any) => args.rootValue.subscribe(args),
      onSubscribe: async (ctx, _id, payload) => {
        const { schema: s, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
          ...ctx,
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
        let contextValue;
        try {
          contextValue = await contextFactory();
        } catch (error) {
          return [error instanceof GraphQLError ? error : new GraphQLError('Authentication failed', { extensions: { code: 'UNAUTHENTICATED' } })];
        }
        return { schema: s, operationName: payload.operationName, document, variableValues: payload.variables, contextValue, rootValue: { execute, subscribe } };
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

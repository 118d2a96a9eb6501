/**
 * GraphiQL served entirely by Convoy, so it works offline, its scripts and requests limited to 'self' by CSP.
 * Yoga's default page loads GraphiQL from a CDN; @graphql-yoga/render-graphiql ships the same build
 * (the version matching graphql-yoga), but inlines it into one inline script and blob: workers. Here
 * the same files are served from GRAPHIQL_ASSETS_PATH, and the page has no inline script at all.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { GraphiQLOptions } from 'graphql-yoga';
import type { Config } from '../config.js';

export const GRAPHIQL_ASSETS_PATH = '/graphiql/';

// As before: GraphiQL (and so its files) only outside production.
export function graphiqlEnabled(config: Pick<Config, 'nodeEnv'>): boolean {
  return config.nodeEnv !== 'production';
}

/**
 * What the page needs on top of 'self': GraphiQL's stylesheet embeds its fonts and icons as data: URLs,
 * and its editor (Monaco) and React set styles at run time. Scripts, workers and requests are 'self'.
 */
export const GRAPHIQL_CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "worker-src 'self'",
  "connect-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

// A placeholder in the headers editor would be sent, and refused, with the schema's introspection too.
const AUTH_HINT = '# Headers (below): { "Authorization": "Bearer <accessToken from the Register tab>" }\n';

/** The README's "A session with the API", one tab each, named by operation. */
const SESSION_TABS: NonNullable<GraphiQLOptions['defaultTabs']> = [
  {
    query: `# Register, then send tokens.accessToken as a bearer token from the other tabs.
mutation Register($input: RegisterInput!) {
  register(input: $input) {
    ... on AuthPayload { tokens { accessToken refreshToken } }
    ... on Error { message }
  }
}`,
    variables: JSON.stringify({ input: { email: 'ada@example.com', password: 'a long passphrase', name: 'Ada' } }, null, 2),
  },
  {
    query: `${AUTH_HINT}mutation CreateService {
  createService(input: {
    name: "web"
    source: { image: "registry.example.com/team/web:1.0" }
    ports: [{ target: 8080 }]
    healthCheck: { type: HTTP, path: "/healthz", port: 8080, intervalSeconds: 5 }
    resources: { cpuLimit: 0.5, memoryLimitMb: 256 }
  }) {
    ... on Service { id status hostname }
    ... on ValidationError { fieldErrors { path message } }
    ... on Error { message }
  }
}`,
  },
  { query: `${AUTH_HINT}mutation DeployService {\n  deployService(serviceId: "<id>") {\n    ... on Deployment { id status }\n    ... on Error { message }\n  }\n}` },
  { query: `${AUTH_HINT}subscription DeploymentEvents {\n  deploymentEvents(deploymentId: "<deployment id>") { status message at }\n}` },
  { query: `${AUTH_HINT}subscription ServiceEvents {\n  serviceEvents(serviceId: "<id>") { kind status previousStatus reason }\n}` },
  { query: `${AUTH_HINT}subscription ServiceLogs {\n  serviceLogs(serviceId: "<id>", tail: 100) { timestamp replica stream line }\n}` },
  {
    query: `${AUTH_HINT}query Services {\n  services(first: 20, filter: { search: "web" }) {\n    edges { node { name status currentDeployment { image finishedAt } } }\n    pageInfo { hasNextPage endCursor }\n  }\n}`,
  },
];

export const CONVOY_GRAPHIQL_OPTIONS: GraphiQLOptions = {
  title: 'Convoy GraphiQL',
  // Subscriptions over SSE (POST /graphql, Accept: text/event-stream), with the headers editor's headers
  // as on any request. Over graphql-ws, Yoga's GraphiQL sends them in each operation's extensions, never
  // in connection_init, which is where Convoy reads credentials.
  subscriptionsProtocol: 'SSE',
  defaultTabs: SESSION_TABS,
};

// Runs before the GraphiQL bundle: Monaco asks this for its workers' URLs (same-origin files, no blob:).
const MONACO_ENVIRONMENT_JS = `self.MonacoEnvironment = {
  globalAPI: false,
  getWorkerUrl: function (_moduleId, label) {
    var workers = { json: 'json.worker.js', graphql: 'graphql.worker.js' };
    return '${GRAPHIQL_ASSETS_PATH}' + (workers[label] || 'editor.worker.js');
  },
};
`;

// Runs after it: renders with the options the page carries as JSON data (not a script, so CSP allows it).
const START_JS = `YogaGraphiQL.renderYogaGraphiQL(
  document.getElementById('root'),
  JSON.parse(document.getElementById('graphiql-options').textContent),
);
`;

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Yoga's renderGraphiQL: the page, every asset on GRAPHIQL_ASSETS_PATH. */
export function renderConvoyGraphiQL(options: GraphiQLOptions): string {
  const asset = (name: string) => GRAPHIQL_ASSETS_PATH + name;
  // "<" escaped, so no value can close the data block.
  const json = JSON.stringify(options).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${GRAPHIQL_CONTENT_SECURITY_POLICY}">
<title>${escapeHtml(options.title ?? 'GraphiQL')}</title>
<link rel="icon" href="${asset('favicon.ico')}">
<link rel="stylesheet" href="${asset('graphiql.css')}">
</head>
<body id="body" class="no-focus-outline">
<noscript>You need to enable JavaScript to run GraphiQL.</noscript>
<div id="root">Loading ${escapeHtml(options.title ?? 'GraphiQL')}...</div>
<script type="application/json" id="graphiql-options">${json}</script>
<script src="${asset('monaco-environment.js')}"></script>
<script src="${asset('yoga-graphiql.js')}"></script>
<script src="${asset('start.js')}"></script>
</body>
</html>
`;
}

type Asset = { body: Buffer; gzipped: Promise<Buffer>; type: string; etag: string };
let assets: Promise<Map<string, Asset>> | undefined;

// Loaded on the first request for a file: about 9 MB of strings that a server nobody browses never needs.
function loadAssets(): Promise<Map<string, Asset>> {
  if (assets) return assets;
  assets = import('@graphql-yoga/render-graphiql/graphiql').then((bundle) => {
    const javascript = 'text/javascript; charset=utf-8';
    const files: [string, string | Buffer, string][] = [
      ['yoga-graphiql.js', bundle.js, javascript],
      ['graphiql.css', bundle.css, 'text/css; charset=utf-8'],
      ['editor.worker.js', bundle.editorWorkerService, javascript],
      ['json.worker.js', bundle.jsonWorker, javascript],
      ['graphql.worker.js', bundle.graphqlWorker, javascript],
      ['favicon.ico', Buffer.from(bundle.favicon.slice(bundle.favicon.indexOf(',') + 1), 'base64'), 'image/x-icon'],
      ['monaco-environment.js', MONACO_ENVIRONMENT_JS, javascript],
      ['start.js', START_JS, javascript],
    ];
    const compress = promisify(gzip);
    return new Map(
      files.map(([name, content, type]) => {
        const body = Buffer.isBuffer(content) ? content : Buffer.from(content);
        let gzipped: Promise<Buffer> | undefined;
        const asset: Asset = {
          body,
          type,
          // Weak: the gzipped and the plain body are the same file.
          etag: `W/"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`,
          // Compressed once, when first asked for: the bundle is 5 MB, a fifth of that gzipped.
          get gzipped() {
            return (gzipped ??= compress(body));
          },
        };
        return [name, asset];
      }),
    );
  });
  // A failed load is tried again by the next request.
  assets.catch(() => (assets = undefined));
  return assets;
}

/** Answers GET/HEAD for GraphiQL's files; anything else under GRAPHIQL_ASSETS_PATH is 404. */
export async function handleGraphiQLAsset(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  try {
    await serveAsset(req, res, path);
  } catch {
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
    res.end();
  }
}

async function serveAsset(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const asset = req.method === 'GET' || req.method === 'HEAD' ? (await loadAssets()).get(path.slice(GRAPHIQL_ASSETS_PATH.length)) : undefined;
  if (!asset) {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not found');
    return;
  }
  const headers: Record<string, string> = {
    'content-type': asset.type,
    // Revalidated each time (304 while unchanged), so an upgrade of the bundle is picked up at once.
    'cache-control': 'no-cache',
    etag: asset.etag,
    vary: 'accept-encoding',
    'x-content-type-options': 'nosniff',
  };
  if (req.headers['if-none-match'] === asset.etag) {
    res.writeHead(304, headers).end();
    return;
  }
  const gzipAccepted = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  const body = gzipAccepted && asset.body.length > 1024 ? await asset.gzipped : asset.body;
  if (body !== asset.body) headers['content-encoding'] = 'gzip';
  headers['content-length'] = String(body.length);
  res.writeHead(200, headers).end(req.method === 'HEAD' ? undefined : body);
}

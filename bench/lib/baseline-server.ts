// The heartbeat bench's baseline: what one Node.js process on this machine costs to answer the worker
// agent's heartbeat mutation with the same libraries at the wire (node:http, ws, graphql-ws) and plain
// graphql-js, and nothing else: Convoy's printed schema (so the input is coerced and validated the same
// way), a resolver that answers at once, no authentication, no Yoga or envelop, no database, no Redis.
// Run by bench/heartbeats.ts in a child process beside the API and measured the same way; Convoy's figures
// over this one's, step by step in the same run, separate what Convoy adds from what the machine allows.
//
//   node --import tsx bench/lib/baseline-server.ts   (PORT, HOST from the environment)
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { buildSchema, execute, parse, validate, type DocumentNode } from 'graphql';
import { WebSocketServer } from 'ws';
import { useServer } from 'graphql-ws/use/ws';

const schema = buildSchema(readFileSync(new URL('../../schema/schema.graphql', import.meta.url), 'utf8'));
const rootValue = {
  workerHeartbeat: () => ({ worker: { id: 'baseline', status: 'ONLINE' }, nextHeartbeatInSeconds: 30 }),
};

// Parsed and validated once per document, as Yoga's cache does for the API.
const documents = new Map<string, DocumentNode>();
function documentOf(query: string): DocumentNode {
  let document = documents.get(query);
  if (!document) {
    document = parse(query);
    const errors = validate(schema, document);
    if (errors.length) throw errors[0];
    documents.set(query, document);
  }
  return document;
}

const server = createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200).end('ok');
    return;
  }
  if (req.method !== 'POST' || req.url !== '/graphql') {
    res.writeHead(404).end();
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', async () => {
    let body: string;
    try {
      const { query, variables, operationName } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      body = JSON.stringify(await execute({ schema, document: documentOf(query), rootValue, variableValues: variables, operationName }));
    } catch (error) {
      body = JSON.stringify({ errors: [{ message: (error as Error).message }] });
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
});

useServer(
  {
    schema,
    onSubscribe: (_ctx, _id, payload) => ({ schema, document: documentOf(payload.query), variableValues: payload.variables, operationName: payload.operationName, rootValue }),
  },
  new WebSocketServer({ server, path: '/graphql' }),
);

server.listen(Number(process.env.PORT), process.env.HOST ?? '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));

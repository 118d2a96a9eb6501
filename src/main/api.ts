// `npm start`: the API (GraphQL over HTTP, SSE and WebSocket, health, readiness), after applying migrations.
import '../platform/runtime/gc-tuning.js';
import { loadConfig } from '../config.js';
import { createApp } from '../app.js';
import { warnAboutOpenAccess } from '../platform/runtime/open-access.js';
import { syncBuiltInTemplates } from '../modules/templates/service.js';
import { startServer } from '../graphql/server.js';
import { onShutdown } from './shutdown.js';

const config = loadConfig();
const app = await createApp(config);
warnAboutOpenAccess(config, app.log);
const synced = await syncBuiltInTemplates(app);
app.log.info(synced, 'built-in templates synchronised');
const server = await startServer(app, { port: config.port, host: config.host, docker: app.docker });
app.log.info({ url: `${server.url}/graphql` }, 'Convoy API listening');
onShutdown(app.log, async () => {
  await server.close();
  await app.close();
});

// `npm run dev`: API, controller and an embedded worker agent in one process, for one machine.
import '../platform/runtime/gc-tuning.js';
import { loadConfig } from '../config.js';
import { createApp } from '../app.js';
import { warnAboutOpenAccess } from '../platform/runtime/open-access.js';
import { syncBuiltInTemplates } from '../modules/templates/service.js';
import { createJoinToken } from '../modules/workers/service.js';
import { startServer } from '../graphql/server.js';
import { startControllers } from '../controller.js';
import { startEmbeddedAgent } from '../../worker-agent/src/embedded.js';
import { onShutdown } from './shutdown.js';

// One machine: initialise a single-node swarm when the engine has none, unless told otherwise.
// Builds and template evaluations go to the embedded agent, as they go to worker agents in a cluster.
const config = loadConfig({ CONVOY_SWARM_INIT: 'true', CONVOY_BUILD_EXECUTOR: 'agents', ...process.env });
const app = await createApp(config);
warnAboutOpenAccess(config, app.log);
const synced = await syncBuiltInTemplates(app);
app.log.info(synced, 'built-in templates synchronised');
// The API listens first: the embedded agent registers through it, and would fail (ECONNREFUSED) before.
const server = await startServer(app, { port: config.port, host: config.host, docker: app.docker });
// The embedded agent joins like any node: with a short-lived join token, through the GraphQL API.
const { token: joinToken } = await createJoinToken(app, null, { ttlSeconds: 600 });
const agent = await startEmbeddedAgent({
  orchestrator: app.orchestrator,
  log: app.log.child({ component: 'agent' }),
  initSwarm: config.deploy.initSwarm,
  apiUrl: `http://127.0.0.1:${server.port}`,
  joinToken,
  heartbeatSeconds: config.workers.heartbeatSeconds,
  jobs: { builder: app.builder, docker: app.docker },
});
const controller = await startControllers(app);
app.log.info({ url: `${server.url}/graphql` }, 'Convoy is running (API + controller + embedded agent)');
onShutdown(app.log, async () => {
  await server.close();
  await controller.close();
  await agent.stop();
  await app.close();
});

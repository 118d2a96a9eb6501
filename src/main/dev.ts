// `npm run dev`: API, controller and an embedded worker agent in one process, for one machine.
import { loadConfig } from '../config.js';
import { createApp } from '../app.js';
import { startServer } from '../graphql/server.js';
import { startDeployController } from '../modules/deployments/controller.js';
import { startEmbeddedAgent } from '../../worker-agent/src/embedded.js';
import { onShutdown } from './shutdown.js';

// One machine: initialise a single-node swarm when the engine has none, unless told otherwise.
const config = loadConfig({ CONVOY_SWARM_INIT: 'true', ...process.env });
const app = await createApp(config);
const agent = await startEmbeddedAgent({ orchestrator: app.orchestrator, log: app.log.child({ component: 'agent' }), initSwarm: config.deploy.initSwarm });
const controller = await startDeployController(app);
const server = await startServer(app, { port: config.port, host: config.host, docker: app.docker });
app.log.info({ url: `${server.url}/graphql` }, 'Convoy is running (API + controller + embedded agent)');
onShutdown(app.log, async () => {
  await server.close();
  await controller.close();
  await agent.stop();
  await app.close();
});

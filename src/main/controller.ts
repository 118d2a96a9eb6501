// `npm run controller`: BullMQ workers (deploys, reconciliation). Several may run against one Redis.
import { loadConfig } from '../config.js';
import { createApp } from '../app.js';
import { warnAboutOpenAccess } from '../platform/runtime/open-access.js';
import { startControllers } from '../controller.js';
import { onShutdown } from './shutdown.js';

const config = loadConfig();
const app = await createApp(config);
warnAboutOpenAccess(config, app.log);
await app.orchestrator.ensureSwarm({ initIfMissing: config.deploy.initSwarm, advertiseAddr: '127.0.0.1' });
const controller = await startControllers(app);
app.log.info('Convoy controller running');
onShutdown(app.log, async () => {
  await controller.close();
  await app.close();
});

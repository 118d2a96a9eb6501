// Everything the `controller` process runs: deploy, build and maintenance workers.
import type { App } from './app.js';
import { startDeployController } from './modules/deployments/controller.js';
import { startBuildController } from './modules/builds/controller.js';
import { startWorkerController } from './modules/workers/controller.js';
import { startEvaluationController } from './modules/builds/evaluations.js';

export async function startControllers(app: App) {
  const deploys = await startDeployController(app);
  const builds = await startBuildController(app);
  const workers = await startWorkerController(app);
  // With executor `agents`, agents evaluate (WorkerJobs of kind EVALUATE) and this process may have no Nix.
  const evaluations = app.config.build.executor === 'controller' ? startEvaluationController(app) : null;
  return {
    async close() {
      await Promise.allSettled([builds.close(), deploys.close(), workers.close(), evaluations?.close()]);
    },
  };
}

// The worker agent as embedded in `npm run dev`. For now it only prepares the local engine (a
// single-node swarm); registration, heartbeats and build jobs over GraphQL come with the agent's issue.
import type { Orchestrator } from '../../src/platform/orchestrator/index.js';
import type { Logger } from '../../src/platform/logging/logger.js';

export type EmbeddedAgentOptions = { orchestrator: Orchestrator; log: Logger; initSwarm: boolean };

export async function startEmbeddedAgent(options: EmbeddedAgentOptions) {
  const { nodeId } = await options.orchestrator.ensureSwarm({ initIfMissing: options.initSwarm, advertiseAddr: '127.0.0.1' });
  options.log.info({ nodeId }, 'local Docker engine is a swarm manager');
  return {
    async stop() {
      options.log.info('embedded agent stopped');
    },
  };
}

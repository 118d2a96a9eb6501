// The worker agent as embedded in `npm run dev`: it prepares the local engine (a single-node swarm)
// and, given the API's URL and a join token, runs a WorkerAgent in-process that registers this
// machine as `dev-<hostname>` and heartbeats, through GraphQL like any other node.
import { hostname } from 'node:os';
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { Orchestrator } from '../../src/platform/orchestrator/index.js';
import type { Logger } from '../../src/platform/logging/logger.js';
import { dockerFromHost } from '../../src/platform/orchestrator/swarm.js';
import { WorkerAgent, type HeartbeatReport, type WorkerAgentOptions } from './agent.js';

export type EmbeddedAgentOptions = {
  orchestrator: Orchestrator;
  log: Logger;
  initSwarm: boolean;
  /** The running API (http://127.0.0.1:4000); without it (or a join token) no worker is registered. */
  apiUrl?: string;
  /** Used only when the state file does not exist yet, or no longer matches a worker. */
  joinToken?: string;
  /** Default: `tmp/dev-agent.json` under the working directory (git-ignored), so restarts keep the worker. */
  stateFile?: string;
  heartbeatSeconds?: number;
  /** The engine to read container stats from; default DOCKER_HOST or the local socket. */
  docker?: Docker;
  onHeartbeat?: (report: HeartbeatReport) => void;
  /** Run build jobs in-process (when the API offers builds to agents). */
  jobs?: WorkerAgentOptions['jobs'];
};

/** `workerId` is null until the agent has registered (or loaded its state). */
export type EmbeddedAgent = { nodeId: string; readonly workerId: string | null; stop(): Promise<void> };

export async function startEmbeddedAgent(options: EmbeddedAgentOptions): Promise<EmbeddedAgent> {
  const { nodeId } = await options.orchestrator.ensureSwarm({ initIfMissing: options.initSwarm, advertiseAddr: '127.0.0.1' });
  options.log.info({ nodeId }, 'local Docker engine is a swarm manager');

  let agent: WorkerAgent | null = null;
  if (options.apiUrl && options.joinToken) {
    agent = new WorkerAgent({
      apiUrl: options.apiUrl,
      joinToken: options.joinToken,
      stateFile: options.stateFile ?? join(process.cwd(), 'tmp', 'dev-agent.json'),
      hostname: `dev-${hostname().toLowerCase().replace(/[^a-z0-9.-]/g, '-')}`,
      labels: { role: 'dev' },
      heartbeatSeconds: options.heartbeatSeconds,
      docker: options.docker ?? dockerFromHost(process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock'),
      swarmNodeId: nodeId,
      // This engine is the swarm's manager already.
      joinSwarm: false,
      // A reset development database forgets the worker; the fresh join token of this run re-creates it.
      onCredentialRejected: 'register',
      log: options.log,
      onHeartbeat: options.onHeartbeat,
      jobs: options.jobs,
    });
    // Not awaited: in `npm run dev` the API may start listening only after this returns; the agent
    // retries its registration until it does.
    agent.wait().catch((error: unknown) => options.log.error({ err: error }, 'embedded agent gave up; the API does not see this node'));
  } else {
    options.log.info('embedded agent not registering: no API URL or join token given');
  }

  return {
    nodeId,
    get workerId() {
      return agent?.workerId ?? null;
    },
    async stop() {
      await agent?.stop();
      options.log.info('embedded agent stopped');
    },
  };
}

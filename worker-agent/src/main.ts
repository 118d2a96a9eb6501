// `npm run agent`: the worker agent as its own process on a node. All settings come from the
// environment (the install script writes them into the service unit). Exit codes: 0 after SIGINT or
// SIGTERM, 2 for bad or missing settings, 3 when this node is refused (join token, credential, state
// file), 1 otherwise.
import { hostname as osHostname } from 'node:os';
import { z } from 'zod';
import { createLogger, type Logger } from '../../src/platform/logging/logger.js';
import { dockerFromHost } from '../../src/platform/orchestrator/swarm.js';
import { NixBuilder, nixBuilderOptionsFromEnv } from '../../src/platform/builder/index.js';
import { WORKER_HOSTNAME } from '../../src/modules/workers/validation.js';
import { AgentFatalError, DEFAULT_HEARTBEAT_SECONDS, WorkerAgent } from './agent.js';
import { checkLabels, parseLabels } from './labels.js';
import { AGENT_VERSION } from './version.js';
import { DEFAULT_JOB_CONCURRENCY } from './jobs.js';

const EXIT_CONFIG = 2;
const EXIT_REFUSED = 3;

const envSchema = z.object({
  CONVOY_API_URL: z.string().url().optional(),
  CONVOY_JOIN_TOKEN: z.string().min(1).optional(),
  CONVOY_AGENT_STATE: z.string().min(1).default('/var/lib/convoy-agent/state.json'),
  CONVOY_HEARTBEAT_SECONDS: z.coerce.number().min(1).max(3600).default(DEFAULT_HEARTBEAT_SECONDS),
  DOCKER_HOST: z.string().default('unix:///var/run/docker.sock'),
  CONVOY_AGENT_HOSTNAME: z.string().min(1).max(253).optional(),
  CONVOY_AGENT_LABELS: z.string().default(''),
  CONVOY_AGENT_DISK_PATH: z.string().min(1).default('/'),
  CONVOY_AGENT_JOIN_SWARM: z.enum(['true', 'false']).default('true'),
  // Run build jobs offered by the API (Nix must be installed on the node).
  CONVOY_AGENT_BUILDS: z.enum(['true', 'false']).default('true'),
  // Build jobs run at once on this node: more than one, so one tenant's long or stuck build does not hold it.
  CONVOY_AGENT_BUILD_CONCURRENCY: z.coerce.number().int().min(1).max(32).default(DEFAULT_JOB_CONCURRENCY),
  // Heartbeats over one WebSocket (ws) or one HTTP request each (http).
  CONVOY_AGENT_TRANSPORT: z.enum(['ws', 'http']).default('ws'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

function readSettings(log: Logger) {
  // An empty variable (as in a copied env file) means "not set".
  const env = Object.fromEntries(Object.entries(process.env).filter(([, value]) => value !== ''));
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    log.fatal({ problems: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) }, 'invalid agent settings');
    process.exit(EXIT_CONFIG);
  }
  const labels = parseLabels(parsed.data.CONVOY_AGENT_LABELS);
  if (!labels.ok) {
    log.fatal({ problems: labels.problems }, 'invalid CONVOY_AGENT_LABELS (expected key=value,key=value)');
    process.exit(EXIT_CONFIG);
  }
  // The API's own rules, checked here too so a typo stops the agent before it spends its join token.
  const labelProblems = checkLabels(labels.labels);
  const hostname = (parsed.data.CONVOY_AGENT_HOSTNAME ?? osHostname()).toLowerCase();
  if (!WORKER_HOSTNAME.test(hostname)) labelProblems.push(`hostname "${hostname}" must be lowercase letters, digits, hyphens and dots (set CONVOY_AGENT_HOSTNAME)`);
  if (labelProblems.length) {
    log.fatal({ problems: labelProblems }, 'invalid agent settings');
    process.exit(EXIT_CONFIG);
  }
  let docker;
  try {
    docker = dockerFromHost(parsed.data.DOCKER_HOST);
  } catch (error) {
    log.fatal({ problems: [(error as Error).message] }, 'invalid DOCKER_HOST');
    process.exit(EXIT_CONFIG);
  }
  return { ...parsed.data, hostname, labels: labels.labels, docker };
}

const log = createLogger(process.env.LOG_LEVEL ?? 'info', { service: 'convoy-agent', version: AGENT_VERSION });
const settings = readSettings(log);

const agent = new WorkerAgent({
  apiUrl: settings.CONVOY_API_URL,
  joinToken: settings.CONVOY_JOIN_TOKEN,
  stateFile: settings.CONVOY_AGENT_STATE,
  hostname: settings.hostname,
  labels: settings.labels,
  heartbeatSeconds: settings.CONVOY_HEARTBEAT_SECONDS,
  docker: settings.docker,
  diskPath: settings.CONVOY_AGENT_DISK_PATH,
  joinSwarm: settings.CONVOY_AGENT_JOIN_SWARM === 'true',
  log,
  heartbeatTransport: settings.CONVOY_AGENT_TRANSPORT,
  jobs: settings.CONVOY_AGENT_BUILDS === 'true' ? { builder: new NixBuilder(nixBuilderOptionsFromEnv()), docker: settings.docker, concurrency: settings.CONVOY_AGENT_BUILD_CONCURRENCY } : null,
});

let stopping = false;
const onSignal = (signal: NodeJS.Signals) => {
  if (stopping) process.exit(1);
  stopping = true;
  log.info({ signal }, 'shutting down');
  agent.stop().then(
    () => process.exit(0),
    (error: unknown) => {
      log.error({ err: error }, 'shutdown failed');
      process.exit(1);
    },
  );
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

try {
  await agent.wait();
} catch (error) {
  if (error instanceof AgentFatalError) {
    log.fatal({ reason: error.reason }, error.message);
    process.exit(error.reason === 'NOT_CONFIGURED' ? EXIT_CONFIG : EXIT_REFUSED);
  }
  log.fatal({ err: error }, 'the agent failed');
  process.exit(1);
}

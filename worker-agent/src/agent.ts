// The worker agent: registers the node once with a join token (or resumes from its state file), then
// sends a heartbeat with the node's metrics every N seconds until stopped. It talks to the control
// plane only through GraphQL; a failed heartbeat is logged and retried, never fatal.
import type Docker from 'dockerode';
import type { Logger } from '../../src/platform/logging/logger.js';
import { GraphQLClient, GraphQLNetworkError, GraphQLRequestError } from './graphql-client.js';
import { MetricsCollector, readCapacity, type ContainerStats, type NodeMetrics } from './metrics.js';
import { containerStatsInput } from '../../src/modules/workers/validation.js';
import { loadState, saveState, StateFileError, type AgentState } from './state.js';
import { boundedSignal, sleep } from './sleep.js';
import { AGENT_VERSION } from './version.js';
import { randomBytes } from 'node:crypto';
import type { Builder } from '../../src/platform/builder/index.js';
import { JobRunner } from './jobs.js';
import { GraphQLWsClient } from './graphql-ws-client.js';

export const DEFAULT_HEARTBEAT_SECONDS = 30;
const MIN_HEARTBEAT_SECONDS = 1;
const MAX_HEARTBEAT_SECONDS = 3600;
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 60_000;
// Registration is not idempotent (the token is single-use), so give a slow API more time before retrying.
const REGISTER_TIMEOUT_MS = 30_000;
// A rejected credential is permanent, but a single 401 can come from a misbehaving proxy or replica.
const REJECTIONS_BEFORE_GIVING_UP = 3;

export const REGISTER_WORKER = /* GraphQL */ `
  mutation RegisterWorker($input: RegisterWorkerInput!) {
    registerWorker(input: $input) {
      __typename
      ... on RegisterWorkerPayload {
        worker { id hostname status }
        credential
        swarm { joinToken managerAddress }
      }
      ... on InvalidJoinTokenError { message }
      ... on ValidationError { message fieldErrors { path message } }
      ... on ConflictError { message }
    }
  }
`;

export const WORKER_HEARTBEAT = /* GraphQL */ `
  mutation WorkerHeartbeat($input: WorkerHeartbeatInput!) {
    workerHeartbeat(input: $input) {
      worker { id status }
      nextHeartbeatInSeconds
    }
  }
`;

export const REPORT_SWARM_NODE = /* GraphQL */ `
  mutation ReportSwarmNode($swarmNodeId: String!) {
    reportSwarmNode(swarmNodeId: $swarmNodeId) {
      __typename
      ... on Worker { id swarmNodeId }
      ... on Error { message }
    }
  }
`;

type RegisterResult =
  | { __typename: 'RegisterWorkerPayload'; worker: { id: string; hostname: string; status: string }; credential: string; swarm: { joinToken: string; managerAddress: string } | null }
  | { __typename: 'InvalidJoinTokenError'; message: string }
  | { __typename: 'ValidationError'; message: string; fieldErrors: { path: string[]; message: string }[] }
  | { __typename: 'ConflictError'; message: string };

type HeartbeatResult = { worker: { id: string; status: string }; nextHeartbeatInSeconds: number | null };

export type FatalReason = 'INVALID_JOIN_TOKEN' | 'REGISTRATION_REFUSED' | 'NOT_CONFIGURED' | 'STATE_FILE' | 'CREDENTIAL_REJECTED';

/** The agent cannot go on without an operator: a refused token, a revoked credential, a broken state file. */
export class AgentFatalError extends Error {
  constructor(
    readonly reason: FatalReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AgentFatalError';
  }
}

/** start() was interrupted by stop(): not a failure. */
export class AgentStoppedError extends Error {
  constructor() {
    super('the agent was stopped');
    this.name = 'AgentStoppedError';
  }
}

export type HeartbeatReport = { workerId: string; status: string; nextHeartbeatInSeconds: number; metrics: NodeMetrics; latencyMs: number };

export type WorkerAgentOptions = {
  /** Base URL of the API (http://host:4000) or its /graphql endpoint; taken from the state file when absent. */
  apiUrl?: string;
  /** Single-use; only needed until the state file exists. */
  joinToken?: string;
  stateFile: string;
  hostname: string;
  labels?: Record<string, string>;
  /** Until the API says otherwise in `nextHeartbeatInSeconds`. */
  heartbeatSeconds?: number;
  /** The local engine, for container stats, the Swarm node id and joining the swarm; null runs without Docker. */
  docker: Docker | null;
  /** Whose filesystem's size and usage the heartbeats report. */
  diskPath?: string;
  /** Reported at registration; detected from the local engine when undefined, left out when null. */
  swarmNodeId?: string | null;
  /** Join the swarm the API names at registration when the local engine is in none (default true). */
  joinSwarm?: boolean;
  /**
   * What to do when the API keeps refusing the saved credential (the worker was removed): 'exit' (a
   * fatal error, the default) or 'register' again with the configured join token.
   */
  onCredentialRejected?: 'exit' | 'register';
  requestTimeoutMs?: number;
  agentVersion?: string;
  log: Logger;
  onHeartbeat?: (report: HeartbeatReport) => void;
  /** Take build jobs (workerJobs) and run them with this builder against `docker`; absent: none. */
  jobs?: { builder: Builder; docker: Docker; concurrency?: number } | null;
  /** Heartbeats over one long-lived WebSocket ('ws', the default: far cheaper for the API) or HTTP. */
  heartbeatTransport?: 'ws' | 'http';
};

type Identity = AgentState & { client: GraphQLClient };

export class WorkerAgent {
  private readonly log: Logger;
  private readonly collector: MetricsCollector;
  private readonly abort = new AbortController();
  private identity: Identity | null = null;
  private intervalMs: number;
  private loop: Promise<void> | null = null;
  private starting: Promise<{ workerId: string; registered: boolean }> | null = null;
  private jobRunner: JobRunner | null = null;
  private wsClient: GraphQLWsClient | null = null;
  /** New for every process: the API ties this process's job claims to it. */
  readonly session = randomBytes(16).toString('base64url');

  constructor(private readonly options: WorkerAgentOptions) {
    this.log = options.log;
    this.intervalMs = clampHeartbeatSeconds(options.heartbeatSeconds ?? DEFAULT_HEARTBEAT_SECONDS) * 1000;
    let containerStatsFailing = false;
    this.collector = new MetricsCollector({
      docker: options.docker,
      diskPath: options.diskPath ?? '/',
      containerStatsTimeoutMs: containerStatsBoundMs(this.intervalMs),
      onContainerStatsError: (error) => {
        if (containerStatsFailing) return;
        containerStatsFailing = true;
        this.log.warn({ err: error }, 'cannot read container stats from the Docker engine; heartbeats carry node metrics only');
        setTimeout(() => (containerStatsFailing = false), 10 * 60_000).unref();
      },
    });
  }

  get workerId(): string | null {
    return this.identity?.workerId ?? null;
  }

  get heartbeatIntervalMs(): number {
    return this.intervalMs;
  }

  /**
   * Resolves once the agent has an identity (loaded or freshly registered) and the heartbeat loop runs.
   * Rejects with AgentFatalError when it cannot get one, with AgentStoppedError when stop() came first.
   */
  start(): Promise<{ workerId: string; registered: boolean }> {
    this.starting ??= this.identify().then((result) => {
      this.loop = this.heartbeatLoop();
      this.startJobs();
      void this.reportSwarmNode();
      // wait() hands the outcome to whoever asks; nobody asking must not crash the process.
      this.loop.catch(() => {});
      return result;
    });
    return this.starting;
  }

  /** Settles when the heartbeat loop ends: resolves after stop(), rejects with AgentFatalError. */
  async wait(): Promise<void> {
    try {
      await this.start();
      await this.loop;
    } catch (error) {
      if (!(error instanceof AgentStoppedError)) throw error;
    }
  }

  /** Ends the loop, aborting whatever request or wait is in flight. */
  async stop(): Promise<void> {
    if (!this.abort.signal.aborted) this.abort.abort(new AgentStoppedError());
    await Promise.allSettled([this.starting, this.loop, this.jobRunner?.stop()]);
    this.closeWsClient();
  }

  private startJobs() {
    const jobs = this.options.jobs;
    if (!jobs || !this.identity || this.signal.aborted) return;
    this.jobRunner = new JobRunner({ apiUrl: this.identity.apiUrl, credential: this.identity.credential, session: this.session, client: this.identity.client, builder: jobs.builder, docker: jobs.docker, concurrency: jobs.concurrency, log: this.log });
    this.jobRunner.start();
    this.log.info('taking build jobs');
  }

  private get signal(): AbortSignal {
    return this.abort.signal;
  }

  private async identify(): Promise<{ workerId: string; registered: boolean }> {
    let state: AgentState | null;
    try {
      state = await loadState(this.options.stateFile);
    } catch (error) {
      if (error instanceof StateFileError) throw new AgentFatalError('STATE_FILE', error.message, { cause: error });
      throw error;
    }
    if (state) {
      const apiUrl = this.options.apiUrl ?? state.apiUrl;
      if (this.options.apiUrl && this.options.apiUrl !== state.apiUrl) {
        this.log.warn({ stateApiUrl: state.apiUrl, apiUrl }, 'the state file was written for another API URL; using the configured one');
      }
      this.identity = { ...state, apiUrl, client: this.clientFor(apiUrl, state.credential) };
      this.log.info({ workerId: state.workerId, stateFile: this.options.stateFile, apiUrl }, 'resuming as a registered worker (join token not used)');
      return { workerId: state.workerId, registered: false };
    }
    const workerId = await this.register();
    return { workerId, registered: true };
  }

  private async register(): Promise<string> {
    const { apiUrl, joinToken, hostname, stateFile } = this.options;
    if (!apiUrl || !joinToken) {
      throw new AgentFatalError('NOT_CONFIGURED', `no state file at ${stateFile}: set the API URL and a join token (CONVOY_API_URL, CONVOY_JOIN_TOKEN) to register this node`);
    }
    const client = this.clientFor(apiUrl, null);
    const [capacity, swarmNodeId] = await Promise.all([readCapacity(this.options.diskPath ?? '/'), this.swarmNodeId()]);
    const input = {
      joinToken,
      hostname,
      swarmNodeId,
      cpuCores: capacity.cpuCores,
      memoryMb: capacity.memoryMb,
      diskGb: capacity.diskGb,
      labels: Object.entries(this.options.labels ?? {}).map(([key, value]) => ({ key, value })),
      agentVersion: this.options.agentVersion ?? AGENT_VERSION,
    };
    this.log.info({ apiUrl: client.url, hostname, swarmNodeId, ...capacity, labels: this.options.labels ?? {} }, 'registering this node with a join token');

    let result: { registerWorker: RegisterResult };
    try {
      result = await this.retrying('registration', () =>
        client.request<{ registerWorker: RegisterResult }>(REGISTER_WORKER, { input }, { signal: this.signal, timeoutMs: REGISTER_TIMEOUT_MS }),
      );
    } catch (error) {
      if (error instanceof GraphQLRequestError) throw new AgentFatalError('REGISTRATION_REFUSED', `the API refused the registration: ${error.message}`, { cause: error });
      throw error;
    }
    const outcome = result.registerWorker;
    switch (outcome.__typename) {
      case 'RegisterWorkerPayload':
        break;
      case 'InvalidJoinTokenError':
        throw new AgentFatalError('INVALID_JOIN_TOKEN', `the API refused the join token: ${outcome.message}. Ask an admin for a new token (createWorkerJoinToken).`);
      case 'ValidationError': {
        const fields = outcome.fieldErrors.map((e) => `${e.path.join('.')}: ${e.message}`).join('; ');
        throw new AgentFatalError('REGISTRATION_REFUSED', `the API refused the registration: ${outcome.message}${fields ? ` (${fields})` : ''}`);
      }
      case 'ConflictError':
        throw new AgentFatalError('REGISTRATION_REFUSED', `the API refused the registration: ${outcome.message}`);
      default:
        throw new AgentFatalError('REGISTRATION_REFUSED', `unexpected registration result ${JSON.stringify(outcome)}`);
    }

    const state: AgentState = { workerId: outcome.worker.id, credential: outcome.credential, apiUrl };
    // Saved before anything else can fail: the token is spent now, the credential is all we have.
    await saveState(stateFile, state);
    this.identity = { ...state, client: this.clientFor(apiUrl, outcome.credential) };
    this.log.info({ workerId: state.workerId, status: outcome.worker.status, stateFile }, 'registered; state saved');
    if (outcome.swarm) await this.joinSwarm(outcome.swarm);
    return state.workerId;
  }

  private async heartbeatLoop(): Promise<void> {
    let failures = 0;
    let rejections = 0;
    let delayMs = 0;
    let lastStatus: string | null = null;
    while (!this.signal.aborted) {
      try {
        await sleep(delayMs, this.signal);
      } catch {
        break;
      }
      const cycleStart = Date.now();
      try {
        const report = await this.heartbeat();
        if (failures > 0) this.log.info({ failures }, 'heartbeats are getting through again');
        if (report.status !== lastStatus) this.log.info({ workerId: report.workerId, status: report.status }, lastStatus ? 'worker status changed' : 'first heartbeat accepted');
        else this.log.debug({ latencyMs: report.latencyMs, cpuPercent: report.metrics.cpuPercent, containers: report.metrics.containers.length }, 'heartbeat sent');
        lastStatus = report.status;
        failures = 0;
        rejections = 0;
        this.options.onHeartbeat?.(report);
        delayMs = Math.max(0, this.intervalMs - (Date.now() - cycleStart));
      } catch (error) {
        if (this.signal.aborted) break;
        failures += 1;
        if (error instanceof GraphQLRequestError && error.code === 'UNAUTHENTICATED') {
          rejections += 1;
          if (rejections >= REJECTIONS_BEFORE_GIVING_UP) {
            await this.credentialRejected(error);
            rejections = 0;
            failures = 0;
            delayMs = 0;
            continue;
          }
        }
        delayMs = retryDelayMs(failures, this.intervalMs);
        this.log.warn({ ...describeError(error), failures, retryInMs: delayMs }, 'heartbeat failed; retrying');
      }
    }
    this.log.info('heartbeats stopped');
  }

  private async heartbeat(): Promise<HeartbeatReport> {
    const identity = this.identity!;
    const metrics = await this.collector.collect(this.signal, containerStatsBoundMs(this.intervalMs));
    const sentAt = performance.now();
    const input = { ...metrics, containers: this.reportableContainers(metrics.containers), agentSession: this.session };
    const result = await this.heartbeatClient(identity).request<{ workerHeartbeat: HeartbeatResult }>(WORKER_HEARTBEAT, { input }, { signal: this.signal });
    const latencyMs = performance.now() - sentAt;
    const { worker, nextHeartbeatInSeconds } = result.workerHeartbeat;
    // The API knows when it will consider this worker late; it may ask for a different pace.
    if (typeof nextHeartbeatInSeconds === 'number' && Number.isFinite(nextHeartbeatInSeconds) && nextHeartbeatInSeconds > 0) {
      const next = clampHeartbeatSeconds(nextHeartbeatInSeconds) * 1000;
      if (next !== this.intervalMs) this.log.info({ fromSeconds: this.intervalMs / 1000, toSeconds: next / 1000 }, 'the API adjusted the heartbeat interval');
      this.intervalMs = next;
    }
    return { workerId: worker.id, status: worker.status, nextHeartbeatInSeconds: this.intervalMs / 1000, metrics, latencyMs };
  }

  /**
   * The API refuses a whole heartbeat over one bad container entry, and labels are anyone's to set: a
   * hand-made container with an odd `convoy.service-id` keeps its stats but loses the id.
   */
  private reportableContainers(containers: ContainerStats[]): ContainerStats[] {
    const { shape } = containerStatsInput;
    return containers.flatMap((container) => {
      const entry = {
        ...container,
        serviceId: shape.serviceId.safeParse(container.serviceId).success ? container.serviceId : null,
        taskId: shape.taskId.safeParse(container.taskId).success ? container.taskId : null,
      };
      if (containerStatsInput.safeParse(entry).success) return [entry];
      this.log.debug({ containerId: container.containerId }, 'container stats left out of the heartbeat: the API would refuse them');
      return [];
    });
  }

  private heartbeatClient(identity: Identity): GraphQLClient | GraphQLWsClient {
    if (this.options.heartbeatTransport === 'http') return identity.client;
    this.wsClient ??= new GraphQLWsClient({
      url: identity.apiUrl,
      timeoutMs: this.options.requestTimeoutMs ?? 10_000,
      userAgent: `convoy-agent/${this.options.agentVersion ?? AGENT_VERSION}`,
      headers: { authorization: `Bearer ${identity.credential}` },
    });
    return this.wsClient;
  }

  private closeWsClient() {
    const client = this.wsClient;
    this.wsClient = null;
    // Not awaited: closing waits for a socket still connecting, and a silent API must not hold up stop().
    void client?.close().catch(() => {});
  }

  private async credentialRejected(error: GraphQLRequestError): Promise<void> {
    this.closeWsClient();
    const { stateFile, joinToken } = this.options;
    if (this.options.onCredentialRejected === 'register' && joinToken) {
      this.log.warn({ err: error, workerId: this.identity?.workerId }, 'the API no longer accepts this worker credential; registering again with the join token');
      await this.register();
      return;
    }
    throw new AgentFatalError(
      'CREDENTIAL_REJECTED',
      `the API rejects this worker's credential (${error.message}): the worker was removed or its credential revoked. Delete ${stateFile} and join again with a new token.`,
      { cause: error },
    );
  }

  /** Retries while the API is unreachable or failing on its side; refusals and our stop() end it. */
  private async retrying<T>(what: string, attempt: () => Promise<T>): Promise<T> {
    for (let failures = 1; ; failures++) {
      try {
        return await attempt();
      } catch (error) {
        if (this.signal.aborted) throw new AgentStoppedError();
        if (!isTransient(error)) throw error;
        const delayMs = retryDelayMs(failures, MAX_RETRY_MS);
        this.log.warn({ ...describeError(error), failures, retryInMs: delayMs }, `${what} failed; retrying`);
        try {
          await sleep(delayMs, this.signal);
        } catch {
          throw new AgentStoppedError();
        }
      }
    }
  }

  private clientFor(apiUrl: string, credential: string | null): GraphQLClient {
    return new GraphQLClient({
      url: apiUrl,
      timeoutMs: this.options.requestTimeoutMs ?? 10_000,
      userAgent: `convoy-agent/${this.options.agentVersion ?? AGENT_VERSION}`,
      headers: credential ? { authorization: `Bearer ${credential}` } : {},
    });
  }

  private async swarmNodeId(): Promise<string | null> {
    if (this.options.swarmNodeId !== undefined) return this.options.swarmNodeId;
    const swarm = await this.localSwarm();
    return swarm?.LocalNodeState === 'active' && swarm.NodeID ? swarm.NodeID : null;
  }

  private async localSwarm(): Promise<{ LocalNodeState?: string; NodeID?: string } | null> {
    if (!this.options.docker) return null;
    const bounded = boundedSignal(this.signal, 5000);
    try {
      const info = (await (this.options.docker.info as (options: { abortSignal: AbortSignal }) => Promise<unknown>).call(this.options.docker, { abortSignal: bounded.signal })) as { Swarm?: { LocalNodeState?: string; NodeID?: string } };
      return info.Swarm ?? null;
    } catch (error) {
      if (this.signal.aborted) throw new AgentStoppedError();
      this.log.warn({ err: error }, 'cannot ask the local Docker engine about its swarm');
      return null;
    } finally {
      bounded.dispose();
    }
  }

  /**
   * Best effort, once per start: tells the API which Swarm node this engine is, so a node that joined
   * the swarm after registering (or joined it again) can be drained, removed and failed over.
   */
  private async reportSwarmNode(): Promise<void> {
    const identity = this.identity;
    const swarmNodeId = identity ? await this.swarmNodeId() : null;
    if (!identity || !swarmNodeId || this.signal.aborted) return;
    try {
      const result = await identity.client.request<{ reportSwarmNode: { __typename: string; message?: string } }>(REPORT_SWARM_NODE, { swarmNodeId }, { signal: this.signal });
      if (result.reportSwarmNode.__typename === 'Worker') this.log.debug({ swarmNodeId }, 'the API knows this Swarm node');
      else this.log.warn({ swarmNodeId, reason: result.reportSwarmNode.message }, 'the API did not record this Swarm node');
    } catch (error) {
      if (!this.signal.aborted) this.log.warn({ err: error, swarmNodeId }, 'could not report this Swarm node to the API');
    }
  }

  /** Best effort: a node outside the swarm still reports metrics, and an operator can join it by hand. */
  private async joinSwarm(swarm: { joinToken: string; managerAddress: string }): Promise<void> {
    const { docker } = this.options;
    if (!docker || this.options.joinSwarm === false) return;
    const local = await this.localSwarm();
    if (local?.LocalNodeState !== 'inactive') {
      this.log.info({ localNodeState: local?.LocalNodeState ?? 'unknown' }, 'not joining the swarm: the local engine is already in one (or unreachable)');
      return;
    }
    try {
      await docker.swarmJoin({ ListenAddr: '0.0.0.0:2377', RemoteAddrs: [swarm.managerAddress], JoinToken: swarm.joinToken });
      this.log.info({ managerAddress: swarm.managerAddress, swarmNodeId: (await this.localSwarm())?.NodeID }, 'joined the swarm');
    } catch (error) {
      this.log.error({ err: error, managerAddress: swarm.managerAddress }, 'joining the swarm failed; join it by hand with `docker swarm join`');
    }
  }
}

/** Expected failures (the API is down, it refused something) in one line; anything else with its stack. */
function describeError(error: unknown): Record<string, unknown> {
  if (error instanceof GraphQLNetworkError) return { error: error.message };
  if (error instanceof GraphQLRequestError) return { error: error.message, code: error.code, httpStatus: error.status };
  return { err: error };
}

function isTransient(error: unknown): boolean {
  if (error instanceof GraphQLNetworkError) return true;
  // The API's own trouble (a database restart, say) passes; a refusal of this request does not.
  return error instanceof GraphQLRequestError && (error.status >= 500 || error.code === 'INTERNAL_SERVER_ERROR' || error.code === 'SERVICE_UNAVAILABLE' || error.code === 'RATE_LIMITED');
}

/** Exponential from 1 s, at most `capMs` (but never less than 1 s), with ±20 % jitter so a fleet does not retry in step. */
export function retryDelayMs(failures: number, capMs: number): number {
  const base = Math.min(Math.max(capMs, FIRST_RETRY_MS), FIRST_RETRY_MS * 2 ** Math.min(failures - 1, 16));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** Docker's stats take about a second (two samples); never let them eat most of a longer interval. */
function containerStatsBoundMs(intervalMs: number): number {
  return Math.max(1500, Math.min(10_000, intervalMs * 0.8));
}

function clampHeartbeatSeconds(seconds: number): number {
  return Math.min(MAX_HEARTBEAT_SECONDS, Math.max(MIN_HEARTBEAT_SECONDS, seconds));
}

// Docker Swarm implementation of the Orchestrator, over the Engine API through dockerode (never the CLI).
import { setTimeout as sleep } from 'node:timers/promises';
import { Readable } from 'node:stream';
import Docker from 'dockerode';
import {
  DEPLOYMENT_LABEL,
  OrchestratorError,
  excludedNodesOf,
  type LogLine,
  type NodeTaskInfo,
  type NodeAvailability,
  type NodeInfo,
  type Orchestrator,
  type OwnedSpec,
  type RolloutResult,
  type ServiceInfo,
  type ServiceLogsOptions,
  type SwarmJoinInfo,
  type SwarmServiceSpec,
  type TaskInfo,
  type CreateServiceOptions,
  type UpdateServiceOptions,
  type WaitForRolloutOptions,
} from './orchestrator.js';
import {
  toDockerServiceSpec,
  toObservedService,
  toObservedTask,
  toOwnedSpec,
  toServiceInfo,
  toTaskInfo,
  toNodeTaskInfo,
  withExcludedNodes,
  type DockerTask,
  type ObservedTask,
} from './docker-spec.js';
import { toOrchestratorError } from './docker-errors.js';
import { RolloutTracker } from './rollout.js';
import { dockerSince, serviceLogsByTask } from './service-logs.js';

// Poll quickly while a rollout is young (most finish within seconds, and each poll is two cheap API
// calls), then back off so long rollouts do not load the engine.
const ROLLOUT_FAST_POLL_MS = 100;
const ROLLOUT_SLOW_POLL_MS = 500;
const ROLLOUT_FAST_PHASE_MS = 30_000;
const DEFAULT_FAILED_TASK_LIMIT = 3;
const SWARM_LISTEN_ADDR = '0.0.0.0:2377';
const NETWORK_ALLOCATION_POLLS = 30;
/** Each call for a task's logs (until its answer starts, when following) gets this long. */
const TASK_LOG_TIMEOUT_MS = 10_000;

/** Accepts DOCKER_HOST forms: unix:///var/run/docker.sock, tcp://host:2375, http(s)://host:port. */
export function dockerFromHost(dockerHost: string): Docker {
  let url: URL;
  try {
    url = new URL(dockerHost);
  } catch {
    throw new OrchestratorError('INVALID', `DOCKER_HOST ${dockerHost} is not a URL`);
  }
  switch (url.protocol) {
    case 'unix:':
      return new Docker({ socketPath: url.pathname });
    case 'tcp:':
    case 'http:':
      return new Docker({ host: url.hostname, port: Number(url.port || 2375), protocol: 'http' });
    case 'https:':
      return new Docker({ host: url.hostname, port: Number(url.port || 2376), protocol: 'https' });
    default:
      throw new OrchestratorError('INVALID', `DOCKER_HOST scheme ${url.protocol} is not supported`);
  }
}

export class SwarmOrchestrator implements Orchestrator {
  private readonly docker: Docker;

  constructor(docker: Docker | string) {
    this.docker = typeof docker === 'string' ? dockerFromHost(docker) : docker;
  }

  async ensureSwarm(options: { initIfMissing: boolean; advertiseAddr?: string }): Promise<{ nodeId: string }> {
    let swarm = await this.swarmState();
    if (swarm.LocalNodeState === 'inactive') {
      if (!options.initIfMissing) throw new OrchestratorError('UNAVAILABLE', 'the Docker engine is not part of a swarm');
      await this.call('initialise the swarm', () =>
        this.docker.swarmInit({ ListenAddr: SWARM_LISTEN_ADDR, AdvertiseAddr: options.advertiseAddr }),
      );
      swarm = await this.swarmState();
    }
    if (swarm.LocalNodeState !== 'active') {
      const detail = swarm.Error ? `: ${swarm.Error}` : '';
      throw new OrchestratorError('UNAVAILABLE', `the swarm is ${swarm.LocalNodeState}${detail}`);
    }
    // Only managers accept service and network changes.
    if (!swarm.ControlAvailable) {
      throw new OrchestratorError('UNAVAILABLE', 'this Docker engine is a swarm worker; Convoy needs a manager');
    }
    return { nodeId: swarm.NodeID };
  }

  async ensureNetwork(name: string, labels: Record<string, string>): Promise<{ id: string }> {
    const existing = await this.findAllocatedNetwork(name);
    if (existing) return this.checkedOverlay(existing);
    try {
      const network = await this.call(`create network ${name}`, () =>
        this.docker.createNetwork({ Name: name, Driver: 'overlay', Attachable: true, CheckDuplicate: true, Labels: labels }),
      );
      return { id: network.id };
    } catch (error) {
      // Another caller created it between our lookup and our create.
      const created = isCode(error, 'CONFLICT') ? await this.findAllocatedNetwork(name) : null;
      if (created) return this.checkedOverlay(created);
      throw error;
    }
  }

  async removeNetwork(name: string): Promise<boolean> {
    const network = await this.findNetwork(name);
    if (!network) return true;
    try {
      await this.call(`remove network ${name}`, () => this.docker.getNetwork(network.Id).remove());
      return true;
    } catch (error) {
      if (isCode(error, 'NOT_FOUND')) return true;
      if (isCode(error, 'CONFLICT')) return false;
      throw error;
    }
  }

  async createService(spec: SwarmServiceSpec, options: CreateServiceOptions = {}): Promise<{ id: string }> {
    assertDeploymentLabel(spec);
    // dockerode sends the auth as X-Registry-Auth; Swarm never returns it in an inspect.
    const body = toDockerServiceSpec(spec, 0);
    const service = await this.call(`create service ${spec.name}`, () =>
      options.registryAuth ? this.docker.createService(options.registryAuth, body) : this.docker.createService(body),
    );
    return { id: service.id };
  }

  async updateService(id: string, spec: SwarmServiceSpec, options: UpdateServiceOptions = {}): Promise<void> {
    assertDeploymentLabel(spec);
    const current = await this.inspectRaw(id);
    if (current.Spec?.Name !== spec.name) {
      throw new OrchestratorError('INVALID', `service ${id} is named ${current.Spec?.Name}, not ${spec.name}: Swarm cannot rename`);
    }
    // Swarm restarts tasks only when the task template changes; bumping ForceUpdate is that change.
    const forceUpdate = toObservedService(current).forceUpdate + (options.forceRestart ? 1 : 0);
    // dockerode takes `authconfig` off the options and sends it as X-Registry-Auth. Without one, Swarm
    // keeps the login the service already has.
    await this.call(`update service ${spec.name}`, () =>
      this.docker.getService(id).update({
        _query: { version: current.Version?.Index },
        _body: toDockerServiceSpec(spec, forceUpdate),
        ...(options.registryAuth ? { authconfig: options.registryAuth } : {}),
      }),
    );
  }

  async rollbackService(id: string): Promise<void> {
    const current = await this.inspectRaw(id);
    if (!current.PreviousSpec) {
      throw new OrchestratorError('CONFLICT', `service ${current.Spec?.Name ?? id} has no previous spec to roll back to`);
    }
    await this.call(`roll back service ${current.Spec?.Name ?? id}`, () =>
      this.docker.getService(id).update({
        _query: { version: current.Version?.Index, rollback: 'previous' },
        _body: current.Spec,
      }),
    );
  }

  async removeService(id: string): Promise<void> {
    try {
      await this.call(`remove service ${id}`, () => this.docker.getService(id).remove());
    } catch (error) {
      if (!isCode(error, 'NOT_FOUND')) throw error;
    }
  }

  async findServiceByName(name: string): Promise<ServiceInfo | null> {
    // The name filter matches prefixes: keep the exact match only.
    const services = await this.call(`find service ${name}`, () => this.docker.listServices({ filters: { name: [name] } }));
    const match = services.find((service) => service.Spec?.Name === name);
    return match ? toServiceInfo(match) : null;
  }

  async findServicesByLabel(label: string, value?: string): Promise<ServiceInfo[]> {
    const filter = value === undefined ? label : `${label}=${value}`;
    const services = await this.call(`find services with ${filter}`, () => this.docker.listServices({ filters: { label: [filter] } }));
    return services.map(toServiceInfo);
  }

  async inspectService(id: string): Promise<ServiceInfo> {
    return toServiceInfo(await this.inspectRaw(id));
  }

  async inspectOwnedSpec(id: string): Promise<OwnedSpec> {
    const raw = await this.inspectRaw(id);
    const attached = ((raw.Spec?.TaskTemplate as Docker.ContainerTaskSpec | undefined)?.Networks ?? []).map((n) => n.Target ?? '');
    const names = new Map<string, string>();
    if (attached.length) {
      const networks = await this.call(`list networks of service ${raw.Spec?.Name ?? id}`, () => this.docker.listNetworks({ filters: { id: attached } }));
      for (const network of networks) names.set(network.Id, network.Name);
    }
    return toOwnedSpec(raw, names);
  }

  async listTasks(serviceId: string): Promise<TaskInfo[]> {
    return (await this.listRawTasks(serviceId)).map(toTaskInfo);
  }

  async listNodeTasks(nodeId: string): Promise<NodeTaskInfo[]> {
    const tasks = await this.call(`list tasks of node ${nodeId}`, () => this.docker.listTasks({ filters: { node: [nodeId] } }) as Promise<DockerTask[]>);
    return tasks.map(toNodeTaskInfo);
  }

  async setExcludedNodes(serviceId: string, nodeIds: string[]): Promise<void> {
    const wanted = [...new Set(nodeIds)].sort();
    // Another update (a deploy, a scale) may land between our read and our write: read again and retry.
    for (let attempt = 1; ; attempt++) {
      const current = await this.inspectRaw(serviceId);
      const service = toServiceInfo(current);
      if (excludedNodesOf(service).sort().join(',') === wanted.join(',')) return;
      try {
        // The spec as it is, ForceUpdate included: only the placement changes, so Swarm replaces just
        // the tasks on excluded nodes.
        await this.call(`exclude nodes from service ${service.name}`, () =>
          this.docker.getService(serviceId).update({ _query: { version: current.Version?.Index }, _body: withExcludedNodes(current.Spec ?? {}, wanted) }),
        );
        return;
      } catch (error) {
        if (!isCode(error, 'CONFLICT') || attempt >= 5) throw error;
      }
    }
  }

  async waitForRollout(serviceId: string, options: WaitForRolloutOptions): Promise<RolloutResult> {
    const { deploymentId, desiredReplicas, deadline, signal, onProgress } = options;
    const tracker = new RolloutTracker({
      deploymentId,
      desiredReplicas,
      failedTaskLimit: options.failedTaskLimit ?? DEFAULT_FAILED_TASK_LIMIT,
    });
    const startedAt = Date.now();
    for (;;) {
      signal?.throwIfAborted();
      const [service, tasks] = await Promise.all([this.inspectRaw(serviceId), this.listObservedTasks(serviceId)]);
      const result = tracker.observe(toObservedService(service), tasks);
      const progress = tracker.progressIfChanged();
      if (progress) onProgress?.(progress);
      if (result) return result;

      const remainingMs = deadline.getTime() - Date.now();
      if (remainingMs <= 0) return tracker.resultAtDeadline(Date.now() - startedAt);
      const interval = Date.now() - startedAt < ROLLOUT_FAST_PHASE_MS ? ROLLOUT_FAST_POLL_MS : ROLLOUT_SLOW_POLL_MS;
      await sleep(Math.min(interval, remainingMs), undefined, { signal });
    }
  }

  serviceLogs(serviceId: string, options: ServiceLogsOptions): AsyncIterable<LogLine> {
    // Task by task: Docker 20.10's service log endpoint can hang for good (see service-logs.ts).
    return serviceLogsByTask(
      {
        listTasks: () => this.listTasks(serviceId),
        currentDeploymentId: async () => (await this.inspectService(serviceId)).deploymentLabel,
        openTaskLogs: (taskId, taskOptions) => this.openTaskLogs(taskId, taskOptions),
      },
      options,
    );
  }

  async swarmJoinInfo(): Promise<SwarmJoinInfo> {
    const swarm = await this.swarmState();
    if (swarm.LocalNodeState !== 'active' || !swarm.ControlAvailable) {
      throw new OrchestratorError('UNAVAILABLE', 'this Docker engine is not a swarm manager');
    }
    const inspected = await this.call('inspect the swarm', () => this.docker.swarmInspect() as Promise<{ JoinTokens?: { Worker?: string } }>);
    const workerJoinToken = inspected.JoinTokens?.Worker;
    if (!workerJoinToken) throw new OrchestratorError('UNAVAILABLE', 'the swarm reports no worker join token');
    return { workerJoinToken, managerAddresses: (swarm.RemoteManagers ?? []).map((manager) => manager.Addr) };
  }

  async listNodes(): Promise<NodeInfo[]> {
    const nodes = await this.call('list swarm nodes', () => this.docker.listNodes() as Promise<DockerNode[]>);
    return nodes.map(toNodeInfo);
  }

  async setNodeAvailability(nodeId: string, availability: NodeAvailability): Promise<void> {
    const node = this.docker.getNode(nodeId);
    const current = await this.call(`inspect node ${nodeId}`, () => node.inspect() as Promise<DockerNode>);
    if (current.Spec?.Availability === availability) return;
    await this.call(`set node ${nodeId} to ${availability}`, () =>
      node.update({ _query: { version: current.Version?.Index }, _body: { ...current.Spec, Availability: availability } }),
    );
  }

  async removeNode(nodeId: string, options: { force?: boolean } = {}): Promise<void> {
    try {
      await this.call(`remove node ${nodeId}`, () => this.docker.getNode(nodeId).remove({ force: options.force ?? false }));
    } catch (error) {
      if (!isCode(error, 'NOT_FOUND')) throw error;
    }
  }

  private async openTaskLogs(
    taskId: string,
    options: { follow: boolean; tail?: number; since?: bigint; signal: AbortSignal },
  ): Promise<AsyncIterable<Buffer> | Iterable<Buffer>> {
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), TASK_LOG_TIMEOUT_MS);
    const task = this.docker.getTask(taskId) as Docker.Task & { logs(options: Docker.ContainerLogsOptions): Promise<Buffer | Readable> };
    try {
      const response = await task.logs({
        stdout: true,
        stderr: true,
        timestamps: true,
        follow: options.follow,
        ...(options.since !== undefined ? { since: dockerSince(options.since) } : {}),
        ...(options.tail !== undefined ? { tail: options.tail } : {}),
        abortSignal: AbortSignal.any([options.signal, timeout.signal]),
      });
      // dockerode buffers the whole body unless following.
      return Buffer.isBuffer(response) ? [response] : response;
    } catch (error) {
      if (timeout.signal.aborted && !options.signal.aborted) {
        throw new OrchestratorError('UNAVAILABLE', `read logs of task ${taskId}: Docker did not answer within ${TASK_LOG_TIMEOUT_MS / 1000} s`, { cause: error });
      }
      throw toOrchestratorError(error, `read logs of task ${taskId}`);
    } finally {
      clearTimeout(timer);
    }
  }

  private async swarmState(): Promise<SwarmLocalState> {
    const info = await this.call('read the Docker engine info', () => this.docker.info());
    return (info as { Swarm: SwarmLocalState }).Swarm;
  }

  private async findNetwork(name: string): Promise<Docker.NetworkInspectInfo | null> {
    // The name filter matches substrings: keep the exact match only.
    const networks = await this.call(`find network ${name}`, () => this.docker.listNetworks({ filters: { name: [name] } }));
    return networks.find((network) => network.Name === name) ?? null;
  }

  /** Swarm reports a new network's driver only once its allocator has run: give it a moment. */
  private async findAllocatedNetwork(name: string): Promise<Docker.NetworkInspectInfo | null> {
    for (let attempt = 0; ; attempt++) {
      const network = await this.findNetwork(name);
      if (!network || network.Driver || attempt >= NETWORK_ALLOCATION_POLLS) return network;
      await sleep(100);
    }
  }

  private checkedOverlay(network: Docker.NetworkInspectInfo): { id: string } {
    if (network.Driver !== 'overlay' || network.Scope !== 'swarm') {
      throw new OrchestratorError(
        'CONFLICT',
        `network ${network.Name} exists as a ${network.Scope} ${network.Driver} network, not a swarm overlay`,
      );
    }
    return { id: network.Id };
  }

  private inspectRaw(id: string): Promise<Docker.Service> {
    return this.call(`inspect service ${id}`, () => this.docker.getService(id).inspect() as Promise<Docker.Service>);
  }

  private listRawTasks(serviceId: string): Promise<DockerTask[]> {
    return this.call(`list tasks of service ${serviceId}`, () =>
      this.docker.listTasks({ filters: { service: [serviceId] } }) as Promise<DockerTask[]>,
    );
  }

  private async listObservedTasks(serviceId: string): Promise<ObservedTask[]> {
    return (await this.listRawTasks(serviceId)).map(toObservedTask);
  }

  private async call<T>(action: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      throw toOrchestratorError(error, action);
    }
  }
}

type SwarmLocalState = {
  NodeID: string;
  LocalNodeState: 'inactive' | 'pending' | 'active' | 'error' | 'locked';
  ControlAvailable: boolean;
  Error?: string;
  RemoteManagers?: { NodeID: string; Addr: string }[] | null;
};

type DockerNode = {
  ID: string;
  Version?: { Index?: number };
  Spec?: { Availability?: NodeAvailability; Role?: 'manager' | 'worker'; Labels?: Record<string, string>; Name?: string };
  Description?: { Hostname?: string };
  Status?: { State?: string; Addr?: string };
  ManagerStatus?: { Addr?: string };
};

function toNodeInfo(node: DockerNode): NodeInfo {
  return {
    id: node.ID,
    hostname: node.Description?.Hostname ?? '',
    role: node.Spec?.Role ?? 'worker',
    availability: node.Spec?.Availability ?? 'active',
    state: node.Status?.State ?? 'unknown',
    address: node.ManagerStatus?.Addr ?? node.Status?.Addr ?? null,
    labels: node.Spec?.Labels ?? {},
  };
}

function assertDeploymentLabel(spec: SwarmServiceSpec): void {
  if (!spec.containerLabels[DEPLOYMENT_LABEL]) {
    throw new OrchestratorError('INVALID', `service ${spec.name} needs the container label ${DEPLOYMENT_LABEL}`);
  }
}

function isCode(error: unknown, code: OrchestratorError['code']): boolean {
  return error instanceof OrchestratorError && error.code === code;
}

// The runtime contract between Convoy's domain code and the container orchestrator. Domain modules depend
// only on these types; `SwarmOrchestrator` (swarm.ts) is the Docker Swarm implementation.

/** Container label that ties every task to the Convoy deployment that produced it. */
export const DEPLOYMENT_LABEL = 'convoy.deployment-id';

/**
 * Service label listing (comma-separated) the nodes `setExcludedNodes` keeps the service off, so those
 * placement constraints are told apart from any others. A deploy's spec names its own (`excludedNodes`).
 */
export const EXCLUDED_NODES_LABEL = 'convoy.excluded-nodes';

export function excludedNodesOf(service: Pick<ServiceInfo, 'labels'>): string[] {
  return (service.labels[EXCLUDED_NODES_LABEL] ?? '').split(',').filter(Boolean);
}

export type PortProtocol = 'tcp' | 'udp';
/** `ingress` needs the routing mesh (IPVS); `host` binds the port on the node that runs the task. */
export type PublishMode = 'ingress' | 'host';
/** `vip` needs IPVS; `dnsrr` answers the service name with the task addresses themselves. */
export type EndpointMode = 'vip' | 'dnsrr';
export type UpdateOrder = 'start-first' | 'stop-first';

export type ServiceNetwork = { name: string; aliases: string[] };

export type ServicePort = {
  target: number;
  /** Omitted: Swarm picks one (ingress mode) or the node picks one (host mode). */
  published?: number;
  protocol: PortProtocol;
  publishMode: PublishMode;
};

export type ServiceResources = {
  /** CPU cores, e.g. 0.5. */
  cpuLimit?: number;
  memoryLimitMb?: number;
  cpuReservation?: number;
  memoryReservationMb?: number;
};

export type HealthCheck = {
  /** Docker's form: ['CMD-SHELL', 'script'] or ['CMD', 'binary', ...args]. */
  test: string[];
  intervalMs: number;
  timeoutMs: number;
  retries: number;
  startPeriodMs: number;
};

export type RestartPolicy = {
  condition: 'any' | 'on-failure' | 'none';
  delayMs: number;
  /** Omitted: restart without limit. */
  maxAttempts?: number;
};

export type UpdatePolicy = {
  /** start-first cannot work with host-mode published ports on a single node: both tasks need the port. */
  order: UpdateOrder;
  monitorMs: number;
  parallelism: number;
  failureAction: 'rollback' | 'pause';
};

export type RollbackPolicy = {
  order: UpdateOrder;
  monitorMs: number;
  parallelism: number;
};

export type SecretMount = { secretId: string; secretName: string; fileName: string };

export type SwarmServiceSpec = {
  name: string;
  image: string;
  env: Record<string, string>;
  replicas: number;
  /** Labels on the service object. */
  labels: Record<string, string>;
  /** Labels on every container; must include DEPLOYMENT_LABEL. */
  containerLabels: Record<string, string>;
  networks: ServiceNetwork[];
  ports: ServicePort[];
  endpointMode: EndpointMode;
  resources: ServiceResources;
  healthCheck?: HealthCheck;
  placementConstraints: string[];
  /** Nodes kept off, as `setExcludedNodes` would (recorded in EXCLUDED_NODES_LABEL, so they can be lifted later). */
  excludedNodes?: string[];
  restartPolicy: RestartPolicy;
  update: UpdatePolicy;
  rollback: RollbackPolicy;
  stopGracePeriodMs: number;
  secrets?: SecretMount[];
};

/**
 * The parts of a service's spec that drift detection compares, as Swarm has them now (network ids
 * resolved to names). See `specDrift` in drift.ts.
 */
export type OwnedSpec = Pick<SwarmServiceSpec, 'image' | 'env' | 'replicas' | 'labels' | 'containerLabels' | 'networks' | 'ports' | 'placementConstraints'>;

/** Swarm's own record of the last update or rollback of a service. */
export type UpdateState =
  | 'updating'
  | 'paused'
  | 'completed'
  | 'rollback_started'
  | 'rollback_paused'
  | 'rollback_completed';

export type ServiceInfo = {
  id: string;
  name: string;
  /** Swarm's object version; every update needs the current one. */
  version: number;
  image: string;
  replicas: number;
  labels: Record<string, string>;
  updateStatus?: { state: UpdateState; message: string };
  /** DEPLOYMENT_LABEL of the spec Swarm is converging to (after a rollback: the previous deployment). */
  deploymentLabel: string | null;
};

/** Swarm task states, in lifecycle order, then the terminal ones. */
export type TaskState =
  | 'new'
  | 'allocated'
  | 'pending'
  | 'assigned'
  | 'accepted'
  | 'preparing'
  | 'ready'
  | 'starting'
  | 'running'
  | 'complete'
  | 'shutdown'
  | 'failed'
  | 'rejected'
  | 'remove'
  | 'orphaned';

export type TaskInfo = {
  id: string;
  /** Replica number, stable across restarts of the same replica. */
  slot: number;
  nodeId: string | null;
  desiredState: TaskState;
  /** With a health check, a task stays 'starting' until it is healthy: 'running' means healthy. */
  state: TaskState;
  message: string;
  error: string | null;
  containerId: string | null;
  deploymentId: string | null;
  createdAt: Date;
  /** When the task last changed state: for an ended task, when it ended. */
  stateChangedAt: Date;
};

/** A task as listed by node: which service it belongs to, and its container labels. */
export type NodeTaskInfo = TaskInfo & { serviceId: string; containerLabels: Record<string, string> };

export type RolloutOutcome = 'healthy' | 'rolled_back' | 'failed' | 'timeout';

export type RolloutResult = { outcome: RolloutOutcome; reason: string };

export type RolloutProgress = {
  updateState: UpdateState | null;
  /** Tasks of this deployment that are running (healthy). */
  runningReplicas: number;
  desiredReplicas: number;
  tasks: TaskInfo[];
};

export type WaitForRolloutOptions = {
  /**
   * DEPLOYMENT_LABEL of the task template being rolled out: tasks carrying it (in the current restart
   * generation) are the rollout's. A scale keeps the label, so its new and its kept tasks both count.
   */
  deploymentId: string;
  desiredReplicas: number;
  deadline: Date;
  signal?: AbortSignal;
  /** Called whenever the observed state changes. */
  onProgress?: (progress: RolloutProgress) => void;
  /** Failed tasks of this deployment after which a rollout Swarm does not supervise counts as failed. */
  failedTaskLimit?: number;
};

export type LogStream = 'stdout' | 'stderr';

export type LogLine = {
  timestamp: Date;
  stream: LogStream;
  taskId: string;
  /** The task's slot; null when Swarm no longer knows the task (pruned from its history). */
  replica: number | null;
  line: string;
};

/**
 * Which tasks are read: with since/until, every task alive at some point in the range; without, the tasks
 * meant to run now and the current deployment's tasks that exited by themselves (not those Swarm shut
 * down for a redeploy, a restart or a scale-down).
 */
export type ServiceLogsOptions = {
  since?: Date;
  until?: Date;
  /** The last N lines of the service as a whole (its tasks' lines merged by time), not per task. */
  tail?: number;
  /** Lines the caller wants (a search); `tail` counts only these. */
  filter?: (line: LogLine) => boolean;
  follow: boolean;
  signal?: AbortSignal;
};

/**
 * Login for the registry the service's image is pulled from. Swarm keeps it with the service (and hands
 * it to the nodes that pull); it is sent in a header, never part of the spec, never logged.
 */
export type RegistryAuth = { username: string; password: string; serveraddress: string };

export type CreateServiceOptions = { registryAuth?: RegistryAuth | null };
export type UpdateServiceOptions = { forceRestart?: boolean; registryAuth?: RegistryAuth | null };

/** What a new node needs to join the swarm as a worker. */
export type SwarmJoinInfo = { workerJoinToken: string; managerAddresses: string[] };

/** `drain` moves every task off the node; `pause` only stops new ones from being scheduled there. */
export type NodeAvailability = 'active' | 'pause' | 'drain';

export type NodeInfo = {
  id: string;
  hostname: string;
  role: 'manager' | 'worker';
  availability: NodeAvailability;
  /** Swarm's view of the node: ready, down, disconnected, unknown. */
  state: string;
  address: string | null;
  labels: Record<string, string>;
};

export interface Orchestrator {
  ensureSwarm(options: { initIfMissing: boolean; advertiseAddr?: string }): Promise<{ nodeId: string }>;

  /** Overlay, attachable; returns the existing network when one of that name exists. */
  ensureNetwork(name: string, labels: Record<string, string>): Promise<{ id: string }>;
  /** True when the network is gone (or never existed); false when it is still in use. */
  removeNetwork(name: string): Promise<boolean>;

  createService(spec: SwarmServiceSpec, options?: CreateServiceOptions): Promise<{ id: string }>;
  updateService(id: string, spec: SwarmServiceSpec, options?: UpdateServiceOptions): Promise<void>;
  /**
   * Swarm's own rollback to the service's previous spec. Swarm swaps the two specs, so a second call goes
   * forward again; after an automatic rollback there is no previous spec left (CONFLICT).
   */
  rollbackService(id: string): Promise<void>;
  removeService(id: string): Promise<void>;
  findServiceByName(name: string): Promise<ServiceInfo | null>;
  /** Without a value: every service that carries the label. */
  findServicesByLabel(label: string, value?: string): Promise<ServiceInfo[]>;
  inspectService(id: string): Promise<ServiceInfo>;
  /** What the service's spec is now, in the terms Convoy applies it (for drift detection). */
  inspectOwnedSpec(id: string): Promise<OwnedSpec>;

  listTasks(serviceId: string): Promise<TaskInfo[]>;
  /** Every task Swarm assigned to the node, of any service (its history included). */
  listNodeTasks(nodeId: string): Promise<NodeTaskInfo[]>;
  /**
   * Keeps the service's tasks off exactly these nodes (`node.id!=` placement constraints, recorded in
   * EXCLUDED_NODES_LABEL). Swarm replaces only the tasks on newly excluded nodes, following the
   * service's update policy; lifting an exclusion moves nothing back.
   */
  setExcludedNodes(serviceId: string, nodeIds: string[]): Promise<void>;
  /**
   * Polls until the deployment is healthy (Swarm's update is over and exactly desiredReplicas tasks of this
   * deployment run, nothing else does), rolled back or failed, or the deadline passes. Rejects with an
   * AbortError when the signal aborts, and with NOT_FOUND when the service disappears.
   */
  waitForRollout(serviceId: string, options: WaitForRolloutOptions): Promise<RolloutResult>;

  /** Ends (without an error) when the signal aborts or the consumer stops iterating; the request is closed. */
  serviceLogs(serviceId: string, options: ServiceLogsOptions): AsyncIterable<LogLine>;

  /** Needs a manager; UNAVAILABLE when the engine is not one. */
  swarmJoinInfo(): Promise<SwarmJoinInfo>;
  listNodes(): Promise<NodeInfo[]>;
  setNodeAvailability(nodeId: string, availability: NodeAvailability): Promise<void>;
  /** Removing a node that is still up needs `force`; a node that is already gone is not an error. */
  removeNode(nodeId: string, options?: { force?: boolean }): Promise<void>;
}

export type OrchestratorErrorCode = 'NOT_FOUND' | 'CONFLICT' | 'UNAVAILABLE' | 'INVALID';

export class OrchestratorError extends Error {
  override readonly name = 'OrchestratorError';

  constructor(
    readonly code: OrchestratorErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

// Translation between Convoy's orchestrator types and the Docker Engine API's Swarm objects.
import type Docker from 'dockerode';
import {
  DEPLOYMENT_LABEL,
  EXCLUDED_NODES_LABEL,
  excludedNodesOf,
  type HealthCheck,
  type NodeTaskInfo,
  type OwnedSpec,
  type ServiceInfo,
  type ServiceResources,
  type SwarmServiceSpec,
  type TaskInfo,
  type TaskState,
  type UpdateState,
} from './orchestrator.js';

const NANOS_PER_MS = 1_000_000;
const BYTES_PER_MB = 1024 * 1024;

/** A task as the Engine API returns it (dockerode leaves tasks untyped). */
export type DockerTask = {
  ID: string;
  ServiceID: string;
  Slot?: number;
  NodeID?: string;
  DesiredState: string;
  CreatedAt: string;
  Spec?: { ForceUpdate?: number; ContainerSpec?: { Labels?: Record<string, string> } };
  Status?: {
    State?: string;
    Message?: string;
    Err?: string;
    Timestamp?: string;
    ContainerStatus?: { ContainerID?: string };
  };
};

/** A task together with the restart generation it belongs to (see `forceUpdate` in ObservedService). */
export type ObservedTask = TaskInfo & { forceUpdate: number };
/** `forceUpdate` is TaskTemplate.ForceUpdate: tasks created before a forced restart carry a smaller value. */
export type ObservedService = ServiceInfo & { forceUpdate: number };

export function toDockerServiceSpec(spec: SwarmServiceSpec, forceUpdate: number): Docker.ServiceSpec {
  return withExcludedNodes(baseDockerServiceSpec(spec, forceUpdate), spec.excludedNodes ?? []);
}

function baseDockerServiceSpec(spec: SwarmServiceSpec, forceUpdate: number): Docker.ServiceSpec {
  return {
    Name: spec.name,
    Labels: spec.labels,
    TaskTemplate: {
      ContainerSpec: {
        Image: spec.image,
        Env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
        Labels: spec.containerLabels,
        // A PID 1 that ignores SIGTERM would delay every stop by the whole grace period.
        Init: true,
        StopGracePeriod: spec.stopGracePeriodMs * NANOS_PER_MS,
        HealthCheck: spec.healthCheck ? toDockerHealthCheck(spec.healthCheck) : undefined,
        Secrets: spec.secrets?.map((secret) => ({
          SecretID: secret.secretId,
          SecretName: secret.secretName,
          // World-readable inside the container: apps often run as a non-root user; the container is the boundary.
          File: { Name: secret.fileName, UID: '0', GID: '0', Mode: 0o444 },
        })),
      },
      Resources: toDockerResources(spec.resources),
      RestartPolicy: {
        Condition: spec.restartPolicy.condition,
        Delay: spec.restartPolicy.delayMs * NANOS_PER_MS,
        MaxAttempts: spec.restartPolicy.maxAttempts ?? 0,
      },
      Placement: { Constraints: spec.placementConstraints },
      Networks: spec.networks.map((network) => ({ Target: network.name, Aliases: network.aliases })),
      ForceUpdate: forceUpdate,
    },
    Mode: { Replicated: { Replicas: spec.replicas } },
    UpdateConfig: {
      Parallelism: spec.update.parallelism,
      Delay: 0,
      FailureAction: spec.update.failureAction,
      Monitor: spec.update.monitorMs * NANOS_PER_MS,
      MaxFailureRatio: 0,
      Order: spec.update.order,
    },
    RollbackConfig: {
      Parallelism: spec.rollback.parallelism,
      Delay: 0,
      // A failing rollback has nowhere left to go: stop and let an operator look.
      FailureAction: 'pause',
      Monitor: spec.rollback.monitorMs * NANOS_PER_MS,
      MaxFailureRatio: 0,
      Order: spec.rollback.order,
    },
    EndpointSpec: {
      Mode: spec.endpointMode,
      Ports: spec.ports.map((port) => ({
        TargetPort: port.target,
        PublishedPort: port.published,
        Protocol: port.protocol,
        PublishMode: port.publishMode,
      })),
    },
  };
}

function toDockerHealthCheck(check: HealthCheck): Docker.HealthConfig {
  return {
    Test: check.test,
    Interval: check.intervalMs * NANOS_PER_MS,
    Timeout: check.timeoutMs * NANOS_PER_MS,
    Retries: check.retries,
    StartPeriod: check.startPeriodMs * NANOS_PER_MS,
  };
}

function toDockerResources(resources: ServiceResources): Docker.ResourceRequirements {
  return {
    Limits: {
      NanoCPUs: cpusToNanos(resources.cpuLimit),
      MemoryBytes: megabytesToBytes(resources.memoryLimitMb),
    },
    Reservations: {
      NanoCPUs: cpusToNanos(resources.cpuReservation),
      MemoryBytes: megabytesToBytes(resources.memoryReservationMb),
    },
  };
}

const cpusToNanos = (cpus?: number) => (cpus === undefined ? undefined : Math.round(cpus * 1e9));
const megabytesToBytes = (mb?: number) => (mb === undefined ? undefined : Math.round(mb * BYTES_PER_MB));

export function toObservedService(raw: Docker.Service): ObservedService {
  const spec = raw.Spec ?? {};
  const taskTemplate = (spec.TaskTemplate ?? {}) as Docker.ContainerTaskSpec;
  const updateStatus = raw.UpdateStatus?.State
    ? { state: raw.UpdateStatus.State as UpdateState, message: raw.UpdateStatus.Message ?? '' }
    : undefined;
  return {
    id: raw.ID,
    name: spec.Name ?? '',
    version: raw.Version?.Index ?? 0,
    image: taskTemplate.ContainerSpec?.Image ?? '',
    replicas: spec.Mode?.Replicated?.Replicas ?? 0,
    labels: spec.Labels ?? {},
    ...(updateStatus ? { updateStatus } : {}),
    deploymentLabel: taskTemplate.ContainerSpec?.Labels?.[DEPLOYMENT_LABEL] ?? null,
    forceUpdate: taskTemplate.ForceUpdate ?? 0,
  };
}

/** `networkNames`: network id to name (Swarm stores a network by id, whatever the spec named it by). */
export function toOwnedSpec(raw: Docker.Service, networkNames: Map<string, string>): OwnedSpec {
  const spec = raw.Spec ?? {};
  const taskTemplate = (spec.TaskTemplate ?? {}) as Docker.ContainerTaskSpec;
  const env = Object.fromEntries(
    (taskTemplate.ContainerSpec?.Env ?? []).map((entry) => {
      const at = entry.indexOf('=');
      return at < 0 ? [entry, ''] : [entry.slice(0, at), entry.slice(at + 1)];
    }),
  );
  // Older clients put networks on the service rather than the task template.
  const networks = (taskTemplate.Networks ?? (spec as { Networks?: Docker.NetworkAttachmentConfig[] }).Networks ?? []).map((n) => ({
    name: networkNames.get(n.Target ?? '') ?? n.Target ?? '',
    aliases: n.Aliases ?? [],
  }));
  return {
    image: taskTemplate.ContainerSpec?.Image ?? '',
    env,
    replicas: spec.Mode?.Replicated?.Replicas ?? 0,
    labels: spec.Labels ?? {},
    containerLabels: taskTemplate.ContainerSpec?.Labels ?? {},
    networks,
    ports: (spec.EndpointSpec?.Ports ?? []).map((p) => ({
      target: p.TargetPort ?? 0,
      ...(p.PublishedPort ? { published: p.PublishedPort } : {}),
      protocol: (p.Protocol ?? 'tcp') as 'tcp' | 'udp',
      publishMode: (p.PublishMode ?? 'ingress') as 'ingress' | 'host',
    })),
    placementConstraints: taskTemplate.Placement?.Constraints ?? [],
  };
}

export function toServiceInfo(raw: Docker.Service): ServiceInfo {
  const { forceUpdate: _forceUpdate, ...info } = toObservedService(raw);
  return info;
}

export function toObservedTask(raw: DockerTask): ObservedTask {
  return {
    id: raw.ID,
    slot: raw.Slot ?? 0,
    nodeId: raw.NodeID || null,
    desiredState: raw.DesiredState as TaskState,
    state: (raw.Status?.State ?? 'new') as TaskState,
    message: raw.Status?.Message ?? '',
    error: raw.Status?.Err || null,
    containerId: raw.Status?.ContainerStatus?.ContainerID || null,
    deploymentId: raw.Spec?.ContainerSpec?.Labels?.[DEPLOYMENT_LABEL] ?? null,
    createdAt: new Date(raw.CreatedAt),
    stateChangedAt: new Date(raw.Status?.Timestamp ?? raw.CreatedAt),
    forceUpdate: raw.Spec?.ForceUpdate ?? 0,
  };
}

export function toTaskInfo(raw: DockerTask): TaskInfo {
  const { forceUpdate: _forceUpdate, ...task } = toObservedTask(raw);
  return task;
}

export function toNodeTaskInfo(raw: DockerTask): NodeTaskInfo {
  return { ...toTaskInfo(raw), serviceId: raw.ServiceID, containerLabels: raw.Spec?.ContainerSpec?.Labels ?? {} };
}

/** The spec with the given `node.id!=` exclusions in place of the previous ones; other constraints stay. */
export function withExcludedNodes(spec: Docker.ServiceSpec, nodeIds: string[]): Docker.ServiceSpec {
  const taskTemplate = (spec.TaskTemplate ?? {}) as Docker.ContainerTaskSpec;
  const previous = new Set(excludedNodesOf({ labels: spec.Labels ?? {} }).map((id) => `node.id!=${id}`));
  const constraints = (taskTemplate.Placement?.Constraints ?? []).filter((c) => !previous.has(c.replace(/\s+/g, '')));
  const labels = { ...(spec.Labels ?? {}) };
  delete labels[EXCLUDED_NODES_LABEL];
  if (nodeIds.length) labels[EXCLUDED_NODES_LABEL] = nodeIds.join(',');
  return {
    ...spec,
    Labels: labels,
    TaskTemplate: { ...taskTemplate, Placement: { ...taskTemplate.Placement, Constraints: [...constraints, ...nodeIds.map((id) => `node.id!=${id}`)] } },
  };
}

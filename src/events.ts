// The catalogue of events Convoy publishes on its EventBus; subscriptions and the controller use these.
import type { EventBus } from './platform/events/bus.js';
import type { NodeMetricValues } from './shared/metrics.js';

/**
 * CURRENT: the service as it is when a subscription starts (never published);
 * MIGRATION: a ServiceMigration of the service was opened or changed status (its worker failed).
 */
export type ServiceEventKind = 'CURRENT' | 'CREATED' | 'UPDATED' | 'DELETED' | 'STATUS_CHANGED' | 'MIGRATION';

export type ServiceEvent = {
  kind: ServiceEventKind;
  serviceId: string;
  organizationId: string;
  name: string;
  status: string;
  previousStatus: string | null;
  reason: string | null;
  at: string;
};

export type DeploymentEvent = {
  deploymentId: string;
  serviceId: string;
  organizationId: string;
  status: string;
  message: string;
  at: string;
  /** The stored DeploymentEvent row this reports, when there is one: a client resumes after it. */
  eventId?: string;
};

export type BuildEvent = { buildId: string; serviceId: string; organizationId: string; status: string; message: string; at: string };

/** A batch of build log lines; `firstSeq` numbers the first line (0-based) so readers can splice stored and live lines. */
export type BuildLogEvent = { buildId: string; firstSeq: number; lines: string[] } | { buildId: string; done: true; status: string };

export type WorkerEventKind = 'REGISTERED' | 'STATUS_CHANGED' | 'RESOURCE_EXHAUSTED' | 'REMOVED';

export type WorkerEvent = {
  kind: WorkerEventKind;
  workerId: string;
  hostname: string;
  status: string;
  previousStatus: string | null;
  /** RESOURCE_EXHAUSTED: the resources over their threshold (CPU, MEMORY, DISK). */
  resources: string[];
  reason: string | null;
  at: string;
};

/** The node metrics of one heartbeat. */
export type WorkerHeartbeatEvent = NodeMetricValues & {
  workerId: string;
  hostname: string;
  status: string;
  at: string;
  containerCount: number;
};

export type ContainerStatsSample = { containerId: string; taskId: string | null; cpuPercent: number; memoryUsedMb: number; networkRxBytes: number; networkTxBytes: number };

/** The stats of one service's containers on one worker, from one heartbeat. */
export type ServiceMetricsEvent = { serviceId: string; at: string; containers: ContainerStatsSample[] };

/** OFFER: a job is waiting for an agent; CANCEL: the agent running it (workerId) should stop it. */
/** `organizationId`: whose job it is, so offers reach only the workers allowed to take it. */
export type WorkerJobEvent = { action: 'OFFER' | 'CANCEL'; jobId: string; kind: string; workerId: string | null; organizationId?: string | null; at: string };

export type ConvoyEvents = {
  /** keyed by service id */
  service: ServiceEvent;
  /** keyed by organization id: every service event of the organization */
  organizationServices: ServiceEvent;
  /** keyed by deployment id */
  deployment: DeploymentEvent;
  /** keyed by build id */
  build: BuildEvent;
  /** keyed by build id */
  buildLog: BuildLogEvent;
  /** keyed by worker id */
  worker: WorkerEvent;
  /** keyed by 'all': every worker's events */
  workers: WorkerEvent;
  /** keyed by 'all': every worker's heartbeats, in the batches the API wrote them (one publish per batch) */
  workerHeartbeats: { heartbeats: WorkerHeartbeatEvent[] };
  /** keyed by service id */
  serviceMetrics: ServiceMetricsEvent;
  /** keyed by 'all': job offers and cancellations for worker agents */
  workerJobs: WorkerJobEvent;
};

export type ConvoyBus = EventBus<ConvoyEvents>;

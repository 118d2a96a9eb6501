// The catalogue of events Convoy publishes on its EventBus; subscriptions and the controller use these.
import type { EventBus } from './platform/events/bus.js';

export type ServiceEventKind = 'CREATED' | 'UPDATED' | 'DELETED' | 'STATUS_CHANGED';

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
};

export type BuildEvent = { buildId: string; serviceId: string; organizationId: string; status: string; message: string; at: string };

/** A batch of build log lines; `firstSeq` numbers the first line (0-based) so readers can splice stored and live lines. */
export type BuildLogEvent = { buildId: string; firstSeq: number; lines: string[] } | { buildId: string; done: true; status: string };

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
};

export type ConvoyBus = EventBus<ConvoyEvents>;

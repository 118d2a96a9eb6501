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

export type ConvoyEvents = {
  /** keyed by service id */
  service: ServiceEvent;
  /** keyed by organization id: every service event of the organization */
  organizationServices: ServiceEvent;
  /** keyed by deployment id */
  deployment: DeploymentEvent;
};

export type ConvoyBus = EventBus<ConvoyEvents>;

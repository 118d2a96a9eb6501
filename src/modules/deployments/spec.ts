// Turns a Convoy service's configuration (as snapshotted on a deployment) into a Swarm service spec.
import { DEPLOYMENT_LABEL, type HealthCheck, type SwarmServiceSpec } from '../../platform/orchestrator/index.js';
import type { Config } from '../../config.js';
import { httpProbeCommand } from '../../platform/images/index.js';
import type { HealthCheckSpec, PortSpec } from '../services/validation.js';

/**
 * What a deployment applies: the service's configuration at the time it was queued. Custom domains
 * are not part of it (snapshots from before may still carry `customDomains`; it is ignored): which
 * ones may be routed is decided when the spec is built, from their verification status.
 */
export type DeploymentConfig = {
  /** Where the image came from (snapshots from before it was recorded lack it); not part of the Swarm spec. */
  source?: DeploymentSource;
  name: string;
  hostname: string | null;
  env: Record<string, string>;
  ports: PortSpec[];
  healthCheck: HealthCheckSpec | null;
  cpuLimit: number | null;
  memoryLimitMb: number | null;
  cpuReservation: number | null;
  memoryReservationMb: number | null;
};

export type DeploymentSource = {
  type: string;
  image: string | null;
  templateId: string | null;
  nixExpression: string | null;
  gitUrl: string | null;
  gitBranch: string | null;
};

/** On the Swarm service and on every task container: the Convoy service it belongs to. */
export const SERVICE_ID_LABEL = 'convoy.service-id';

/** One Swarm service per Convoy service, named from its id: Swarm refuses a second one with that name. */
export function swarmServiceName(serviceId: string): string {
  return `convoy-${serviceId}`;
}

/** One overlay network per organization: its services resolve each other by name, nobody else's. */
export function organizationNetworkName(organizationId: string): string {
  return `convoy-org-${organizationId}`;
}

function httpProbe(port: number, path: string): string[] {
  // Port and path are validated to [A-Za-z0-9._~/-]; images differ in what they carry, so try
  // Convoy's own probe, then curl, wget and nc.
  const request = `printf 'GET ${path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n'`;
  const statusOk = `head -n 1 | grep -q ' [23][0-9][0-9]'`;
  const script = [
    `if [ -x /convoy/bin/busybox ]; then ${request} | /convoy/bin/busybox nc 127.0.0.1 ${port} | ${statusOk};`,
    `elif command -v curl >/dev/null 2>&1; then curl -fsS -o /dev/null http://127.0.0.1:${port}${path};`,
    `elif command -v nc >/dev/null 2>&1; then ${request} | nc 127.0.0.1 ${port} | ${statusOk};`,
    `else wget -q -O /dev/null http://127.0.0.1:${port}${path}; fi`,
  ].join(' ');
  return ['CMD-SHELL', script];
}

/**
 * Images Convoy builds have no shell but carry Convoy's exec-form probe; other images get a shell
 * script that uses whatever HTTP client they have.
 */
export function toHealthCheck(spec: HealthCheckSpec | null, builtByConvoy: boolean): HealthCheck | undefined {
  if (!spec) return undefined;
  const httpTest = () => (builtByConvoy ? httpProbeCommand(spec.port!, spec.path ?? '/') : httpProbe(spec.port!, spec.path ?? '/'));
  const test = spec.type === 'HTTP' ? httpTest() : ['CMD', ...(spec.command ?? [])];
  return {
    test,
    intervalMs: spec.intervalSeconds * 1000,
    timeoutMs: spec.timeoutSeconds * 1000,
    retries: spec.retries,
    startPeriodMs: spec.startPeriodSeconds * 1000,
  };
}

/** The router sends the generated hostname and the service's VERIFIED custom domains, nothing else. */
function routingLabels(serviceId: string, config: DeploymentConfig, verifiedDomains: string[], network: string): Record<string, string> {
  const hosts = [config.hostname, ...verifiedDomains].filter((h): h is string => !!h);
  const port = config.ports[0]?.target;
  if (hosts.length === 0 || !port) return {};
  const router = `convoy-${serviceId}`;
  return {
    'traefik.enable': 'true',
    'traefik.docker.network': network,
    [`traefik.http.routers.${router}.rule`]: hosts.map((h) => `Host(\`${h}\`)`).join(' || '),
    [`traefik.http.services.${router}.loadbalancer.server.port`]: String(port),
  };
}

function publishesOnHost(config: DeploymentConfig, settings: Config['deploy']): boolean {
  return config.ports.some((p) => p.published && (p.mode === 'HOST' || settings.endpointMode === 'dnsrr'));
}

export type SpecInput = {
  serviceId: string;
  organizationId: string;
  /** The DEPLOYMENT_LABEL its tasks carry (see taskLabelOf). */
  deploymentId: string;
  image: string;
  replicas: number;
  config: DeploymentConfig;
  /** The image came from a Convoy build (no shell, Convoy's probe inside). */
  builtByConvoy: boolean;
  /** The service's custom domains whose status is VERIFIED (see routedDomains). */
  verifiedDomains: string[];
};

export function toSwarmSpec(input: SpecInput, settings: Config['deploy']): SwarmServiceSpec {
  const network = organizationNetworkName(input.organizationId);
  const { config } = input;
  const monitorMs = settings.updateMonitorSeconds * 1000;
  return {
    name: swarmServiceName(input.serviceId),
    image: input.image,
    env: config.env,
    replicas: input.replicas,
    labels: {
      'convoy.managed': 'true',
      [SERVICE_ID_LABEL]: input.serviceId,
      'convoy.organization-id': input.organizationId,
      'convoy.service-name': config.name,
      ...routingLabels(input.serviceId, config, input.verifiedDomains, network),
    },
    containerLabels: { [DEPLOYMENT_LABEL]: input.deploymentId, [SERVICE_ID_LABEL]: input.serviceId },
    networks: [{ name: network, aliases: [config.name] }],
    // A port without a published number is only reachable on the organization's network (and by the
    // router); Swarm publishes only the others. Without IPVS (dnsrr) the ingress mesh cannot work, so
    // published ports bind on the node instead.
    ports: config.ports
      .filter((p) => p.published)
      .map((p) => ({
        target: p.target,
        published: p.published!,
        protocol: p.protocol === 'UDP' ? ('udp' as const) : ('tcp' as const),
        publishMode: p.mode === 'HOST' || settings.endpointMode === 'dnsrr' ? ('host' as const) : ('ingress' as const),
      })),
    endpointMode: settings.endpointMode,
    resources: {
      ...(config.cpuLimit ? { cpuLimit: config.cpuLimit } : {}),
      ...(config.memoryLimitMb ? { memoryLimitMb: config.memoryLimitMb } : {}),
      ...(config.cpuReservation ? { cpuReservation: config.cpuReservation } : {}),
      ...(config.memoryReservationMb ? { memoryReservationMb: config.memoryReservationMb } : {}),
    },
    healthCheck: toHealthCheck(config.healthCheck, input.builtByConvoy),
    placementConstraints: [],
    restartPolicy: { condition: 'any', delayMs: 1000 },
    // A host-mode port can be bound by one task per node: the new task cannot start before the old one stops.
    update: { order: publishesOnHost(config, settings) ? 'stop-first' : 'start-first', monitorMs, parallelism: 1, failureAction: 'rollback' },
    rollback: { order: 'start-first', monitorMs, parallelism: 1 },
    stopGracePeriodMs: settings.stopGraceSeconds * 1000,
  };
}

// Service input rules, built from the shared validation primitives.
import { z } from 'zod';
import { validateGitRef, validateGitUrl, validateGitUrlShape } from '../../platform/git/validate.js';
import type { Config } from '../../config.js';
import { LIMITS, cpu, dnsLabel, envVarName, hostname, HTTP_PATH, imageReference, memoryMb, port, replicas } from '../../shared/validation.js';

// The Git rules are the clone code's own (src/platform/git), so the API refuses exactly what it would.
// The schema checks the URL's shape; its host (and file://) depend on the installation, so the service
// checks them with gitUrlRefusal against its configuration.
export const gitUrl = z.string().superRefine((url, ctx) => {
  const result = validateGitUrlShape(url, { allowFile: true });
  if (!result.ok) ctx.addIssue({ code: 'custom', message: result.reason });
});

/**
 * Why this installation refuses a Git URL (an internal or IP-literal host that is not allowlisted, a
 * file:// URL where they are off), or null when a clone may go ahead.
 */
export function gitUrlRefusal(url: string, config: Pick<Config, 'build' | 'outbound'>): string | null {
  const result = validateGitUrl(url, { allowFile: config.build.allowFileGitUrls, outbound: config.outbound });
  return result.ok ? null : result.reason;
}
export const gitRef = z.string().superRefine((ref, ctx) => {
  const result = validateGitRef(ref);
  if (!result.ok) ctx.addIssue({ code: 'custom', message: result.reason });
});
const gitToken = z.string().min(1, 'must not be empty').max(512, 'must be at most 512 characters').regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

const envVar = z.object({
  name: envVarName,
  value: z.string().max(LIMITS.envValueLength, `must be at most ${LIMITS.envValueLength} characters`).refine((v) => !v.includes('\u0000'), 'must not contain NUL characters'),
});

export const envList = z
  .array(envVar)
  .max(LIMITS.envVars, `must have at most ${LIMITS.envVars} variables`)
  .superRefine((vars, ctx) => {
    const seen = new Set<string>();
    vars.forEach((v, i) => {
      if (seen.has(v.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate variable ${v.name}` });
      seen.add(v.name);
    });
  });

const portSpec = z.object({
  target: port,
  published: port.nullish(),
  protocol: z.enum(['TCP', 'UDP']).default('TCP'),
  mode: z.enum(['INGRESS', 'HOST']).default('INGRESS'),
});

export const healthCheckSpec = z
  .object({
    type: z.enum(['HTTP', 'CMD']),
    path: z.string().max(256, 'must be at most 256 characters').regex(HTTP_PATH, 'must be an absolute URL path such as /healthz').nullish(),
    port: port.nullish(),
    command: z.array(z.string().min(1, 'must not be empty').max(1024, 'must be at most 1024 characters')).min(1).max(32).nullish(),
    intervalSeconds: z.number().int().min(1).max(300).default(10),
    timeoutSeconds: z.number().int().min(1).max(120).default(5),
    retries: z.number().int().min(1).max(20).default(3),
    startPeriodSeconds: z.number().int().min(0).max(600).default(0),
  })
  .superRefine((h, ctx) => {
    if (h.type === 'HTTP' && !h.port) ctx.addIssue({ code: 'custom', path: ['port'], message: 'is required for an HTTP health check' });
    if (h.type === 'CMD' && !h.command) ctx.addIssue({ code: 'custom', path: ['command'], message: 'is required for a command health check' });
  });

export const resourcesSpec = z
  .object({
    cpuLimit: cpu.nullish(),
    memoryLimitMb: memoryMb.nullish(),
    cpuReservation: cpu.nullish(),
    memoryReservationMb: memoryMb.nullish(),
  })
  .superRefine((r, ctx) => {
    if (r.cpuLimit && r.cpuReservation && r.cpuReservation > r.cpuLimit) ctx.addIssue({ code: 'custom', path: ['cpuReservation'], message: 'must not exceed cpuLimit' });
    if (r.memoryLimitMb && r.memoryReservationMb && r.memoryReservationMb > r.memoryLimitMb) ctx.addIssue({ code: 'custom', path: ['memoryReservationMb'], message: 'must not exceed memoryLimitMb' });
  });

export const sourceSpec = z
  .object({
    image: imageReference.nullish(),
    templateId: z.string().min(1).max(64).nullish(),
    nixExpression: z.string().min(1, 'must not be empty').max(65_536, 'must be at most 64 KiB').nullish(),
    gitUrl: gitUrl.nullish(),
    gitBranch: gitRef.nullish(),
    gitToken: gitToken.nullish(),
  })
  .superRefine((s, ctx) => {
    const kinds = [s.image, s.templateId, s.nixExpression, s.gitUrl].filter((v) => v != null).length;
    if (kinds !== 1) ctx.addIssue({ code: 'custom', path: [], message: 'give exactly one of image, templateId, nixExpression or gitUrl' });
    if (s.gitBranch && !s.gitUrl) ctx.addIssue({ code: 'custom', path: ['gitBranch'], message: 'is only valid with gitUrl' });
    if (s.gitToken && !s.gitUrl) ctx.addIssue({ code: 'custom', path: ['gitToken'], message: 'is only valid with gitUrl' });
  });

const customDomains = z
  .array(hostname)
  .max(LIMITS.customDomains, `must have at most ${LIMITS.customDomains} domains`)
  .superRefine((domains, ctx) => {
    domains.forEach((d, i) => {
      if (domains.indexOf(d) !== i) ctx.addIssue({ code: 'custom', path: [i], message: `duplicate domain ${d}` });
    });
  });

/** Swarm's own ports: cluster management, node gossip and overlay (VXLAN) traffic. */
export const SWARM_PORTS = [2377, 7946, 4789] as const;

/**
 * Host ports a tenant may not publish: privileged ports (below 1024, e.g. the router's 80/443), Swarm's
 * own and the API's. Only a platform admin may publish them.
 */
export function isReservedHostPort(published: number, apiPort: number): boolean {
  return published < 1024 || (SWARM_PORTS as readonly number[]).includes(published) || published === apiPort;
}

export const createServiceInput = z.object({
  name: dnsLabel,
  source: sourceSpec,
  env: envList.default([]),
  resources: resourcesSpec.default({}),
  replicas: replicas.default(1),
  ports: z.array(portSpec).max(LIMITS.ports, `must have at most ${LIMITS.ports} ports`).default([]),
  healthCheck: healthCheckSpec.nullish(),
  customDomains: customDomains.default([]),
});

export const updateServiceInput = z.object({
  source: sourceSpec.nullish(),
  env: envList.nullish(),
  resources: resourcesSpec.nullish(),
  replicas: replicas.nullish(),
  ports: z.array(portSpec).max(LIMITS.ports).nullish(),
  healthCheck: healthCheckSpec.nullish(),
  clearHealthCheck: z.boolean().nullish(),
  customDomains: customDomains.nullish(),
});

export type CreateServiceInput = z.output<typeof createServiceInput>;
export type UpdateServiceInput = z.output<typeof updateServiceInput>;
export type PortSpec = z.output<typeof portSpec>;
export type HealthCheckSpec = z.output<typeof healthCheckSpec>;

// Worker input rules, defined once for the API, the install script and the worker agent.
// ASCII-only patterns on purpose, as in src/shared/validation.ts.
import { z } from 'zod';

export const JOIN_TOKEN_PREFIX = 'cvy_join';
/** generateToken's shape: the prefix, then 32 random bytes in base64url. Nothing else reaches a shell script. */
export const JOIN_TOKEN = /^cvy_join_[A-Za-z0-9_-]{43}$/;
export const WORKER_HOSTNAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
export const LABEL_KEY = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/;
export const LABEL_VALUE = /^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;
export const SWARM_NODE_ID = /^[a-z0-9]{1,64}$/;
export const AGENT_VERSION = /^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$/;
export const CONTAINER_ID = /^[a-f0-9]{12,64}$/;
/** Random per agent process (jobs it claims are tied to it). */
export const AGENT_SESSION = /^[A-Za-z0-9_-]{8,64}$/;
const RESOURCE_ID = /^[A-Za-z0-9_-]{1,64}$/;

export const WORKER_LIMITS = {
  labels: 32,
  containers: 1000,
  joinTokenTtlSeconds: { min: 60, max: 30 * 86_400 },
  /** Longest span one metrics range query returns, in 1-minute points. */
  metricsRangeMinutes: 24 * 60,
} as const;

export const labelList = z
  .array(
    z.object({
      key: z.string().max(63, 'must be at most 63 characters').regex(LABEL_KEY, 'must be lowercase letters, digits, ".", "_" or "-", starting and ending with a letter or digit'),
      value: z.string().max(63, 'must be at most 63 characters').regex(LABEL_VALUE, 'must be letters, digits, ".", "_" or "-", starting and ending with a letter or digit'),
    }),
  )
  .max(WORKER_LIMITS.labels, `must have at most ${WORKER_LIMITS.labels} labels`)
  .superRefine((labels, ctx) => {
    const seen = new Set<string>();
    labels.forEach((label, i) => {
      if (seen.has(label.key)) ctx.addIssue({ code: 'custom', path: [i, 'key'], message: `duplicate label ${label.key}` });
      seen.add(label.key);
    });
  })
  .transform((labels) => Object.fromEntries(labels.map((l) => [l.key, l.value])) as Record<string, string>);

export const createJoinTokenInput = z.object({
  ttlSeconds: z
    .number()
    .int('must be a whole number')
    .min(WORKER_LIMITS.joinTokenTtlSeconds.min, `must be at least ${WORKER_LIMITS.joinTokenTtlSeconds.min} seconds`)
    .max(WORKER_LIMITS.joinTokenTtlSeconds.max, 'must be at most 30 days'),
  labels: labelList.nullish().transform((labels) => labels ?? {}),
});

const nonNegative = (max: number) => z.number().min(0, 'must not be negative').max(max, `must be at most ${max}`);

export const registerWorkerInput = z.object({
  // The join token is checked on its own: a bad one is an InvalidJoinTokenError, not a field error.
  joinToken: z.string(),
  hostname: z.string().trim().toLowerCase().regex(WORKER_HOSTNAME, 'must be a host name: lowercase letters, digits, hyphens and dots'),
  swarmNodeId: z.string().regex(SWARM_NODE_ID, 'must be a Swarm node id').nullish(),
  cpuCores: z.number().gt(0, 'must be positive').max(4096, 'must be at most 4096'),
  memoryMb: z.number().int('must be a whole number').min(1, 'must be positive').max(1 << 30, 'is too large'),
  diskGb: z.number().gt(0, 'must be positive').max(1e7, 'is too large'),
  labels: labelList.nullish().transform((labels) => labels ?? {}),
  agentVersion: z.string().regex(AGENT_VERSION, 'must be a version such as 1.2.3'),
});

export const reportSwarmNodeInput = z.object({
  swarmNodeId: z.string().regex(SWARM_NODE_ID, 'must be a Swarm node id'),
});

export const containerStatsInput = z.object({
  containerId: z.string().regex(CONTAINER_ID, 'must be a Docker container id'),
  serviceId: z.string().regex(RESOURCE_ID, 'must be a service id').nullish(),
  taskId: z.string().regex(RESOURCE_ID, 'must be a Swarm task id').nullish(),
  // 100 % is one full core, as `docker stats` reports it.
  cpuPercent: nonNegative(100 * 4096),
  memoryUsedMb: nonNegative(1 << 30),
  networkRxBytes: nonNegative(Number.MAX_SAFE_INTEGER),
  networkTxBytes: nonNegative(Number.MAX_SAFE_INTEGER),
});

export const heartbeatInput = z.object({
  cpuPercent: nonNegative(100),
  memoryUsedMb: z.number().int('must be a whole number').min(0).max(1 << 30),
  memoryTotalMb: z.number().int('must be a whole number').min(1, 'must be positive').max(1 << 30),
  diskUsedGb: nonNegative(1e7),
  diskTotalGb: z.number().gt(0, 'must be positive').max(1e7),
  load1: nonNegative(1e6),
  containers: z.array(containerStatsInput).max(WORKER_LIMITS.containers, `must have at most ${WORKER_LIMITS.containers} containers`),
  agentSession: z.string().regex(AGENT_SESSION, 'must be the agent session id it generated').nullish(),
});

export type HeartbeatInput = z.output<typeof heartbeatInput>;
export type ContainerStatsInput = z.output<typeof containerStatsInput>;

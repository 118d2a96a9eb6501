// Validation rules defined once and shared by the API, the controller and the worker agent.
// ASCII-only patterns on purpose: Unicode look-alikes (Cyrillic 'а' for 'a') must never pass as names.
import { z } from 'zod';

export const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const ENV_VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
// registry[:port]/path[:tag][@sha256:digest], lowercase path components as Docker requires.
export const IMAGE_REFERENCE =
  /^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*(?::[0-9]{1,5})?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;
export const HOSTNAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/;
// Deliberately narrow: health check paths end up inside a probe command in the container.
export const HTTP_PATH = /^\/[A-Za-z0-9._~/-]{0,255}$/;

export const LIMITS = {
  cpu: { min: 0.01, max: 64 },
  memoryMb: { min: 6, max: 262_144 },
  replicas: { min: 0, max: 100 },
  envVars: 200,
  envValueLength: 32_768,
  ports: 20,
  customDomains: 20,
} as const;

export const dnsLabel = z
  .string()
  .min(1, 'must not be empty')
  .max(63, 'must be at most 63 characters')
  .regex(DNS_LABEL, 'must be a DNS label: lowercase letters, digits and hyphens, not starting or ending with a hyphen');

export const envVarName = z.string().max(128, 'must be at most 128 characters').regex(ENV_VAR_NAME, 'must start with a letter or underscore and contain only letters, digits and underscores');

export const port = z.number().int('must be a whole number').min(1, 'must be between 1 and 65535').max(65535, 'must be between 1 and 65535');

export const imageReference = z.string().min(1, 'must not be empty').max(512, 'must be at most 512 characters').regex(IMAGE_REFERENCE, 'must be a Docker image reference such as registry.example.com/team/app:1.2');

export const hostname = z.string().max(253, 'must be at most 253 characters').regex(HOSTNAME, 'must be a fully qualified lowercase host name such as app.example.com');

export const email = z.string().max(254, 'must be at most 254 characters').email('must be an email address').transform((v) => v.toLowerCase());

export const password = z.string().min(10, 'must be at least 10 characters').max(256, 'must be at most 256 characters');

export const displayName = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(100, 'must be at most 100 characters')
  .refine((v) => !/[\u0000-\u001f\u007f]/.test(v), 'must not contain control characters');

export const cpu = z.number().min(LIMITS.cpu.min, `must be at least ${LIMITS.cpu.min}`).max(LIMITS.cpu.max, `must be at most ${LIMITS.cpu.max}`);
export const memoryMb = z.number().int('must be a whole number').min(LIMITS.memoryMb.min, `must be at least ${LIMITS.memoryMb.min} MB`).max(LIMITS.memoryMb.max, `must be at most ${LIMITS.memoryMb.max} MB`);
export const replicas = z.number().int('must be a whole number').min(LIMITS.replicas.min, `must be at least ${LIMITS.replicas.min}`).max(LIMITS.replicas.max, `must be at most ${LIMITS.replicas.max}`);

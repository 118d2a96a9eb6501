// Logins for private image registries, one per registry and organization. Swarm is given the login of
// the deploying organization only, so a private image is pulled with its owner's credentials or not at
// all. Passwords are stored encrypted and never leave the server except towards Docker.
import { z } from 'zod';
import type { Db } from '../../platform/db/client.js';
import type { RegistryCredential } from '../../generated/prisma/client.js';
import type { Config } from '../../config.js';
import type { RegistryAuth } from '../../platform/orchestrator/index.js';
import { decrypt, encrypt } from '../../platform/crypto/aead.js';
import { deriveKey } from '../../platform/crypto/tokens.js';
import { parseInput } from '../common/parse.js';
import { ForbiddenError, NotFoundError } from '../common/errors.js';
import { recordAudit } from '../audit/audit.js';
import { hasRole, type Actor } from '../auth/caller.js';
import { convoyImagePath } from '../services/image-ownership.js';

export type RegistryCredentialDeps = { db: Db; config: Pick<Config, 'secretKey' | 'build'> };

const CREDENTIAL_KEY = 'registry-credential';
/** Images without a registry host come from Docker Hub, which Docker logs in to under this address. */
export const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_AUTH_ADDRESS = 'https://index.docker.io/v1/';

const registryHost = z
  .string()
  .max(253, 'must be at most 253 characters')
  .transform((v) => v.toLowerCase())
  .pipe(z.string().regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$/, 'must be a registry host[:port] such as ghcr.io or registry.example.com:5000'))
  .transform((v) => (v === 'index.docker.io' || v === 'registry-1.docker.io' ? DOCKER_HUB : v));

const printable = (max: number) => z.string().min(1, 'must not be empty').max(max, `must be at most ${max} characters`).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

export const setRegistryCredentialInput = z.object({ registry: registryHost, username: printable(255), password: printable(4096) });

function assertCanManage(actor: Actor) {
  if (!hasRole(actor, 'ADMIN')) throw new ForbiddenError('Only owners and admins can manage registry credentials');
}

/** Creates or replaces the organization's login for one registry. */
export async function setRegistryCredential(deps: RegistryCredentialDeps, actor: Actor, input: unknown): Promise<RegistryCredential> {
  assertCanManage(actor);
  const { registry, username, password } = parseInput(setRegistryCredentialInput, input);
  const passwordEnc = encrypt(deriveKey(deps.config.secretKey, CREDENTIAL_KEY), password);
  return deps.db.$transaction(async (tx) => {
    const saved = await tx.registryCredential.upsert({
      where: { organizationId_registry: { organizationId: actor.organizationId, registry } },
      create: { organizationId: actor.organizationId, registry, username, passwordEnc },
      update: { username, passwordEnc },
    });
    await recordAudit(tx, actor, 'registry_credential.set', 'RegistryCredential', saved.id, { registry, username });
    return saved;
  });
}

export async function deleteRegistryCredential(deps: RegistryCredentialDeps, actor: Actor, registry: unknown): Promise<RegistryCredential> {
  assertCanManage(actor);
  const host = parseInput(registryHost, registry);
  const existing = await deps.db.registryCredential.findUnique({ where: { organizationId_registry: { organizationId: actor.organizationId, registry: host } } });
  if (!existing) throw new NotFoundError('RegistryCredential', host);
  await deps.db.$transaction(async (tx) => {
    await tx.registryCredential.delete({ where: { id: existing.id } });
    await recordAudit(tx, actor, 'registry_credential.delete', 'RegistryCredential', existing.id, { registry: host });
  });
  return existing;
}

/** The registry an image reference is pulled from (Docker's rule for the first path component). */
export function registryOf(image: string): string {
  const slash = image.indexOf('/');
  const first = slash < 0 ? '' : image.slice(0, slash).toLowerCase();
  if (!first || !(first.includes('.') || first.includes(':') || first === 'localhost')) return DOCKER_HUB;
  return first === 'index.docker.io' || first === 'registry-1.docker.io' ? DOCKER_HUB : first;
}

/**
 * The organization's login for the registry `image` comes from, for Swarm to pull with; null when it
 * has none. Images Convoy built come from the platform's own registry: never with a tenant's login.
 */
export async function pullAuthFor(deps: RegistryCredentialDeps, organizationId: string, image: string): Promise<RegistryAuth | null> {
  if (convoyImagePath(image, deps.config.build.registryUrl)) return null;
  const registry = registryOf(image);
  const credential = await deps.db.registryCredential.findUnique({ where: { organizationId_registry: { organizationId, registry } } });
  if (!credential) return null;
  return {
    username: credential.username,
    password: decrypt(deriveKey(deps.config.secretKey, CREDENTIAL_KEY), credential.passwordEnc),
    serveraddress: registry === DOCKER_HUB ? DOCKER_HUB_AUTH_ADDRESS : registry,
  };
}

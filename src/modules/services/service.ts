import type { Db } from '../../platform/db/client.js';
import type { Prisma, Service, Template } from '../../generated/prisma/client.js';
import { mainComponent } from '../templates/service.js';
import { CustomDomainStatus, ServiceStatus, SourceType } from '../../generated/prisma/enums.js';
import type { ConvoyBus, ServiceEventKind } from '../../events.js';
import type { Config } from '../../config.js';
import { parseInput } from '../common/parse.js';
import { ConflictError, NotFoundError, QuotaExceededError, ValidationError } from '../common/errors.js';
import { recordAudit } from '../audit/audit.js';
import { decrypt, encrypt } from '../../platform/crypto/aead.js';
import { deriveKey } from '../../platform/crypto/tokens.js';
import type { Actor } from '../auth/caller.js';
import { isPlatformAdmin } from '../auth/platform-admins.js';
import { createServiceInput, gitUrlRefusal, isReservedHostPort, updateServiceInput, type CreateServiceInput, type PortSpec } from './validation.js';
import { assertImageUsable } from './image-ownership.js';

export type ServiceDeps = { db: Db; bus: ConvoyBus; config: Pick<Config, 'baseDomain' | 'secretKey' | 'build' | 'port' | 'publicUrl' | 'outbound'> };

/** Scoped lookup: another organization's service is indistinguishable from a missing one. */
export async function getService(deps: Pick<ServiceDeps, 'db'>, actor: Pick<Actor, 'organizationId'>, id: string): Promise<Service> {
  const service = typeof id === 'string' && id.length <= 64
    ? await deps.db.service.findFirst({ where: { id, organizationId: actor.organizationId, deletedAt: null } })
    : null;
  if (!service) throw new NotFoundError('Service', String(id).slice(0, 64));
  return service;
}

function sourceColumns(config: ServiceDeps['config'], source: CreateServiceInput['source']) {
  const none = { image: null, templateId: null, nixExpression: null, gitUrl: null, gitBranch: null, gitTokenEnc: null };
  if (source.image) return { ...none, sourceType: SourceType.IMAGE, image: source.image };
  if (source.templateId) return { ...none, sourceType: SourceType.TEMPLATE, templateId: source.templateId };
  if (source.nixExpression) return { ...none, sourceType: SourceType.NIX, nixExpression: source.nixExpression };
  if (source.gitUrl!.startsWith('file:') && !config.build.allowFileGitUrls) {
    throw ValidationError.single(['source', 'gitUrl'], 'file:// URLs are not allowed on this installation');
  }
  const refusal = gitUrlRefusal(source.gitUrl!, config);
  if (refusal) throw ValidationError.single(['source', 'gitUrl'], refusal);
  return {
    ...none,
    sourceType: SourceType.GIT,
    gitUrl: source.gitUrl!,
    gitBranch: source.gitBranch ?? 'main',
    // The token is kept encrypted and never returned; builds hand it to git through an askpass helper.
    gitTokenEnc: source.gitToken ? encrypt(deriveKey(config.secretKey, GIT_TOKEN_KEY), source.gitToken) : null,
  };
}

const GIT_TOKEN_KEY = 'git-token';

/** The service's repository token in clear, for the build that clones it; null when it has none. */
export function gitTokenOf(config: Pick<Config, 'secretKey'>, service: { gitTokenEnc: string | null }): string | null {
  return service.gitTokenEnc ? decrypt(deriveKey(config.secretKey, GIT_TOKEN_KEY), service.gitTokenEnc) : null;
}

/**
 * Privileged, Swarm and API ports on the nodes are the platform's: only a platform admin may publish
 * them (e.g. to run the edge router itself as a Convoy service).
 */
async function assertPublishedPortsAllowed(deps: Pick<ServiceDeps, 'db' | 'config'>, actor: Actor, ports: PortSpec[]) {
  const reserved = ports.flatMap((p, i) => (p.published != null && isReservedHostPort(p.published, deps.config.port) ? [{ i, published: p.published }] : []));
  if (reserved.length === 0 || (await isPlatformAdmin(deps.db, actor.userId))) return;
  throw new ValidationError(
    reserved.map(({ i, published }) => ({ path: ['ports', String(i), 'published'], message: `${published} is reserved for the platform (ports below 1024, Swarm's 2377, 7946 and 4789, and the API's port)` })),
  );
}

/** Host names the platform answers on itself: its base domain and everything under it, its public URL. */
function platformOwns(config: ServiceDeps['config'], domain: string): boolean {
  const base = config.baseDomain.toLowerCase();
  const publicHost = config.publicUrl ? new URL(config.publicUrl).hostname.toLowerCase() : null;
  return domain === base || domain.endsWith(`.${base}`) || domain === publicHost;
}

/**
 * A custom domain has one owner in the whole installation. Whether the other claim is in this
 * organization or another, the answer is the same and says nothing about who holds it.
 */
async function assertDomainsClaimable(deps: Pick<ServiceDeps, 'db' | 'config'>, serviceId: string | null, domains: string[]) {
  const reserved = domains.flatMap((d, i) => (platformOwns(deps.config, d) ? [{ path: ['customDomains', String(i)], message: `${d} belongs to the platform (${deps.config.baseDomain} and its subdomains)` }] : []));
  if (reserved.length) throw new ValidationError(reserved);
  if (domains.length === 0) return;
  const notMine = serviceId ? { not: serviceId } : undefined;
  const [claimed, hostnames] = await Promise.all([
    deps.db.customDomain.findFirst({ where: { domain: { in: domains }, serviceId: notMine }, select: { domain: true } }),
    deps.db.service.findFirst({ where: { hostname: { in: domains }, deletedAt: null, id: notMine }, select: { hostname: true } }),
  ]);
  const taken = claimed?.domain ?? hostnames?.hostname;
  if (taken) throw new ConflictError(`The domain ${taken} is already in use`, 'customDomains');
}

/** Makes the service's domains exactly `domains`: kept ones keep their status, new ones start PENDING. */
async function replaceCustomDomains(tx: Prisma.TransactionClient, serviceId: string, domains: string[]) {
  await tx.customDomain.deleteMany({ where: { serviceId, domain: { notIn: domains } } });
  const kept = new Set((await tx.customDomain.findMany({ where: { serviceId }, select: { domain: true } })).map((d) => d.domain));
  const added = domains.filter((d) => !kept.has(d));
  if (added.length) await tx.customDomain.createMany({ data: added.map((domain) => ({ serviceId, domain })) });
}

/** Both unique indexes (service name, custom domain) answer P2002; the domain check tells them apart. */
async function uniqueViolation(deps: Pick<ServiceDeps, 'db' | 'config'>, error: unknown, serviceId: string | null, name: string | null, domains: string[]) {
  if ((error as { code?: string }).code !== 'P2002') return error;
  try {
    await assertDomainsClaimable(deps, serviceId, domains);
  } catch (conflict) {
    return conflict;
  }
  return name ? new ConflictError(`A service named ${name} already exists`, 'name') : error;
}

/** The custom domains the router may send to a service: only those proven to be its owner's. */
export async function routedDomains(db: Db, serviceId: string): Promise<string[]> {
  const rows = await db.customDomain.findMany({ where: { serviceId, status: CustomDomainStatus.VERIFIED }, select: { domain: true }, orderBy: { domain: 'asc' } });
  return rows.map((r) => r.domain);
}

function envObject(env: { name: string; value: string }[]): Record<string, string> {
  return Object.fromEntries(env.map((v) => [v.name, v.value]));
}

async function assertTemplateVisible(db: Db, organizationId: string, templateId: string | null): Promise<Template | null> {
  if (!templateId) return null;
  const template = await db.template.findFirst({ where: { id: templateId, OR: [{ organizationId }, { organizationId: null }] } });
  if (!template) throw ValidationError.single(['source', 'templateId'], 'no such template');
  return template;
}

/** A service made from a template starts from the template's port, health check, resources and env. */
function withTemplateDefaults(parsed: CreateServiceInput, given: Record<string, unknown>, template: Template): CreateServiceInput {
  const component = mainComponent(template);
  const port = component?.port ?? null;
  const defaults = { ...((template.defaultEnv ?? {}) as Record<string, string>), ...(component?.env ?? {}) };
  const userEnv = new Set(parsed.env.map((v) => v.name));
  return {
    ...parsed,
    env: [...Object.entries(defaults).filter(([name]) => !userEnv.has(name)).map(([name, value]) => ({ name, value })), ...parsed.env],
    ports: given.ports === undefined && port ? [{ target: port, published: null, protocol: 'TCP', mode: 'INGRESS' }] : parsed.ports,
    healthCheck:
      given.healthCheck === undefined && port && component?.healthCheck?.path
        ? { type: 'HTTP', path: component.healthCheck.path, port, command: null, intervalSeconds: 10, timeoutSeconds: 5, retries: 3, startPeriodSeconds: 0 }
        : parsed.healthCheck,
    resources: given.resources === undefined ? { ...parsed.resources, cpuLimit: template.defaultCpu, memoryLimitMb: template.defaultMemoryMb } : parsed.resources,
  };
}

/** Quotas are checked synchronously, before anything is written. */
export async function assertWithinQuota(db: Db, organizationId: string, change: { addServices: number; replicas: number; cpu: number; memoryMb: number; excludeServiceId?: string }) {
  const quota = await db.quota.findUnique({ where: { organizationId } });
  if (!quota) return;
  const live = await db.service.findMany({
    where: { organizationId, deletedAt: null, ...(change.excludeServiceId ? { id: { not: change.excludeServiceId } } : {}) },
    select: { replicas: true, cpuLimit: true, memoryLimitMb: true },
  });
  const services = live.length + change.addServices;
  if (services > quota.maxServices) throw new QuotaExceededError('services', quota.maxServices, services);
  const totalReplicas = live.reduce((n, s) => n + s.replicas, 0) + change.replicas;
  if (totalReplicas > quota.maxReplicas) throw new QuotaExceededError('replicas', quota.maxReplicas, totalReplicas);
  const totalCpu = live.reduce((n, s) => n + (s.cpuLimit ?? 0) * s.replicas, 0) + change.cpu;
  if (totalCpu > quota.maxCpu) throw new QuotaExceededError('cpu', quota.maxCpu, totalCpu);
  const totalMemory = live.reduce((n, s) => n + (s.memoryLimitMb ?? 0) * s.replicas, 0) + change.memoryMb;
  if (totalMemory > quota.maxMemoryMb) throw new QuotaExceededError('memoryMb', quota.maxMemoryMb, totalMemory);
}

export async function publishServiceEvent(bus: ConvoyBus, kind: ServiceEventKind, service: Service, previousStatus: string | null = null, reason: string | null = null) {
  const event = { kind, serviceId: service.id, organizationId: service.organizationId, name: service.name, status: service.status, previousStatus, reason, at: new Date().toISOString() };
  await Promise.all([bus.publish('service', service.id, event), bus.publish('organizationServices', service.organizationId, event)]);
}

export async function createService(deps: ServiceDeps, actor: Actor, input: unknown): Promise<Service> {
  const validated = parseInput(createServiceInput, input);
  const template = await assertTemplateVisible(deps.db, actor.organizationId, validated.source.templateId ?? null);
  const parsed = template ? withTemplateDefaults(validated, input as Record<string, unknown>, template) : validated;
  if (parsed.source.image) await assertImageUsable(deps, actor.organizationId, parsed.source.image);
  await assertPublishedPortsAllowed(deps, actor, parsed.ports);
  await assertDomainsClaimable(deps, null, parsed.customDomains);
  await assertWithinQuota(deps.db, actor.organizationId, {
    addServices: 1,
    replicas: parsed.replicas,
    cpu: (parsed.resources.cpuLimit ?? 0) * parsed.replicas,
    memoryMb: (parsed.resources.memoryLimitMb ?? 0) * parsed.replicas,
  });
  const org = await deps.db.organization.findUniqueOrThrow({ where: { id: actor.organizationId }, select: { slug: true } });
  const hostname = `${parsed.name}-${org.slug}.${deps.config.baseDomain}`;
  // Service `a-b` of org `c` and service `a` of org `b-c` would share a host name: the first keeps it.
  const sameHost = await deps.db.service.findFirst({ where: { hostname, deletedAt: null, organizationId: { not: actor.organizationId } }, select: { id: true } });
  if (sameHost) throw new ConflictError(`The host name ${hostname} is already in use: choose another service name`, 'name');
  try {
    const service = await deps.db.$transaction(async (tx) => {
      const created = await tx.service.create({
        data: {
          organizationId: actor.organizationId,
          name: parsed.name,
          status: ServiceStatus.PENDING,
          ...sourceColumns(deps.config, parsed.source),
          env: envObject(parsed.env),
          cpuLimit: parsed.resources.cpuLimit ?? null,
          memoryLimitMb: parsed.resources.memoryLimitMb ?? null,
          cpuReservation: parsed.resources.cpuReservation ?? null,
          memoryReservationMb: parsed.resources.memoryReservationMb ?? null,
          replicas: parsed.replicas,
          ports: parsed.ports as Prisma.InputJsonValue,
          healthCheck: (parsed.healthCheck ?? undefined) as Prisma.InputJsonValue | undefined,
          hostname,
          customDomains: { create: parsed.customDomains.map((domain) => ({ domain })) },
          statusHistory: { create: { fromStatus: null, toStatus: ServiceStatus.PENDING, reason: 'service created' } },
        },
      });
      await recordAudit(tx, actor, 'service.create', 'Service', created.id, { name: created.name, sourceType: created.sourceType });
      return created;
    });
    await publishServiceEvent(deps.bus, 'CREATED', service);
    return service;
  } catch (error) {
    throw await uniqueViolation(deps, error, null, parsed.name, parsed.customDomains);
  }
}

export async function updateService(deps: ServiceDeps, actor: Actor, id: string, input: unknown): Promise<Service> {
  const parsed = parseInput(updateServiceInput, input);
  const current = await getService(deps, actor, id);
  const data: Prisma.ServiceUpdateInput = {};
  if (parsed.source) {
    await assertTemplateVisible(deps.db, actor.organizationId, parsed.source.templateId ?? null);
    if (parsed.source.image) await assertImageUsable(deps, actor.organizationId, parsed.source.image);
    const { templateId, ...rest } = sourceColumns(deps.config, parsed.source);
    Object.assign(data, rest, { template: templateId ? { connect: { id: templateId } } : { disconnect: true } });
  }
  if (parsed.env) data.env = envObject(parsed.env);
  if (parsed.resources) {
    data.cpuLimit = parsed.resources.cpuLimit ?? null;
    data.memoryLimitMb = parsed.resources.memoryLimitMb ?? null;
    data.cpuReservation = parsed.resources.cpuReservation ?? null;
    data.memoryReservationMb = parsed.resources.memoryReservationMb ?? null;
  }
  if (parsed.replicas != null) data.replicas = parsed.replicas;
  if (parsed.ports) {
    await assertPublishedPortsAllowed(deps, actor, parsed.ports);
    data.ports = parsed.ports as Prisma.InputJsonValue;
  }
  if (parsed.healthCheck) data.healthCheck = parsed.healthCheck as Prisma.InputJsonValue;
  if (parsed.clearHealthCheck) data.healthCheck = null as unknown as Prisma.InputJsonValue;
  if (parsed.customDomains) await assertDomainsClaimable(deps, current.id, parsed.customDomains);

  const replicas = parsed.replicas ?? current.replicas;
  const cpuLimit = parsed.resources ? (parsed.resources.cpuLimit ?? 0) : (current.cpuLimit ?? 0);
  const memoryLimit = parsed.resources ? (parsed.resources.memoryLimitMb ?? 0) : (current.memoryLimitMb ?? 0);
  await assertWithinQuota(deps.db, actor.organizationId, { addServices: 1, replicas, cpu: cpuLimit * replicas, memoryMb: memoryLimit * replicas, excludeServiceId: current.id });

  const service = await deps.db.$transaction(async (tx) => {
    const updated = await tx.service.update({ where: { id: current.id }, data });
    if (parsed.customDomains) await replaceCustomDomains(tx, current.id, parsed.customDomains);
    await recordAudit(tx, actor, 'service.update', 'Service', current.id, { fields: Object.keys(parsed).filter((k) => (parsed as Record<string, unknown>)[k] != null) });
    return updated;
  }).catch(async (error: unknown) => {
    throw await uniqueViolation(deps, error, current.id, null, parsed.customDomains ?? []);
  });
  await publishServiceEvent(deps.bus, 'UPDATED', service);
  return service;
}

/**
 * Records a status transition with its reason and publishes it. The `from` guard makes concurrent
 * transitions safe: it returns null when the service was no longer in an expected state.
 */
export async function transitionServiceStatus(
  deps: Pick<ServiceDeps, 'db' | 'bus'>,
  serviceId: string,
  to: ServiceStatus,
  reason: string,
  from?: ServiceStatus[],
): Promise<Service | null> {
  const current = await deps.db.service.findUnique({ where: { id: serviceId } });
  if (!current || (from && !from.includes(current.status))) return null;
  if (current.status === to) return current;
  const service = await deps.db.$transaction(async (tx) => {
    const moved = await tx.service.updateMany({ where: { id: serviceId, status: current.status }, data: { status: to } });
    if (moved.count === 0) return null;
    await tx.serviceStatusChange.create({ data: { serviceId, fromStatus: current.status, toStatus: to, reason } });
    return tx.service.findUniqueOrThrow({ where: { id: serviceId } });
  });
  if (service) await publishServiceEvent(deps.bus, 'STATUS_CHANGED', service, current.status, reason);
  return service;
}

/** Marks the service deleted; its history is kept. Runtime clean-up is the deploy module's job. */
export async function markServiceDeleted(deps: Pick<ServiceDeps, 'db' | 'bus'>, serviceId: string, reason: string): Promise<Service> {
  const service = await deps.db.$transaction(async (tx) => {
    const current = await tx.service.findUniqueOrThrow({ where: { id: serviceId } });
    await tx.serviceStatusChange.create({ data: { serviceId, fromStatus: current.status, toStatus: ServiceStatus.DELETING, reason } });
    // Its domains are free for another service at once; the router stops sending them here on removal.
    await tx.customDomain.deleteMany({ where: { serviceId } });
    return tx.service.update({ where: { id: serviceId }, data: { status: ServiceStatus.DELETING, deletedAt: current.deletedAt ?? new Date() } });
  });
  await publishServiceEvent(deps.bus, 'DELETED', service, null, reason);
  return service;
}

export async function deleteService(deps: ServiceDeps, actor: Actor, id: string): Promise<Service> {
  const service = await getService(deps, actor, id);
  await recordAudit(deps.db, actor, 'service.delete', 'Service', service.id, { name: service.name });
  return markServiceDeleted(deps, service.id, 'deleted by user');
}

export type ServiceFilter = { status?: ServiceStatus | null; search?: string | null };

export function serviceListWhere(actor: Pick<Actor, 'organizationId'>, filter: ServiceFilter | null | undefined): Prisma.ServiceWhereInput {
  const search = filter?.search?.trim();
  if (search && search.length > 100) throw ValidationError.single(['filter', 'search'], 'must be at most 100 characters');
  return {
    organizationId: actor.organizationId,
    deletedAt: null,
    ...(filter?.status ? { status: filter.status } : {}),
    ...(search ? { name: { contains: search, mode: 'insensitive' as const } } : {}),
  };
}

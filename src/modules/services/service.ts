import type { Db } from '../../platform/db/client.js';
import type { Prisma, Service, Template } from '../../generated/prisma/client.js';
import { mainComponent } from '../templates/service.js';
import { ServiceStatus, SourceType } from '../../generated/prisma/enums.js';
import type { ConvoyBus, ServiceEventKind } from '../../events.js';
import type { Config } from '../../config.js';
import { parseInput } from '../common/parse.js';
import { ConflictError, NotFoundError, QuotaExceededError, ValidationError } from '../common/errors.js';
import { recordAudit } from '../audit/audit.js';
import { decrypt, encrypt } from '../../platform/crypto/aead.js';
import { deriveKey } from '../../platform/crypto/tokens.js';
import type { Actor } from '../auth/caller.js';
import { createServiceInput, updateServiceInput, type CreateServiceInput } from './validation.js';

export type ServiceDeps = { db: Db; bus: ConvoyBus; config: Pick<Config, 'baseDomain' | 'secretKey' | 'build'> };

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
  await assertWithinQuota(deps.db, actor.organizationId, {
    addServices: 1,
    replicas: parsed.replicas,
    cpu: (parsed.resources.cpuLimit ?? 0) * parsed.replicas,
    memoryMb: (parsed.resources.memoryLimitMb ?? 0) * parsed.replicas,
  });
  const org = await deps.db.organization.findUniqueOrThrow({ where: { id: actor.organizationId }, select: { slug: true } });
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
          hostname: `${parsed.name}-${org.slug}.${deps.config.baseDomain}`,
          customDomains: parsed.customDomains,
          statusHistory: { create: { fromStatus: null, toStatus: ServiceStatus.PENDING, reason: 'service created' } },
        },
      });
      await recordAudit(tx, actor, 'service.create', 'Service', created.id, { name: created.name, sourceType: created.sourceType });
      return created;
    });
    await publishServiceEvent(deps.bus, 'CREATED', service);
    return service;
  } catch (error) {
    if ((error as { code?: string }).code === 'P2002') throw new ConflictError(`A service named ${parsed.name} already exists`, 'name');
    throw error;
  }
}

export async function updateService(deps: ServiceDeps, actor: Actor, id: string, input: unknown): Promise<Service> {
  const parsed = parseInput(updateServiceInput, input);
  const current = await getService(deps, actor, id);
  const data: Prisma.ServiceUpdateInput = {};
  if (parsed.source) {
    await assertTemplateVisible(deps.db, actor.organizationId, parsed.source.templateId ?? null);
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
  if (parsed.ports) data.ports = parsed.ports as Prisma.InputJsonValue;
  if (parsed.healthCheck) data.healthCheck = parsed.healthCheck as Prisma.InputJsonValue;
  if (parsed.clearHealthCheck) data.healthCheck = null as unknown as Prisma.InputJsonValue;
  if (parsed.customDomains) data.customDomains = parsed.customDomains;

  const replicas = parsed.replicas ?? current.replicas;
  const cpuLimit = parsed.resources ? (parsed.resources.cpuLimit ?? 0) : (current.cpuLimit ?? 0);
  const memoryLimit = parsed.resources ? (parsed.resources.memoryLimitMb ?? 0) : (current.memoryLimitMb ?? 0);
  await assertWithinQuota(deps.db, actor.organizationId, { addServices: 1, replicas, cpu: cpuLimit * replicas, memoryMb: memoryLimit * replicas, excludeServiceId: current.id });

  const service = await deps.db.$transaction(async (tx) => {
    const updated = await tx.service.update({ where: { id: current.id }, data });
    await recordAudit(tx, actor, 'service.update', 'Service', current.id, { fields: Object.keys(parsed).filter((k) => (parsed as Record<string, unknown>)[k] != null) });
    return updated;
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

import { builder } from '../../graphql/builder.js';
import { CustomDomainStatus, ServiceStatus, SourceType } from '../../generated/prisma/enums.js';
import { ConflictError, ForbiddenError, NotFoundError, QuotaExceededError, ValidationError } from '../common/errors.js';
import { actorOf } from '../common/graphql.js';
import type { ServiceEvent } from '../../events.js';
import * as services from './service.js';
import { followServiceEvents } from './status-events.js';
import { pendingChanges, queueRemoval } from '../deployments/service.js';
import type { HealthCheckSpec, PortSpec } from './validation.js';

export const ServiceStatusEnum = builder.enumType(ServiceStatus, { name: 'ServiceStatus' });
const SourceTypeEnum = builder.enumType(SourceType, { name: 'SourceType' });
const ProtocolEnum = builder.enumType('Protocol', { values: ['TCP', 'UDP'] as const });
const PublishModeEnum = builder.enumType('PublishMode', { values: ['INGRESS', 'HOST'] as const, description: 'INGRESS uses the routing mesh; HOST binds the port on the node running the task' });
const HealthCheckTypeEnum = builder.enumType('HealthCheckType', { values: ['HTTP', 'CMD'] as const });
const ServiceEventKindEnum = builder.enumType('ServiceEventKind', { values: ['CURRENT', 'CREATED', 'UPDATED', 'DELETED', 'STATUS_CHANGED', 'MIGRATION'] as const });

const EnvVar = builder.simpleObject('EnvVar', { fields: (t) => ({ name: t.string(), value: t.string() }) });
const Port = builder.objectRef<PortSpec>('Port').implement({
  fields: (t) => ({
    target: t.exposeInt('target'),
    published: t.exposeInt('published', { nullable: true }),
    protocol: t.field({ type: ProtocolEnum, resolve: (p) => p.protocol }),
    mode: t.field({ type: PublishModeEnum, resolve: (p) => p.mode }),
  }),
});
const HealthCheck = builder.objectRef<HealthCheckSpec>('HealthCheck').implement({
  fields: (t) => ({
    type: t.field({ type: HealthCheckTypeEnum, resolve: (h) => h.type }),
    path: t.exposeString('path', { nullable: true }),
    port: t.exposeInt('port', { nullable: true }),
    command: t.exposeStringList('command', { nullable: true }),
    intervalSeconds: t.exposeInt('intervalSeconds'),
    timeoutSeconds: t.exposeInt('timeoutSeconds'),
    retries: t.exposeInt('retries'),
    startPeriodSeconds: t.exposeInt('startPeriodSeconds'),
  }),
});
const Resources = builder.simpleObject('Resources', {
  fields: (t) => ({
    cpuLimit: t.float({ nullable: true }),
    memoryLimitMb: t.int({ nullable: true }),
    cpuReservation: t.float({ nullable: true }),
    memoryReservationMb: t.int({ nullable: true }),
  }),
});
const ServiceSource = builder.simpleObject('ServiceSource', {
  fields: (t) => ({
    type: t.field({ type: SourceTypeEnum }),
    image: t.string({ nullable: true }),
    templateId: t.id({ nullable: true }),
    nixExpression: t.string({ nullable: true }),
    gitUrl: t.string({ nullable: true }),
    gitBranch: t.string({ nullable: true }),
    hasGitToken: t.boolean({ description: 'Whether a repository access token is stored (it is never returned)' }),
  }),
});

const CustomDomainStatusEnum = builder.enumType(CustomDomainStatus, {
  name: 'CustomDomainStatus',
  description: 'Only VERIFIED domains are routed to the service; a new domain starts PENDING',
});

builder.prismaObject('CustomDomain', {
  fields: (t) => ({
    domain: t.exposeString('domain'),
    status: t.expose('status', { type: CustomDomainStatusEnum }),
    verifiedAt: t.expose('verifiedAt', { type: 'DateTime', nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

builder.prismaObject('ServiceStatusChange', {
  fields: (t) => ({
    id: t.exposeID('id'),
    fromStatus: t.expose('fromStatus', { type: ServiceStatusEnum, nullable: true }),
    toStatus: t.expose('toStatus', { type: ServiceStatusEnum }),
    reason: t.exposeString('reason'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

export const ServiceRef = builder.prismaObject('Service', {
  description: 'Its configuration (source, env, ports, healthCheck, resources, replicas) is what the next deploy applies; currentDeployment is what runs, and pendingChanges names where they differ',
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name'),
    status: t.expose('status', { type: ServiceStatusEnum }),
    source: t.field({
      type: ServiceSource,
      select: { sourceType: true, image: true, templateId: true, nixExpression: true, gitUrl: true, gitBranch: true, gitTokenEnc: true },
      resolve: (s) => ({ type: s.sourceType, image: s.image, templateId: s.templateId, nixExpression: s.nixExpression, gitUrl: s.gitUrl, gitBranch: s.gitBranch, hasGitToken: !!s.gitTokenEnc }),
    }),
    env: t.field({
      type: [EnvVar],
      select: { env: true },
      resolve: (s) => Object.entries((s.env ?? {}) as Record<string, string>).map(([name, value]) => ({ name, value })),
    }),
    resources: t.field({
      type: Resources,
      select: { cpuLimit: true, memoryLimitMb: true, cpuReservation: true, memoryReservationMb: true },
      resolve: (s) => ({ cpuLimit: s.cpuLimit, memoryLimitMb: s.memoryLimitMb, cpuReservation: s.cpuReservation, memoryReservationMb: s.memoryReservationMb }),
    }),
    replicas: t.exposeInt('replicas'),
    ports: t.field({ type: [Port], select: { ports: true }, resolve: (s) => (s.ports ?? []) as PortSpec[] }),
    healthCheck: t.field({ type: HealthCheck, nullable: true, select: { healthCheck: true }, resolve: (s) => (s.healthCheck ?? null) as HealthCheckSpec | null }),
    pendingChanges: t.stringList({
      nullable: true,
      description:
        "The Service fields (source, env, ports, healthCheck, resources, replicas) whose value differs from what the current deployment runs: deployService (or a build of a built source) applies them all, redeployService all but source. Empty when what runs matches the configuration; null before the first healthy deployment. updateService and rollbackService leave such differences; restart, stop, start and scale keep the running configuration.",
      select: {
        sourceType: true, image: true, templateId: true, nixExpression: true, gitUrl: true, gitBranch: true,
        env: true, ports: true, healthCheck: true, cpuLimit: true, memoryLimitMb: true, cpuReservation: true, memoryReservationMb: true, replicas: true,
        currentDeployment: { select: { image: true, replicas: true, config: true } },
      },
      resolve: (s) => pendingChanges(s, s.currentDeployment),
    }),
    hostname: t.exposeString('hostname', { nullable: true, description: 'The generated public host name, {name}-{org}.{BASE_DOMAIN}' }),
    customDomains: t.relation('customDomains', {
      description: 'Domains the service answers on besides its hostname, each routed once VERIFIED',
      query: { orderBy: [{ createdAt: 'asc' }, { domain: 'asc' }] },
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    organization: t.relation('organization'),
    statusHistory: t.relation('statusHistory', {
      args: { last: t.arg.int({ defaultValue: 20 }) },
      query: (args) => ({ orderBy: { createdAt: 'desc' }, take: Math.min(Math.max(args.last ?? 20, 1), 100) }),
    }),
  }),
});

const ServiceFilter = builder.inputType('ServiceFilter', {
  fields: (t) => ({ status: t.field({ type: ServiceStatusEnum }), search: t.string({ description: 'Case-insensitive substring of the name' }) }),
});

builder.queryField('service', (t) =>
  t.prismaField({
    type: 'Service',
    nullable: true,
    authScopes: { member: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, args, ctx) =>
      ctx.app.db.service.findFirst({ ...query, where: { id: String(args.id), organizationId: actorOf(ctx).organizationId, deletedAt: null } }),
  }),
);

builder.queryField('services', (t) =>
  t.prismaConnection({
    type: 'Service',
    cursor: 'id',
    authScopes: { member: true },
    maxSize: 100,
    defaultSize: 20,
    args: { filter: t.arg({ type: ServiceFilter }) },
    resolve: (query, _root, args, ctx) =>
      ctx.app.db.service.findMany({ ...query, where: services.serviceListWhere(actorOf(ctx), args.filter), orderBy: { createdAt: 'desc' } }),
  }),
);

const EnvVarInput = builder.inputType('EnvVarInput', { fields: (t) => ({ name: t.string({ required: true }), value: t.string({ required: true }) }) });
const PortInput = builder.inputType('PortInput', {
  fields: (t) => ({
    target: t.int({ required: true }),
    published: t.int({ description: 'Host port; below 1024, 2377, 7946, 4789 and the API port are reserved for platform admins' }),
    protocol: t.field({ type: ProtocolEnum, defaultValue: 'TCP' }),
    mode: t.field({ type: PublishModeEnum, defaultValue: 'INGRESS' }),
  }),
});
const HealthCheckInput = builder.inputType('HealthCheckInput', {
  fields: (t) => ({
    type: t.field({ type: HealthCheckTypeEnum, required: true }),
    path: t.string({ description: 'HTTP path probed inside the container, e.g. /healthz' }),
    port: t.int(),
    command: t.stringList({ description: 'Command run inside the container (exec form, no shell)' }),
    intervalSeconds: t.int(),
    timeoutSeconds: t.int(),
    retries: t.int(),
    startPeriodSeconds: t.int(),
  }),
});
const ResourcesInput = builder.inputType('ResourcesInput', {
  fields: (t) => ({ cpuLimit: t.float(), memoryLimitMb: t.int(), cpuReservation: t.float(), memoryReservationMb: t.int() }),
});
const ServiceSourceInput = builder.inputType('ServiceSourceInput', {
  description: 'Exactly one of image, templateId, nixExpression or gitUrl',
  fields: (t) => ({
    image: t.string(),
    templateId: t.id(),
    nixExpression: t.string(),
    gitUrl: t.string(),
    gitBranch: t.string(),
    gitToken: t.string({ description: 'Access token for a private repository; stored encrypted, never returned' }),
  }),
});

const CreateServiceInput = builder.inputType('CreateServiceInput', {
  fields: (t) => ({
    name: t.string({ required: true, description: 'A DNS label: 1-63 lowercase letters, digits and hyphens' }),
    source: t.field({ type: ServiceSourceInput, required: true }),
    env: t.field({ type: [EnvVarInput] }),
    resources: t.field({ type: ResourcesInput }),
    replicas: t.int(),
    ports: t.field({ type: [PortInput] }),
    healthCheck: t.field({ type: HealthCheckInput }),
    customDomains: t.stringList({ description: 'Each unique in the installation and outside the platform\'s own domain; starts PENDING' }),
  }),
});

const UpdateServiceInput = builder.inputType('UpdateServiceInput', {
  description: 'Fields left out keep their value. The name cannot change: it is the service\'s DNS name.',
  fields: (t) => ({
    source: t.field({ type: ServiceSourceInput }),
    env: t.field({ type: [EnvVarInput], description: 'Replaces every variable' }),
    resources: t.field({ type: ResourcesInput }),
    replicas: t.int(),
    ports: t.field({ type: [PortInput] }),
    healthCheck: t.field({ type: HealthCheckInput }),
    clearHealthCheck: t.boolean(),
    customDomains: t.stringList({ description: 'Replaces the list; domains kept keep their status, new ones start PENDING' }),
  }),
});

const serviceErrors = [ValidationError, NotFoundError, ForbiddenError, ConflictError, QuotaExceededError];

builder.mutationField('createService', (t) =>
  t.prismaField({
    type: 'Service',
    authScopes: { member: true },
    errors: { types: serviceErrors, directResult: true, union: { name: 'CreateServiceResult' } },
    args: { input: t.arg({ type: CreateServiceInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) => {
      const service = await services.createService(ctx.app, actorOf(ctx), input);
      return ctx.app.db.service.findUniqueOrThrow({ ...query, where: { id: service.id } });
    },
  }),
);

builder.mutationField('updateService', (t) =>
  t.prismaField({
    type: 'Service',
    description: "Changes the configuration the next deploy applies; nothing running changes until deployService or redeployService. The returned Service's pendingChanges names what a deploy would change",
    authScopes: { member: true },
    errors: { types: serviceErrors, directResult: true, union: { name: 'UpdateServiceResult' } },
    args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateServiceInput, required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const service = await services.updateService(ctx.app, actorOf(ctx), String(args.id), args.input);
      return ctx.app.db.service.findUniqueOrThrow({ ...query, where: { id: service.id } });
    },
  }),
);

builder.mutationField('deleteService', (t) =>
  t.prismaField({
    type: 'Service',
    description: 'Deletes the service and removes what it runs; its history is kept',
    authScopes: { member: true },
    errors: { types: [NotFoundError, ForbiddenError, ConflictError], directResult: true, union: { name: 'DeleteServiceResult' } },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const service = await services.deleteService(ctx.app, actorOf(ctx), String(args.id));
      await queueRemoval(ctx.app, service.id);
      return ctx.app.db.service.findUniqueOrThrow({ ...query, where: { id: service.id } });
    },
  }),
);

const ServiceEventRef = builder.objectRef<ServiceEvent>('ServiceEvent').implement({
  fields: (t) => ({
    kind: t.field({ type: ServiceEventKindEnum, resolve: (e) => e.kind }),
    serviceId: t.exposeID('serviceId'),
    name: t.exposeString('name'),
    status: t.field({ type: ServiceStatusEnum, resolve: (e) => e.status as ServiceStatus }),
    previousStatus: t.field({ type: ServiceStatusEnum, nullable: true, resolve: (e) => e.previousStatus as ServiceStatus | null }),
    reason: t.exposeString('reason', { nullable: true }),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
  }),
});

builder.subscriptionField('serviceEvents', (t) =>
  t.field({
    type: ServiceEventRef,
    description: 'Events of one service, starting with a CURRENT event (its status now and the reason of its last transition); all services of the organization, without a CURRENT event, when serviceId is left out',
    authScopes: { member: true },
    args: { serviceId: t.arg.id() },
    subscribe: (_root, args, ctx) => followServiceEvents(ctx.app, actorOf(ctx), args.serviceId ? String(args.serviceId) : null),
    resolve: (event) => event,
  }),
);

import { GraphQLError } from 'graphql';
import { builder } from '../../graphql/builder.js';
import { ErrorInterface } from '../../graphql/errors.js';
import type { GraphQLContext } from '../../graphql/context.js';
import { WorkerStatus } from '../../generated/prisma/enums.js';
import type { ContainerStatsSample, ServiceMetricsEvent, WorkerEvent, WorkerHeartbeatEvent } from '../../events.js';
import { ConflictError, NotFoundError, RateLimitedError, UnauthenticatedError, ValidationError } from '../common/errors.js';
import { actorOf, userIdOf, workerIdOf } from '../common/graphql.js';
import type { PlatformAdmin } from '../auth/platform-admins.js';
import { InvalidJoinTokenError } from './errors.js';
import { recordHeartbeat } from './heartbeat.js';
import { apiUrlFor, installCommand } from './install.js';
import type { ServiceMetricsPoint, WorkerMetricsPoint } from './metrics.js';
import { RESOURCES, snapshotOf, type MetricsSnapshot, type Resource } from './notify.js';
import * as workers from './service.js';
import { forgetWorkerCredentials } from '../auth/worker-credentials.js';
import { operationAddress } from '../auth/throttle.js';
import { limitJoinTokenUse } from './join-limits.js';

function adminOf(ctx: GraphQLContext): PlatformAdmin {
  return { userId: userIdOf(ctx), requestId: ctx.requestId };
}

/** Yoga puts the HTTP request in the context; operations over a WebSocket have none. */
/** The port this operation's request arrived on (Yoga puts the Node request in the context). */
function localPortOf(ctx: GraphQLContext): number | undefined {
  return (ctx as { req?: { socket?: { localPort?: number } } }).req?.socket?.localPort;
}

function notFound(type: string, id: string): GraphQLError {
  return new GraphQLError(`${type} ${id.slice(0, 64)} was not found`, { extensions: { code: 'NOT_FOUND' } });
}

const labelList = (labels: unknown) => Object.entries((labels ?? {}) as Record<string, string>).map(([key, value]) => ({ key, value }));

export const WorkerStatusEnum = builder.enumType(WorkerStatus, { name: 'WorkerStatus' });
const JoinTokenStateEnum = builder.enumType('WorkerJoinTokenState', { values: ['ACTIVE', 'USED', 'REVOKED', 'EXPIRED'] as const });
const WorkerEventKindEnum = builder.enumType('WorkerEventKind', { values: ['REGISTERED', 'STATUS_CHANGED', 'RESOURCE_EXHAUSTED', 'REMOVED'] as const });
const WorkerResourceEnum = builder.enumType('WorkerResource', { values: RESOURCES });

builder.objectType(InvalidJoinTokenError, { name: 'InvalidJoinTokenError', interfaces: [ErrorInterface], fields: () => ({}) });

const WorkerLabel = builder.simpleObject('WorkerLabel', { fields: (t) => ({ key: t.string(), value: t.string() }) });
const WorkerLabelInput = builder.inputType('WorkerLabelInput', {
  description: 'Keys: lowercase letters, digits, ".", "_", "-" (at most 63); values likewise, any case, may be empty',
  fields: (t) => ({ key: t.string({ required: true }), value: t.string({ required: true }) }),
});

const MetricsSnapshotRef = builder.objectRef<MetricsSnapshot>('WorkerMetricsSnapshot').implement({
  description: "The node's metrics from its last heartbeat",
  fields: (t) => ({
    at: t.field({ type: 'DateTime', resolve: (m) => m.at }),
    cpuPercent: t.exposeFloat('cpuPercent'),
    memoryUsedMb: t.exposeInt('memoryUsedMb'),
    memoryTotalMb: t.exposeInt('memoryTotalMb'),
    diskUsedGb: t.exposeFloat('diskUsedGb'),
    diskTotalGb: t.exposeFloat('diskTotalGb'),
    load1: t.exposeFloat('load1'),
    containerCount: t.exposeInt('containerCount', { description: 'Convoy task containers on the node' }),
  }),
});

export const WorkerRef = builder.prismaObject('Worker', {
  fields: (t) => ({
    id: t.exposeID('id'),
    hostname: t.exposeString('hostname'),
    swarmNodeId: t.exposeString('swarmNodeId', { nullable: true }),
    status: t.expose('status', { type: WorkerStatusEnum }),
    labels: t.field({ type: [WorkerLabel], resolve: (w) => labelList(w.labels) }),
    cpuCores: t.exposeFloat('cpuCores', { nullable: true }),
    memoryMb: t.exposeInt('memoryMb', { nullable: true }),
    diskGb: t.exposeFloat('diskGb', { nullable: true }),
    agentVersion: t.exposeString('agentVersion', { nullable: true }),
    lastHeartbeatAt: t.expose('lastHeartbeatAt', { type: 'DateTime', nullable: true }),
    lastMetrics: t.field({ type: MetricsSnapshotRef, nullable: true, resolve: (w) => snapshotOf(w.lastMetrics) }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    removedAt: t.expose('removedAt', { type: 'DateTime', nullable: true }),
    buildOrganizationIds: t.exposeIDList('buildOrganizationIds', { description: 'The only organizations whose build jobs this worker takes; empty: every organization\'s (set by setWorkerOrganizations)' }),
  }),
});

builder.prismaObject('WorkerJoinToken', {
  fields: (t) => ({
    id: t.exposeID('id'),
    state: t.field({
      type: JoinTokenStateEnum,
      resolve: (j) => (j.usedAt ? 'USED' : j.revokedAt ? 'REVOKED' : j.expiresAt <= new Date() ? 'EXPIRED' : 'ACTIVE'),
    }),
    labels: t.field({ type: [WorkerLabel], description: 'Given to the worker that registers with the token', resolve: (j) => labelList(j.labels) }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime' }),
    usedAt: t.expose('usedAt', { type: 'DateTime', nullable: true }),
    revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    worker: t.relation('worker', { nullable: true, description: 'The worker that registered with it' }),
  }),
});

builder.prismaObjectField('User', 'platformAdmin', (t) => t.exposeBoolean('platformAdmin', { description: 'Operates the installation: workers and join tokens' }));

// ---------------------------------------------------------------- queries

builder.queryField('workers', (t) =>
  t.prismaConnection({
    type: 'Worker',
    cursor: 'id',
    description: 'Workers that are not removed, by host name (platform admins)',
    authScopes: { platformAdmin: true },
    maxSize: 100,
    defaultSize: 20,
    args: { status: t.arg({ type: WorkerStatusEnum }) },
    resolve: (query, _root, args, ctx) => ctx.app.db.worker.findMany({ ...query, where: workers.workerListWhere(args.status), orderBy: [{ hostname: 'asc' }, { id: 'asc' }] }),
  }),
);

builder.queryField('worker', (t) =>
  t.prismaField({
    type: 'Worker',
    nullable: true,
    description: 'A worker, also one that was removed (platform admins)',
    authScopes: { platformAdmin: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, args, ctx) => ctx.app.db.worker.findUnique({ ...query, where: { id: String(args.id) } }),
  }),
);

builder.queryField('currentWorker', (t) =>
  t.prismaField({
    type: 'Worker',
    description: 'The worker whose credential makes the request (worker agents)',
    authScopes: { worker: true },
    resolve: (query, _root, _args, ctx) => ctx.app.db.worker.findUniqueOrThrow({ ...query, where: { id: workerIdOf(ctx) } }),
  }),
);

builder.queryField('workerJoinTokens', (t) =>
  t.prismaConnection({
    type: 'WorkerJoinToken',
    cursor: 'id',
    description: 'Join tokens, newest first; active: true for the ones that can still register a worker (platform admins)',
    authScopes: { platformAdmin: true },
    maxSize: 100,
    defaultSize: 20,
    args: { active: t.arg.boolean() },
    resolve: (query, _root, args, ctx) => ctx.app.db.workerJoinToken.findMany({ ...query, where: workers.joinTokenListWhere(args.active), orderBy: [{ createdAt: 'desc' }, { id: 'desc' }] }),
  }),
);

const WorkerMetricsPointRef = builder.objectRef<WorkerMetricsPoint>('WorkerMetricsPoint').implement({
  description: "One minute of a worker's metrics: averages of its heartbeats in that minute",
  fields: (t) => ({
    at: t.field({ type: 'DateTime', description: 'Start of the minute', resolve: (p) => p.at }),
    samples: t.exposeInt('samples', { description: 'Heartbeats in the minute' }),
    cpuPercent: t.exposeFloat('cpuPercent'),
    memoryUsedMb: t.exposeFloat('memoryUsedMb'),
    memoryTotalMb: t.exposeFloat('memoryTotalMb'),
    diskUsedGb: t.exposeFloat('diskUsedGb'),
    diskTotalGb: t.exposeFloat('diskTotalGb'),
    load1: t.exposeFloat('load1'),
    containerCount: t.exposeInt('containerCount'),
  }),
});

const ServiceMetricsPointRef = builder.objectRef<ServiceMetricsPoint>('ServiceMetricsPoint').implement({
  description: "One minute of a service's metrics: each container averaged over the minute, summed over containers",
  fields: (t) => ({
    at: t.field({ type: 'DateTime', description: 'Start of the minute', resolve: (p) => p.at }),
    containerCount: t.exposeInt('containerCount'),
    cpuPercent: t.exposeFloat('cpuPercent', { description: '100 is one full core' }),
    memoryUsedMb: t.exposeFloat('memoryUsedMb'),
    networkRxBytes: t.exposeFloat('networkRxBytes', { description: 'Received since the containers started' }),
    networkTxBytes: t.exposeFloat('networkTxBytes', { description: 'Sent since the containers started' }),
  }),
});

builder.queryField('workerMetricsRange', (t) =>
  t.field({
    type: [WorkerMetricsPointRef],
    description: 'A worker\'s 1-minute metrics between from and to (at most 24 hours), minutes without heartbeats left out (platform admins)',
    authScopes: { platformAdmin: true },
    args: { workerId: t.arg.id({ required: true }), from: t.arg({ type: 'DateTime', required: true }), to: t.arg({ type: 'DateTime', required: true }) },
    resolve: (_root, args, ctx) => workers.workerMetricsRange(ctx.app, String(args.workerId), args.from, args.to),
  }),
);

builder.queryField('serviceMetricsRange', (t) =>
  t.field({
    type: [ServiceMetricsPointRef],
    description: "A service's 1-minute metrics between from and to (at most 24 hours), minutes without containers left out",
    authScopes: { member: true },
    args: { serviceId: t.arg.id({ required: true }), from: t.arg({ type: 'DateTime', required: true }), to: t.arg({ type: 'DateTime', required: true }) },
    resolve: (_root, args, ctx) => workers.serviceMetricsRange(ctx.app, actorOf(ctx), String(args.serviceId), args.from, args.to),
  }),
);

// ---------------------------------------------------------------- join tokens

const CreateWorkerJoinTokenPayload = builder
  .objectRef<{ joinToken: { id: string }; token: string; expiresAt: Date; installCommand: string | null }>('CreateWorkerJoinTokenPayload')
  .implement({
    fields: (t) => ({
      joinToken: t.prismaField({ type: 'WorkerJoinToken', resolve: (query, p, _a, ctx) => ctx.app.db.workerJoinToken.findUniqueOrThrow({ ...query, where: { id: p.joinToken.id } }) }),
      token: t.exposeString('token', { description: 'Shown once; only a hash is stored' }),
      expiresAt: t.field({ type: 'DateTime', resolve: (p) => p.expiresAt }),
      installCommand: t.exposeString('installCommand', {
        nullable: true,
        description: 'Run on the new node as root; it reaches the API at CONVOY_PUBLIC_URL (outside production, this server\'s own address when unset)',
      }),
    }),
  });

builder.mutationField('createWorkerJoinToken', (t) =>
  t.field({
    type: CreateWorkerJoinTokenPayload,
    description: 'A single-use token that lets one node register as a worker (platform admins)',
    authScopes: { platformAdmin: true },
    errors: { types: [ValidationError], directResult: true, union: { name: 'CreateWorkerJoinTokenResult' } },
    args: { ttlSeconds: t.arg.int({ required: true }), labels: t.arg({ type: [WorkerLabelInput] }) },
    resolve: async (_root, args, ctx) => {
      const { joinToken, token } = await workers.createJoinToken(ctx.app, adminOf(ctx), args);
      return { joinToken, token, expiresAt: joinToken.expiresAt, installCommand: installCommand(apiUrlFor(ctx.app.config, localPortOf(ctx)), token) };
    },
  }),
);

builder.mutationField('revokeWorkerJoinToken', (t) =>
  t.prismaField({
    type: 'WorkerJoinToken',
    authScopes: { platformAdmin: true },
    errors: { types: [NotFoundError], directResult: true, union: { name: 'RevokeWorkerJoinTokenResult' } },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const joinToken = await workers.revokeJoinToken(ctx.app, adminOf(ctx), String(args.id));
      return ctx.app.db.workerJoinToken.findUniqueOrThrow({ ...query, where: { id: joinToken.id } });
    },
  }),
);

// ---------------------------------------------------------------- the agent

const SwarmJoinDataRef = builder.simpleObject('SwarmJoinData', {
  description: "What `docker swarm join` needs: the swarm's worker join token and a manager's address",
  fields: (t) => ({ joinToken: t.string(), managerAddress: t.string() }),
});

const RegisterWorkerPayload = builder.objectRef<workers.Registration>('RegisterWorkerPayload').implement({
  fields: (t) => ({
    worker: t.field({ type: WorkerRef, resolve: (p) => p.worker }),
    credential: t.exposeString('credential', { description: "The worker's bearer token; shown once, only a hash is stored" }),
    swarm: t.field({ type: SwarmJoinDataRef, nullable: true, description: 'Null when the control plane runs no swarm manager', resolve: (p) => p.swarm }),
  }),
});

const RegisterWorkerInput = builder.inputType('RegisterWorkerInput', {
  fields: (t) => ({
    joinToken: t.string({ required: true }),
    hostname: t.string({ required: true }),
    swarmNodeId: t.string({ description: 'The node id once it joined the swarm' }),
    cpuCores: t.float({ required: true }),
    memoryMb: t.int({ required: true }),
    diskGb: t.float({ required: true }),
    labels: t.field({ type: [WorkerLabelInput] }),
    agentVersion: t.string({ required: true }),
  }),
});

builder.mutationField('registerWorker', (t) =>
  t.field({
    type: RegisterWorkerPayload,
    description: 'Spends a join token to register this node; no other authentication',
    errors: { types: [InvalidJoinTokenError, ValidationError, ConflictError, RateLimitedError], directResult: true, union: { name: 'RegisterWorkerResult' } },
    args: { input: t.arg({ type: RegisterWorkerInput, required: true }) },
    resolve: (_root, { input }, ctx) => limitJoinTokenUse(ctx.app, operationAddress(ctx), () => workers.registerWorker(ctx.app, input, ctx.requestId)),
  }),
);

const ContainerStatsInput = builder.inputType('ContainerStatsInput', {
  fields: (t) => ({
    containerId: t.string({ required: true }),
    serviceId: t.string({ description: 'From the container label convoy.service-id' }),
    taskId: t.string(),
    cpuPercent: t.float({ required: true, description: '100 is one full core' }),
    memoryUsedMb: t.float({ required: true }),
    networkRxBytes: t.float({ required: true }),
    networkTxBytes: t.float({ required: true }),
  }),
});

const WorkerHeartbeatInput = builder.inputType('WorkerHeartbeatInput', {
  fields: (t) => ({
    cpuPercent: t.float({ required: true }),
    memoryUsedMb: t.int({ required: true }),
    memoryTotalMb: t.int({ required: true }),
    diskUsedGb: t.float({ required: true }),
    diskTotalGb: t.float({ required: true }),
    load1: t.float({ required: true }),
    containers: t.field({ type: [ContainerStatsInput], required: true }),
    agentSession: t.string({ description: 'Random per agent process: the jobs it claimed are its own while it heartbeats with it' }),
  }),
});

const WorkerHeartbeatPayload = builder.simpleObject('WorkerHeartbeatPayload', {
  fields: (t) => ({
    worker: t.field({ type: WorkerRef }),
    nextHeartbeatInSeconds: t.int(),
  }),
});

builder.mutationField('workerHeartbeat', (t) =>
  t.field({
    type: WorkerHeartbeatPayload,
    description: "Reports the calling worker's metrics; an UNHEALTHY or OFFLINE worker becomes ONLINE again",
    authScopes: { worker: true },
    args: { input: t.arg({ type: WorkerHeartbeatInput, required: true }) },
    resolve: (_root, { input }, ctx) => recordHeartbeat(ctx.app, workerIdOf(ctx), input),
  }),
);

builder.mutationField('reportSwarmNode', (t) =>
  t.prismaField({
    type: 'Worker',
    description: "Records the Swarm node this worker's engine is (an agent that joined the swarm after registering); the node must be in this swarm and no other worker's",
    authScopes: { worker: true },
    errors: { types: [ValidationError, ConflictError], directResult: true, union: { name: 'ReportSwarmNodeResult' } },
    args: { swarmNodeId: t.arg.string({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const worker = await workers.recordSwarmNode(ctx.app, workerIdOf(ctx), { swarmNodeId: args.swarmNodeId }, ctx.requestId);
      return ctx.app.db.worker.findUniqueOrThrow({ ...query, where: { id: worker.id } });
    },
  }),
);

// ---------------------------------------------------------------- administration

builder.mutationField('drainWorker', (t) =>
  t.prismaField({
    type: 'Worker',
    description: 'Swarm moves every task off the node and schedules nothing new there (platform admins)',
    authScopes: { platformAdmin: true },
    errors: { types: [NotFoundError], directResult: true, union: { name: 'DrainWorkerResult' } },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const worker = await workers.drainWorker(ctx.app, adminOf(ctx), String(args.id));
      return ctx.app.db.worker.findUniqueOrThrow({ ...query, where: { id: worker.id } });
    },
  }),
);

builder.mutationField('setWorkerOrganizations', (t) =>
  t.prismaField({
    type: 'Worker',
    description: 'Restricts the build jobs the worker takes to these organizations\' (empty list: every organization\'s) (platform admins)',
    authScopes: { platformAdmin: true },
    errors: { types: [NotFoundError, ValidationError], directResult: true, union: { name: 'SetWorkerOrganizationsResult' } },
    args: { workerId: t.arg.id({ required: true }), organizationIds: t.arg.idList({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const worker = await workers.setWorkerOrganizations(ctx.app, adminOf(ctx), String(args.workerId), args.organizationIds.map(String));
      return ctx.app.db.worker.findUniqueOrThrow({ ...query, where: { id: worker.id } });
    },
  }),
);

builder.mutationField('removeWorker', (t) =>
  t.prismaField({
    type: 'Worker',
    description: 'Revokes the worker\'s credentials and removes its Swarm node; refused while it runs Convoy containers unless force (platform admins)',
    authScopes: { platformAdmin: true },
    errors: { types: [NotFoundError, ConflictError], directResult: true, union: { name: 'RemoveWorkerResult' } },
    args: { id: t.arg.id({ required: true }), force: t.arg.boolean({ defaultValue: false }) },
    resolve: async (query, _root, args, ctx) => {
      const worker = await workers.removeWorker(ctx.app, adminOf(ctx), String(args.id), args.force ?? false);
      // Its credentials were revoked: drop them from every API process's credential cache.
      await forgetWorkerCredentials(ctx.app, worker.id);
      return ctx.app.db.worker.findUniqueOrThrow({ ...query, where: { id: worker.id } });
    },
  }),
);

// ---------------------------------------------------------------- subscriptions

const WorkerHeartbeatRef = builder.objectRef<WorkerHeartbeatEvent>('WorkerHeartbeat').implement({
  fields: (t) => ({
    workerId: t.exposeID('workerId'),
    hostname: t.exposeString('hostname'),
    status: t.field({ type: WorkerStatusEnum, resolve: (e) => e.status as WorkerStatus }),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
    cpuPercent: t.exposeFloat('cpuPercent'),
    memoryUsedMb: t.exposeInt('memoryUsedMb'),
    memoryTotalMb: t.exposeInt('memoryTotalMb'),
    diskUsedGb: t.exposeFloat('diskUsedGb'),
    diskTotalGb: t.exposeFloat('diskTotalGb'),
    load1: t.exposeFloat('load1'),
    containerCount: t.exposeInt('containerCount'),
  }),
});

const ContainerStatsRef = builder.objectRef<ContainerStatsSample>('ContainerStats').implement({
  fields: (t) => ({
    containerId: t.exposeString('containerId'),
    taskId: t.exposeString('taskId', { nullable: true }),
    cpuPercent: t.exposeFloat('cpuPercent', { description: '100 is one full core' }),
    memoryUsedMb: t.exposeFloat('memoryUsedMb'),
    networkRxBytes: t.exposeFloat('networkRxBytes'),
    networkTxBytes: t.exposeFloat('networkTxBytes'),
  }),
});

const ServiceMetricsSampleRef = builder.objectRef<ServiceMetricsEvent>('ServiceMetricsSample').implement({
  description: "One heartbeat's stats of the service's containers on one node",
  fields: (t) => ({
    serviceId: t.exposeID('serviceId'),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
    containers: t.field({ type: [ContainerStatsRef], resolve: (e) => e.containers }),
  }),
});

const WorkerEventRef = builder.objectRef<WorkerEvent>('WorkerEvent').implement({
  fields: (t) => ({
    kind: t.field({ type: WorkerEventKindEnum, resolve: (e) => e.kind }),
    workerId: t.exposeID('workerId'),
    hostname: t.exposeString('hostname'),
    status: t.field({ type: WorkerStatusEnum, resolve: (e) => e.status as WorkerStatus }),
    previousStatus: t.field({ type: WorkerStatusEnum, nullable: true, resolve: (e) => e.previousStatus as WorkerStatus | null }),
    resources: t.field({ type: [WorkerResourceEnum], resolve: (e) => e.resources as Resource[] }),
    reason: t.exposeString('reason', { nullable: true }),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
  }),
});

/**
 * One event per heartbeat out of the batches on the bus, optionally of one worker only. A plain
 * iterator rather than an async generator, so an unsubscribe ends it at once, not at the next batch.
 */
function heartbeatsOf(batches: AsyncIterableIterator<{ heartbeats: WorkerHeartbeatEvent[] }>, workerId?: string): AsyncIterableIterator<WorkerHeartbeatEvent> {
  let pending: WorkerHeartbeatEvent[] = [];
  const heartbeats: AsyncIterableIterator<WorkerHeartbeatEvent> = {
    async next() {
      for (;;) {
        const heartbeat = pending.shift();
        if (heartbeat) return { value: heartbeat, done: false };
        const batch = await batches.next();
        if (batch.done) return { value: undefined, done: true };
        pending = batch.value.heartbeats.filter((h) => !workerId || h.workerId === workerId);
      }
    },
    return: async () => {
      await batches.return?.();
      return { value: undefined, done: true };
    },
    throw: async (error?: unknown) => {
      await batches.return?.();
      throw error;
    },
    [Symbol.asyncIterator]: () => heartbeats,
  };
  return heartbeats;
}

async function assertWorkerExists(ctx: GraphQLContext, id: string) {
  const exists = id.length <= 64 && (await ctx.app.db.worker.count({ where: { id } })) > 0;
  if (!exists) throw notFound('Worker', id);
}

builder.subscriptionField('workerHeartbeats', (t) =>
  t.field({
    type: WorkerHeartbeatRef,
    description: "Every worker's heartbeats as they arrive (platform admins)",
    authScopes: { platformAdmin: true },
    subscribe: async (_root, _args, ctx) => heartbeatsOf(await ctx.app.bus.subscribe('workerHeartbeats', 'all')),
    resolve: (event) => event,
  }),
);

builder.subscriptionField('workerMetrics', (t) =>
  t.field({
    type: WorkerHeartbeatRef,
    description: "One worker's heartbeats as they arrive (platform admins)",
    authScopes: { platformAdmin: true },
    args: { workerId: t.arg.id({ required: true }) },
    subscribe: async (_root, args, ctx) => {
      const workerId = String(args.workerId);
      await assertWorkerExists(ctx, workerId);
      // Heartbeats are published in batches on the topic of all workers; admins watching one worker are few.
      return heartbeatsOf(await ctx.app.bus.subscribe('workerHeartbeats', 'all'), workerId);
    },
    resolve: (event) => event,
  }),
);

builder.subscriptionField('workerEvents', (t) =>
  t.field({
    type: WorkerEventRef,
    description: 'Registrations, status changes, resource alerts and removals; of every worker when workerId is left out (platform admins)',
    authScopes: { platformAdmin: true },
    args: { workerId: t.arg.id() },
    subscribe: async (_root, args, ctx) => {
      if (!args.workerId) return ctx.app.bus.subscribe('workers', 'all');
      await assertWorkerExists(ctx, String(args.workerId));
      return ctx.app.bus.subscribe('worker', String(args.workerId));
    },
    resolve: (event) => event,
  }),
);

builder.subscriptionField('serviceMetrics', (t) =>
  t.field({
    type: ServiceMetricsSampleRef,
    description: "The service's container stats from every heartbeat of the nodes that run it",
    authScopes: { member: true },
    args: { serviceId: t.arg.id({ required: true }) },
    subscribe: async (_root, args, ctx) => {
      const id = String(args.serviceId);
      const exists = id.length <= 64 && (await ctx.app.db.service.count({ where: { id, organizationId: actorOf(ctx).organizationId, deletedAt: null } })) > 0;
      if (!exists) throw notFound('Service', id);
      return ctx.app.bus.subscribe('serviceMetrics', id);
    },
    resolve: (event) => event,
  }),
);

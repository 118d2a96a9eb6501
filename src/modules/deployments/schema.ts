import { builder } from '../../graphql/builder.js';
import { DeploymentKind, DeploymentStatus } from '../../generated/prisma/enums.js';
import { ConflictError, ForbiddenError, NotFoundError, QuotaExceededError, ValidationError } from '../common/errors.js';
import { actorOf } from '../common/graphql.js';
import type { DeploymentEvent } from '../../events.js';
import * as deployments from './service.js';
import * as registryCredentials from './registry-credentials.js';
import { followDeploymentStatus } from './status-events.js';

const DeploymentStatusEnum = builder.enumType(DeploymentStatus, { name: 'DeploymentStatus' });
const DeploymentKindEnum = builder.enumType(DeploymentKind, { name: 'DeploymentKind' });

builder.prismaObject('DeploymentEvent', {
  fields: (t) => ({
    id: t.exposeID('id'),
    status: t.expose('status', { type: DeploymentStatusEnum }),
    message: t.exposeString('message'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

builder.prismaObject('Deployment', {
  fields: (t) => ({
    id: t.exposeID('id'),
    kind: t.expose('kind', { type: DeploymentKindEnum }),
    status: t.expose('status', { type: DeploymentStatusEnum }),
    image: t.exposeString('image'),
    replicas: t.exposeInt('replicas'),
    reason: t.exposeString('reason', { nullable: true, description: 'Why it was made, or why it failed' }),
    queuedAt: t.expose('queuedAt', { type: 'DateTime' }),
    startedAt: t.expose('startedAt', { type: 'DateTime', nullable: true }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true }),
    durationMs: t.int({
      nullable: true,
      select: { startedAt: true, finishedAt: true },
      resolve: (d) => (d.startedAt && d.finishedAt ? d.finishedAt.getTime() - d.startedAt.getTime() : null),
    }),
    service: t.relation('service'),
    previous: t.relation('previous', { nullable: true, description: 'The deployment this one replaced' }),
    triggeredBy: t.relation('triggeredBy', { nullable: true }),
    events: t.relation('events', { query: { orderBy: { createdAt: 'asc' } } }),
  }),
});

builder.prismaObjectField('Service', 'currentDeployment', (t) =>
  t.relation('currentDeployment', { nullable: true, description: 'The last deployment that became healthy' }),
);
builder.prismaObjectField('Service', 'deployments', (t) =>
  t.relatedConnection('deployments', { cursor: 'id', query: { orderBy: { createdAt: 'desc' } } }),
);

builder.queryField('deployment', (t) =>
  t.prismaField({
    type: 'Deployment',
    nullable: true,
    authScopes: { member: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, args, ctx) =>
      ctx.app.db.deployment.findFirst({ ...query, where: { id: String(args.id), service: { organizationId: actorOf(ctx).organizationId } } }),
  }),
);

builder.queryField('deployments', (t) =>
  t.prismaConnection({
    type: 'Deployment',
    cursor: 'id',
    authScopes: { member: true },
    maxSize: 100,
    args: { serviceId: t.arg.id({ required: true }) },
    resolve: (query, _root, args, ctx) =>
      ctx.app.db.deployment.findMany({ ...query, where: { serviceId: String(args.serviceId), service: { organizationId: actorOf(ctx).organizationId } }, orderBy: { createdAt: 'desc' } }),
  }),
);

const lifecycleErrors = [ValidationError, NotFoundError, ConflictError, QuotaExceededError];

/** Every lifecycle mutation answers at once with the queued deployment. */
function lifecycleMutation(
  name: string,
  description: string,
  run: (ctx: Parameters<typeof actorOf>[0], serviceId: string, args: { image?: string | null; replicas?: number | null; toDeploymentId?: string | number | null }) => Promise<{ id: string }>,
  extraArgs: 'image' | 'replicas' | 'toDeploymentId' | null,
) {
  builder.mutationField(name, (t) =>
    t.prismaField({
      type: 'Deployment',
      description,
      authScopes: { member: true },
      errors: { types: lifecycleErrors, directResult: true, union: { name: `${name[0].toUpperCase()}${name.slice(1)}Result` } },
      args: {
        serviceId: t.arg.id({ required: true }),
        ...(extraArgs === 'image' ? { image: t.arg.string({ description: 'Defaults to the service image' }) } : {}),
        ...(extraArgs === 'replicas' ? { replicas: t.arg.int({ required: true }) } : {}),
        ...(extraArgs === 'toDeploymentId' ? { toDeploymentId: t.arg.id({ description: 'Defaults to the healthy deployment before the current one' }) } : {}),
      },
      resolve: async (query, _root, args, ctx) => {
        const deployment = await run(ctx, String(args.serviceId), args as never);
        return ctx.app.db.deployment.findUniqueOrThrow({ ...query, where: { id: deployment.id } });
      },
    }),
  );
}

lifecycleMutation('deployService', 'Rolls out an image; RUNNING once Swarm runs the desired number of healthy tasks of it', (ctx, id, a) => deployments.deployService(ctx.app, actorOf(ctx), id, a.image), 'image');
lifecycleMutation('redeployService', "Applies the service's current configuration (env, ports, health check, resources, replicas) with the running image, in new tasks", (ctx, id) => deployments.redeployService(ctx.app, actorOf(ctx), id), null);
lifecycleMutation('restartService', 'New tasks with the same image and configuration; no rebuild', (ctx, id) => deployments.restartService(ctx.app, actorOf(ctx), id), null);
lifecycleMutation('scaleService', 'Changes the number of replicas of the running deployment and nothing else: running tasks stay, new ones are added or some removed', (ctx, id, a) => deployments.scaleService(ctx.app, actorOf(ctx), id, a.replicas!), 'replicas');
lifecycleMutation('stopService', 'Scales the running deployment to zero, keeping configuration and history', (ctx, id) => deployments.stopService(ctx.app, actorOf(ctx), id), null);
lifecycleMutation('startService', 'Starts a stopped service with its last healthy deployment', (ctx, id) => deployments.startService(ctx.app, actorOf(ctx), id), null);
lifecycleMutation('rollbackService', "Runs an earlier deployment that became healthy again (its image and configuration, in new tasks). The service's configuration is not changed: Service.pendingChanges then names what the next deploy would change back", (ctx, id, a) => deployments.rollbackService(ctx.app, actorOf(ctx), id, a.toDeploymentId ? String(a.toDeploymentId) : null), 'toDeploymentId');

const DeploymentEventRef = builder.objectRef<DeploymentEvent>('DeploymentStatusEvent').implement({
  fields: (t) => ({
    deploymentId: t.exposeID('deploymentId'),
    serviceId: t.exposeID('serviceId'),
    status: t.field({ type: DeploymentStatusEnum, resolve: (e) => e.status as DeploymentStatus }),
    message: t.exposeString('message'),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
    eventId: t.id({
      nullable: true,
      description: 'The stored event this reports (for the current state: the latest one it includes); pass the last one received as deploymentEvents(afterEventId) to resume. Null only when nothing was stored',
      resolve: (e) => e.eventId ?? null,
    }),
  }),
});

builder.subscriptionField('deploymentEvents', (t) =>
  t.field({
    type: DeploymentEventRef,
    description:
      "The deployment's current status first, then each change with its reason; completes once the rollout has ended (RUNNING or a final status). " +
      'To resume after a disconnect, pass afterEventId: instead of the current state, the stored events after that one are sent (none if nothing happened), then each change',
    authScopes: { member: true },
    args: {
      deploymentId: t.arg.id({ required: true }),
      afterEventId: t.arg.id({ description: "The eventId of the last event the client has; one that is not this deployment's is NOT_FOUND" }),
    },
    subscribe: (_root, args, ctx) => followDeploymentStatus(ctx.app, actorOf(ctx), String(args.deploymentId), { afterEventId: args.afterEventId == null ? null : String(args.afterEventId) }),
    resolve: (event) => event,
  }),
);

// ---------------------------------------------------------------- registry credentials

builder.prismaObject('RegistryCredential', {
  description: 'A login Swarm uses to pull this organization\'s images from a private registry; the password is never returned',
  fields: (t) => ({
    id: t.exposeID('id'),
    registry: t.exposeString('registry', { description: 'host[:port]; docker.io for Docker Hub' }),
    username: t.exposeString('username'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
  }),
});

builder.queryField('registryCredentials', (t) =>
  t.prismaField({
    type: ['RegistryCredential'],
    authScopes: { member: true },
    resolve: (query, _root, _args, ctx) =>
      ctx.app.db.registryCredential.findMany({ ...query, where: { organizationId: actorOf(ctx).organizationId }, orderBy: { registry: 'asc' } }),
  }),
);

const SetRegistryCredentialInput = builder.inputType('SetRegistryCredentialInput', {
  fields: (t) => ({
    registry: t.string({ required: true, description: 'host[:port] as in image references, e.g. ghcr.io; docker.io for Docker Hub' }),
    username: t.string({ required: true }),
    password: t.string({ required: true, description: 'Password or access token; stored encrypted, never returned' }),
  }),
});

builder.mutationField('setRegistryCredential', (t) =>
  t.prismaField({
    type: 'RegistryCredential',
    description: 'Creates or replaces the organization\'s login for a registry (owners and admins)',
    authScopes: { member: true },
    errors: { types: [ValidationError, ForbiddenError], directResult: true, union: { name: 'SetRegistryCredentialResult' } },
    args: { input: t.arg({ type: SetRegistryCredentialInput, required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const saved = await registryCredentials.setRegistryCredential(ctx.app, actorOf(ctx), args.input);
      return ctx.app.db.registryCredential.findUniqueOrThrow({ ...query, where: { id: saved.id } });
    },
  }),
);

builder.mutationField('deleteRegistryCredential', (t) =>
  t.prismaField({
    type: 'RegistryCredential',
    description: 'Removes the organization\'s login for a registry (owners and admins); running services keep pulling with what Swarm has until their next deploy',
    authScopes: { member: true },
    errors: { types: [ValidationError, NotFoundError, ForbiddenError], directResult: true, union: { name: 'DeleteRegistryCredentialResult' } },
    args: { registry: t.arg.string({ required: true }) },
    resolve: (_query, _root, args, ctx) => registryCredentials.deleteRegistryCredential(ctx.app, actorOf(ctx), args.registry),
  }),
);

import { builder } from '../../graphql/builder.js';
import { BuildStatus } from '../../generated/prisma/enums.js';
import { ConflictError, NotFoundError, ValidationError } from '../common/errors.js';
import { actorOf } from '../common/graphql.js';
import type { BuildEvent } from '../../events.js';
import * as builds from './service.js';
import { followBuildLogs, followBuildStatus } from './logs.js';

const BuildStatusEnum = builder.enumType(BuildStatus, { name: 'BuildStatus' });

builder.prismaObject('Build', {
  fields: (t) => ({
    id: t.exposeID('id'),
    status: t.expose('status', { type: BuildStatusEnum }),
    gitRef: t.exposeString('gitRef', { nullable: true, description: 'The branch or commit asked for' }),
    commitSha: t.exposeString('commitSha', { nullable: true, description: 'The commit that was built' }),
    derivation: t.exposeString('derivation', { nullable: true }),
    storePath: t.exposeString('storePath', { nullable: true }),
    imageRef: t.exposeString('imageRef', { nullable: true }),
    imageId: t.exposeString('imageId', { nullable: true }),
    imageSizeBytes: t.expose('imageSizeBytes', { type: 'BigInt', nullable: true }),
    closureSizeBytes: t.expose('closureSizeBytes', { type: 'BigInt', nullable: true }),
    cacheHit: t.exposeBoolean('cacheHit', { description: 'The output was already in the Nix store: nothing was rebuilt' }),
    error: t.exposeString('error', { nullable: true }),
    logs: t.exposeString('logs', { description: 'The stored build log (follow it live with buildLogs)' }),
    durationMs: t.exposeInt('durationMs', { nullable: true }),
    queuedAt: t.expose('queuedAt', { type: 'DateTime' }),
    startedAt: t.expose('startedAt', { type: 'DateTime', nullable: true }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true }),
    service: t.relation('service'),
    triggeredBy: t.relation('triggeredBy', { nullable: true }),
    deployments: t.relation('deployments'),
  }),
});

builder.prismaObjectField('Deployment', 'build', (t) => t.relation('build', { nullable: true, description: 'The build whose image this deployment rolled out' }));
builder.prismaObjectField('Service', 'builds', (t) => t.relatedConnection('builds', { cursor: 'id', query: { orderBy: { createdAt: 'desc' } } }));

builder.queryField('build', (t) =>
  t.prismaField({
    type: 'Build',
    nullable: true,
    authScopes: { member: true },
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, args, ctx) => ctx.app.db.build.findFirst({ ...query, where: { id: String(args.id), service: { organizationId: actorOf(ctx).organizationId } } }),
  }),
);

builder.queryField('builds', (t) =>
  t.prismaConnection({
    type: 'Build',
    cursor: 'id',
    authScopes: { member: true },
    maxSize: 100,
    args: { serviceId: t.arg.id({ required: true }) },
    resolve: (query, _root, args, ctx) =>
      ctx.app.db.build.findMany({ ...query, where: { serviceId: String(args.serviceId), service: { organizationId: actorOf(ctx).organizationId } }, orderBy: { createdAt: 'desc' } }),
  }),
);

const buildErrors = [ValidationError, NotFoundError, ConflictError];

builder.mutationField('buildService', (t) =>
  t.prismaField({
    type: 'Build',
    description: "Queues a Nix build of the service's source; a successful build is deployed",
    authScopes: { member: true },
    errors: { types: buildErrors, directResult: true, union: { name: 'BuildServiceResult' } },
    args: { serviceId: t.arg.id({ required: true }), ref: t.arg.string({ description: 'Branch or full commit SHA (Git sources); defaults to the service branch' }) },
    resolve: async (query, _root, args, ctx) => {
      const build = await builds.buildService(ctx.app, actorOf(ctx), String(args.serviceId), args.ref);
      return ctx.app.db.build.findUniqueOrThrow({ ...query, where: { id: build.id } });
    },
  }),
);

builder.mutationField('rebuildService', (t) =>
  t.prismaField({
    type: 'Build',
    description: 'Builds the same source as the last build again, then deploys it',
    authScopes: { member: true },
    errors: { types: buildErrors, directResult: true, union: { name: 'RebuildServiceResult' } },
    args: { serviceId: t.arg.id({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const build = await builds.rebuildService(ctx.app, actorOf(ctx), String(args.serviceId));
      return ctx.app.db.build.findUniqueOrThrow({ ...query, where: { id: build.id } });
    },
  }),
);

builder.mutationField('cancelBuild', (t) =>
  t.prismaField({
    type: 'Build',
    description: 'Stops a queued or running build; the running deployment is not touched',
    authScopes: { member: true },
    errors: { types: [NotFoundError, ConflictError], directResult: true, union: { name: 'CancelBuildResult' } },
    args: { buildId: t.arg.id({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const build = await builds.cancelBuild(ctx.app, actorOf(ctx), String(args.buildId));
      return ctx.app.db.build.findUniqueOrThrow({ ...query, where: { id: build.id } });
    },
  }),
);

const BuildLogLineRef = builder.simpleObject('BuildLogLine', { fields: (t) => ({ seq: t.int({ description: "The line's number in the build log, from 0: pass the last one received as buildLogs(afterLine) to resume" }), line: t.string() }) });

builder.subscriptionField('buildLogs', (t) =>
  t.field({
    type: BuildLogLineRef,
    description: 'The build log so far, then live lines; completes when the build ends. To resume after a disconnect, pass afterLine: only later lines are sent',
    authScopes: { member: true },
    args: {
      buildId: t.arg.id({ required: true }),
      afterLine: t.arg.int({ description: 'The seq of the last line the client has (lines are numbered from 0); a negative value is refused (BAD_USER_INPUT)' }),
    },
    subscribe: (_root, args, ctx) => followBuildLogs(ctx.app, actorOf(ctx), String(args.buildId), { afterLine: args.afterLine }),
    resolve: (line) => line,
  }),
);

const BuildEventRef = builder.objectRef<BuildEvent>('BuildStatusEvent').implement({
  fields: (t) => ({
    buildId: t.exposeID('buildId'),
    serviceId: t.exposeID('serviceId'),
    status: t.field({ type: BuildStatusEnum, resolve: (e) => e.status as BuildStatus }),
    message: t.exposeString('message'),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
  }),
});

builder.subscriptionField('buildEvents', (t) =>
  t.field({
    type: BuildEventRef,
    description: 'The build\'s current status first, then each change; completes once the build has ended',
    authScopes: { member: true },
    args: { buildId: t.arg.id({ required: true }) },
    subscribe: (_root, args, ctx) => followBuildStatus(ctx.app, actorOf(ctx), String(args.buildId)),
    resolve: (event) => event,
  }),
);

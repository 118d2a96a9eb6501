// GraphQL for failover: what Convoy did about a service when its worker failed (ServiceMigration), and
// `migrateService`, the owners' move for the MANUAL policy. The policy itself is set on the organization.
import { builder } from '../../graphql/builder.js';
import { ServiceMigrationStatus } from '../../generated/prisma/enums.js';
import { ConflictError, ForbiddenError, NotFoundError } from '../common/errors.js';
import { actorOf } from '../common/graphql.js';
import { getService } from '../services/service.js';
import { MigrationPolicyEnum } from '../organizations/schema.js';
import { migrateService, movesOf, type MigrationMove } from './failover.js';

const ServiceMigrationStatusEnum = builder.enumType(ServiceMigrationStatus, {
  name: 'ServiceMigrationStatus',
  description: 'MIGRATING: Convoy is moving the tasks; WAITING_FOR_OWNER: MANUAL policy, run migrateService; LEFT_ALONE: NONE policy',
});

const ServiceMigrationMoveRef = builder.objectRef<MigrationMove>('ServiceMigrationMove').implement({
  description: 'A task that ran on the failed worker, and where its replica runs now (null while not moved)',
  fields: (t) => ({
    taskId: t.exposeString('taskId', { description: 'The Swarm task on the failed worker' }),
    slot: t.exposeInt('slot', { description: 'The replica number' }),
    fromNodeId: t.exposeString('fromNodeId', { nullable: true }),
    toNodeId: t.exposeString('toNodeId', { nullable: true }),
    toWorkerId: t.exposeID('toWorkerId', { nullable: true }),
    toHostname: t.exposeString('toHostname', { nullable: true }),
  }),
});

builder.prismaObject('ServiceMigration', {
  description: "What Convoy did about a service's tasks when the worker they ran on failed",
  fields: (t) => ({
    id: t.exposeID('id'),
    service: t.relation('service'),
    policy: t.expose('policy', { type: MigrationPolicyEnum, description: "The organization's policy when the worker failed" }),
    status: t.expose('status', { type: ServiceMigrationStatusEnum }),
    fromWorkerId: t.exposeID('workerId', { nullable: true }),
    fromHostname: t.string({ nullable: true, select: { worker: { select: { hostname: true } } }, resolve: (m) => m.worker?.hostname ?? null }),
    fromNodeId: t.exposeString('fromNodeId', { nullable: true }),
    moves: t.field({ type: [ServiceMigrationMoveRef], select: { moves: true }, resolve: (m) => movesOf(m) }),
    message: t.exposeString('message'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true }),
  }),
});

builder.prismaObjectField('Service', 'migrations', (t) =>
  t.relatedConnection('migrations', { cursor: 'id', description: 'What Convoy did when the workers of this service failed, newest first', query: { orderBy: { createdAt: 'desc' } } }),
);

builder.queryField('serviceMigrations', (t) =>
  t.prismaConnection({
    type: 'ServiceMigration',
    cursor: 'id',
    description: "A service's migrations, newest first",
    authScopes: { member: true },
    maxSize: 100,
    defaultSize: 20,
    args: { serviceId: t.arg.id({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      // Another organization's service is NOT_FOUND, like a missing one.
      const service = await getService(ctx.app, actorOf(ctx), String(args.serviceId));
      return ctx.app.db.serviceMigration.findMany({ ...query, where: { serviceId: service.id }, orderBy: [{ createdAt: 'desc' }, { id: 'desc' }] });
    },
  }),
);

builder.mutationField('migrateService', (t) =>
  t.prismaField({
    type: 'ServiceMigration',
    description:
      "Moves the service's tasks off failed workers now (owners and admins): the migration waiting for an owner (MANUAL policy), or one for any task on a failed worker. Answers at once with the MIGRATING migration; serviceEvents tells when it ends.",
    authScopes: { member: true },
    errors: { types: [NotFoundError, ForbiddenError, ConflictError], directResult: true, union: { name: 'MigrateServiceResult' } },
    args: { serviceId: t.arg.id({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const migration = await migrateService(ctx.app, actorOf(ctx), String(args.serviceId));
      return ctx.app.db.serviceMigration.findUniqueOrThrow({ ...query, where: { id: migration.id } });
    },
  }),
);

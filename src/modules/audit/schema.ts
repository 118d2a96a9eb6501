import { builder } from '../../graphql/builder.js';
import { Role } from '../../generated/prisma/enums.js';
import { ForbiddenError } from '../common/errors.js';
import { actorOf } from '../common/graphql.js';
import { hasRole } from '../auth/caller.js';

builder.prismaObject('AuditLogEntry', {
  fields: (t) => ({
    id: t.exposeID('id'),
    action: t.exposeString('action'),
    resourceType: t.exposeString('resourceType'),
    resourceId: t.exposeString('resourceId', { nullable: true }),
    actor: t.relation('actor', { nullable: true }),
    actorWorkerId: t.exposeString('actorWorkerId', { nullable: true }),
    metadata: t.expose('metadata', { type: 'JSON' }),
    requestId: t.exposeString('requestId', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

builder.queryField('auditLog', (t) =>
  t.prismaConnection({
    type: 'AuditLogEntry',
    cursor: 'id',
    description: "The organization's audit log, newest first (owners and admins)",
    authScopes: { member: true },
    maxSize: 200,
    args: { resourceId: t.arg.id() },
    resolve: (query, _root, args, ctx) => {
      const actor = actorOf(ctx);
      if (!hasRole(actor, Role.ADMIN)) throw new ForbiddenError('Only owners and admins can read the audit log');
      return ctx.app.db.auditLogEntry.findMany({
        ...query,
        where: { organizationId: actor.organizationId, ...(args.resourceId ? { resourceId: String(args.resourceId) } : {}) },
        orderBy: { createdAt: 'desc' },
      });
    },
  }),
);

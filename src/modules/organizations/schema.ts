import { builder } from '../../graphql/builder.js';
import { MigrationPolicy, Role } from '../../generated/prisma/enums.js';
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../common/errors.js';
import { actorOf, userIdOf } from '../common/graphql.js';
import * as orgs from './service.js';

export const RoleEnum = builder.enumType(Role, { name: 'Role' });
export const MigrationPolicyEnum = builder.enumType(MigrationPolicy, {
  name: 'MigrationPolicy',
  description: "What Convoy does with the organization's services when their worker fails: AUTOMATIC moves them to healthy workers, MANUAL tells the owners and waits for migrateService, NONE leaves them to Swarm",
});

builder.prismaObject('Organization', {
  fields: (t) => ({
    id: t.exposeID('id'),
    slug: t.exposeString('slug'),
    name: t.exposeString('name'),
    personal: t.exposeBoolean('personal'),
    migrationPolicy: t.expose('migrationPolicy', { type: MigrationPolicyEnum }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    members: t.relatedConnection('memberships', { cursor: 'id', query: { orderBy: { createdAt: 'asc' } } }),
  }),
});

builder.prismaObject('Membership', {
  fields: (t) => ({
    id: t.exposeID('id'),
    role: t.expose('role', { type: RoleEnum }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    user: t.relation('user'),
    organization: t.relation('organization'),
  }),
});

builder.queryField('organization', (t) =>
  t.prismaField({
    type: 'Organization',
    description: 'The organization this request acts in (chosen with the X-Convoy-Organization header)',
    authScopes: { member: true },
    resolve: (query, _root, _args, ctx) => ctx.app.db.organization.findUniqueOrThrow({ ...query, where: { id: actorOf(ctx).organizationId } }),
  }),
);

builder.queryField('organizations', (t) =>
  t.prismaField({
    type: ['Organization'],
    description: 'Every organization the caller belongs to',
    authScopes: { authenticated: true },
    resolve: (query, _root, _args, ctx) =>
      ctx.app.db.organization.findMany({ ...query, where: { memberships: { some: { userId: userIdOf(ctx) } } }, orderBy: { createdAt: 'asc' } }),
  }),
);

builder.mutationField('createOrganization', (t) =>
  t.prismaField({
    type: 'Organization',
    authScopes: { authenticated: true },
    errors: { types: [ValidationError], directResult: true, union: { name: 'CreateOrganizationResult' } },
    args: { name: t.arg.string({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const org = await orgs.createOrganization(ctx.app, userIdOf(ctx), { name: args.name }, ctx.requestId);
      return ctx.app.db.organization.findUniqueOrThrow({ ...query, where: { id: org.id } });
    },
  }),
);

const MemberInput = builder.inputType('MemberInput', {
  fields: (t) => ({ email: t.string({ required: true }), role: t.field({ type: RoleEnum, required: true }) }),
});

const memberErrors = [ValidationError, NotFoundError, ForbiddenError, ConflictError];

builder.mutationField('changeMemberRole', (t) =>
  t.prismaField({
    type: 'Membership',
    authScopes: { member: true },
    errors: { types: memberErrors, directResult: true, union: { name: 'ChangeMemberRoleResult' } },
    args: { userId: t.arg.id({ required: true }), role: t.arg({ type: RoleEnum, required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const membership = await orgs.changeMemberRole(ctx.app, actorOf(ctx), String(args.userId), args.role);
      return ctx.app.db.membership.findUniqueOrThrow({ ...query, where: { id: membership.id } });
    },
  }),
);

const RemovedMember = builder.simpleObject('RemovedMember', {
  fields: (t) => ({ userId: t.id(), role: t.field({ type: RoleEnum }) }),
});

builder.mutationField('removeMember', (t) =>
  t.field({
    type: RemovedMember,
    description: 'Removes a member (admins), or lets a member leave (pass your own id)',
    authScopes: { member: true },
    errors: { types: memberErrors, directResult: true, union: { name: 'RemoveMemberResult' } },
    args: { userId: t.arg.id({ required: true }) },
    resolve: async (_root, args, ctx) => {
      const membership = await orgs.removeMember(ctx.app, actorOf(ctx), String(args.userId));
      return { userId: membership.userId, role: membership.role };
    },
  }),
);

const InvitationPayload = builder.objectRef<{ invitation: { id: string; email: string; role: Role; expiresAt: Date }; token: string }>('InvitationPayload').implement({
  fields: (t) => ({
    id: t.id({ resolve: (p) => p.invitation.id }),
    email: t.string({ resolve: (p) => p.invitation.email }),
    role: t.field({ type: RoleEnum, resolve: (p) => p.invitation.role }),
    expiresAt: t.field({ type: 'DateTime', resolve: (p) => p.invitation.expiresAt }),
    token: t.exposeString('token', { description: 'Give this to the invitee; shown once' }),
  }),
});

const INVITE_DESCRIPTION =
  'Invites someone to the current organization by email (admins; only owners grant OWNER). They become a member only by accepting the invitation (acceptInvitation with its token, signed in with that email); the answer is the same whether or not an account with the email exists';

builder.mutationField('inviteMember', (t) =>
  t.field({
    type: InvitationPayload,
    description: INVITE_DESCRIPTION,
    authScopes: { member: true },
    errors: { types: [ValidationError, ForbiddenError], directResult: true, union: { name: 'InviteMemberResult' } },
    args: { input: t.arg({ type: MemberInput, required: true }) },
    resolve: (_root, { input }, ctx) => orgs.inviteMember(ctx.app, actorOf(ctx), input),
  }),
);

builder.mutationField('addMember', (t) =>
  t.field({
    type: InvitationPayload,
    description: INVITE_DESCRIPTION,
    deprecationReason: 'Members join only by invitation: use inviteMember, which this is the same as',
    authScopes: { member: true },
    errors: { types: [ValidationError, ForbiddenError], directResult: true, union: { name: 'AddMemberResult' } },
    args: { input: t.arg({ type: MemberInput, required: true }) },
    resolve: (_root, { input }, ctx) => orgs.inviteMember(ctx.app, actorOf(ctx), input),
  }),
);

builder.prismaObject('Invitation', {
  description: 'An invitation to join an organization; its token was shown once, to whoever invited',
  fields: (t) => ({
    id: t.exposeID('id'),
    email: t.exposeString('email'),
    role: t.expose('role', { type: RoleEnum }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime' }),
    revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
  }),
});

builder.queryField('invitations', (t) =>
  t.prismaField({
    type: ['Invitation'],
    description: "The current organization's pending invitations (owners and admins)",
    authScopes: { member: true },
    resolve: (query, _root, _args, ctx) => ctx.app.db.invitation.findMany({ ...query, where: orgs.pendingInvitationsWhere(actorOf(ctx)), orderBy: { createdAt: 'desc' } }),
  }),
);

builder.mutationField('revokeInvitation', (t) =>
  t.prismaField({
    type: 'Invitation',
    description: 'Withdraws a pending invitation: its token stops working (owners and admins)',
    authScopes: { member: true },
    errors: { types: [NotFoundError, ForbiddenError], directResult: true, union: { name: 'RevokeInvitationResult' } },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const invitation = await orgs.revokeInvitation(ctx.app, actorOf(ctx), String(args.id));
      return ctx.app.db.invitation.findUniqueOrThrow({ ...query, where: { id: invitation.id } });
    },
  }),
);

builder.mutationField('acceptInvitation', (t) =>
  t.prismaField({
    type: 'Membership',
    description: 'Joins the organization an invitation is for; only the account with the invited email can, once, before it expires',
    authScopes: { authenticated: true },
    errors: { types: [NotFoundError], directResult: true, union: { name: 'AcceptInvitationResult' } },
    args: { token: t.arg.string({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const membership = await orgs.acceptInvitation(ctx.app, userIdOf(ctx), args.token, ctx.requestId);
      return ctx.app.db.membership.findUniqueOrThrow({ ...query, where: { id: membership.id } });
    },
  }),
);

builder.mutationField('setMigrationPolicy', (t) =>
  t.prismaField({
    type: 'Organization',
    description: "Sets what Convoy does with the current organization's services when their worker fails (owners and admins)",
    authScopes: { member: true },
    errors: { types: [ForbiddenError, ValidationError], directResult: true, union: { name: 'SetMigrationPolicyResult' } },
    args: { policy: t.arg({ type: MigrationPolicyEnum, required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const org = await orgs.setMigrationPolicy(ctx.app, actorOf(ctx), args.policy);
      return ctx.app.db.organization.findUniqueOrThrow({ ...query, where: { id: org.id } });
    },
  }),
);

import { z } from 'zod';
import type { Db } from '../../platform/db/client.js';
import { displayName, email } from '../../shared/validation.js';
import { parseInput } from '../common/parse.js';
import { ConflictError, ForbiddenError, NotFoundError } from '../common/errors.js';
import { recordAudit } from '../audit/audit.js';
import { generateToken, hashToken } from '../../platform/crypto/tokens.js';
import { MigrationPolicy, Role } from '../../generated/prisma/enums.js';
import { hasRole, type Actor } from '../auth/caller.js';
import { createOrganizationFor } from '../auth/service.js';

export type OrgDeps = { db: Db };

const role = z.enum([Role.OWNER, Role.ADMIN, Role.MEMBER]);
const memberInput = z.object({ email, role });
const INVITATION_TTL_MS = 7 * 86_400_000;

/** Managing members needs ADMIN; only an OWNER may grant, change or remove the OWNER role. */
function assertCanManage(actor: Actor, targetRole: Role, currentRole?: Role) {
  if (!hasRole(actor, Role.ADMIN)) throw new ForbiddenError('Only owners and admins can manage members');
  if ((targetRole === Role.OWNER || currentRole === Role.OWNER) && actor.role !== Role.OWNER) {
    throw new ForbiddenError('Only owners can grant, change or remove the owner role');
  }
}

export async function createOrganization(deps: OrgDeps, userId: string, input: unknown, requestId?: string) {
  const { name } = parseInput(z.object({ name: displayName }), input);
  return deps.db.$transaction(async (tx) => {
    const org = await createOrganizationFor(tx, userId, name, false);
    await recordAudit(tx, { userId, organizationId: org.id, requestId }, 'organization.create', 'Organization', org.id);
    return org;
  });
}

/**
 * Creates an invitation whose token is returned once (only its hash is stored); accepting it, signed in
 * with that email, adds the member. Nobody joins without consent, and the answer is the same whether
 * or not an account with that email exists: inviting reveals nothing about other users. Inviting the
 * same email again replaces the pending invitation.
 */
export async function inviteMember(deps: OrgDeps, actor: Actor, input: unknown) {
  const parsed = parseInput(memberInput, input);
  assertCanManage(actor, parsed.role);
  const token = generateToken('cvy_inv');
  const now = new Date();
  return deps.db.$transaction(async (tx) => {
    await tx.invitation.updateMany({
      where: { organizationId: actor.organizationId, email: parsed.email, acceptedAt: null, revokedAt: null },
      data: { revokedAt: now },
    });
    const invitation = await tx.invitation.create({
      data: {
        organizationId: actor.organizationId,
        email: parsed.email,
        role: parsed.role,
        tokenHash: hashToken(token),
        createdById: actor.userId,
        expiresAt: new Date(now.getTime() + INVITATION_TTL_MS),
      },
    });
    await recordAudit(tx, actor, 'member.invite', 'Invitation', invitation.id, { email: parsed.email, role: parsed.role });
    return { invitation, token };
  });
}

export async function acceptInvitation(deps: OrgDeps, userId: string, token: string, requestId?: string) {
  const invitation = typeof token === 'string' && token.length < 200 ? await deps.db.invitation.findUnique({ where: { tokenHash: hashToken(token) } }) : null;
  const user = await deps.db.user.findUniqueOrThrow({ where: { id: userId } });
  if (!invitation || invitation.acceptedAt || invitation.revokedAt || invitation.expiresAt < new Date() || invitation.email !== user.email) {
    throw new NotFoundError('Invitation', 'token');
  }
  return deps.db.$transaction(async (tx) => {
    // Claimed atomically: an invitation revoked or accepted meanwhile does not add anyone.
    const claimed = await tx.invitation.updateMany({ where: { id: invitation.id, acceptedAt: null, revokedAt: null }, data: { acceptedAt: new Date() } });
    if (claimed.count === 0) throw new NotFoundError('Invitation', 'token');
    const membership = await tx.membership.upsert({
      where: { userId_organizationId: { userId, organizationId: invitation.organizationId } },
      create: { userId, organizationId: invitation.organizationId, role: invitation.role },
      update: {},
    });
    await recordAudit(tx, { userId, organizationId: invitation.organizationId, requestId }, 'member.accept_invitation', 'Membership', membership.id);
    return membership;
  });
}

/** Which invitations of the current organization are pending: not accepted, revoked or expired (owners and admins). */
export function pendingInvitationsWhere(actor: Actor) {
  if (!hasRole(actor, Role.ADMIN)) throw new ForbiddenError('Only owners and admins can see invitations');
  return { organizationId: actor.organizationId, acceptedAt: null, revokedAt: null, expiresAt: { gt: new Date() } };
}

/** Withdraws a pending invitation; another organization's behaves like a missing one. */
export async function revokeInvitation(deps: OrgDeps, actor: Actor, id: string) {
  const invitation = await deps.db.invitation.findFirst({ where: { id, organizationId: actor.organizationId, acceptedAt: null } });
  if (!invitation) throw new NotFoundError('Invitation', id);
  assertCanManage(actor, invitation.role);
  const revoked = await deps.db.invitation.update({ where: { id }, data: { revokedAt: invitation.revokedAt ?? new Date() } });
  await recordAudit(deps.db, actor, 'member.revoke_invitation', 'Invitation', id, { email: invitation.email });
  return revoked;
}

async function findMembership(deps: OrgDeps, actor: Actor, userId: string) {
  const membership = await deps.db.membership.findUnique({ where: { userId_organizationId: { userId, organizationId: actor.organizationId } } });
  if (!membership) throw new NotFoundError('Member', userId);
  return membership;
}

async function assertNotLastOwner(deps: OrgDeps, organizationId: string) {
  const owners = await deps.db.membership.count({ where: { organizationId, role: Role.OWNER } });
  if (owners <= 1) throw new ConflictError('An organization must keep at least one owner');
}

export async function changeMemberRole(deps: OrgDeps, actor: Actor, userId: string, newRole: unknown) {
  const parsedRole = parseInput(role, newRole);
  const membership = await findMembership(deps, actor, userId);
  assertCanManage(actor, parsedRole, membership.role);
  if (membership.role === Role.OWNER && parsedRole !== Role.OWNER) await assertNotLastOwner(deps, actor.organizationId);
  const updated = await deps.db.membership.update({ where: { id: membership.id }, data: { role: parsedRole } });
  await recordAudit(deps.db, actor, 'member.change_role', 'Membership', membership.id, { userId, from: membership.role, to: parsedRole });
  return updated;
}

export async function removeMember(deps: OrgDeps, actor: Actor, userId: string) {
  const membership = await findMembership(deps, actor, userId);
  // Leaving an organization yourself is always allowed (unless you are its last owner).
  if (userId !== actor.userId) assertCanManage(actor, membership.role, membership.role);
  if (membership.role === Role.OWNER) await assertNotLastOwner(deps, actor.organizationId);
  await deps.db.membership.delete({ where: { id: membership.id } });
  await recordAudit(deps.db, actor, 'member.remove', 'Membership', membership.id, { userId });
  return membership;
}

const migrationPolicy = z.enum([MigrationPolicy.AUTOMATIC, MigrationPolicy.MANUAL, MigrationPolicy.NONE]);

/** What Convoy does with the organization's services when their worker fails; owners and admins decide. */
export async function setMigrationPolicy(deps: OrgDeps, actor: Actor, policy: unknown) {
  const parsed = parseInput(migrationPolicy, policy);
  if (!hasRole(actor, Role.ADMIN)) throw new ForbiddenError('Only owners and admins can change the migration policy');
  return deps.db.$transaction(async (tx) => {
    const current = await tx.organization.findUniqueOrThrow({ where: { id: actor.organizationId }, select: { migrationPolicy: true } });
    const org = await tx.organization.update({ where: { id: actor.organizationId }, data: { migrationPolicy: parsed } });
    await recordAudit(tx, actor, 'organization.set_migration_policy', 'Organization', org.id, { from: current.migrationPolicy, to: parsed });
    return org;
  });
}

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashToken } from '../src/platform/crypto/tokens.js';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';
import { addMemberByInvitation } from './helpers/members.js';

let api: TestApi;
beforeAll(async () => {
  // Every test registers its own users, all from this one address.
  api = await startTestApi({ CONVOY_REGISTRATIONS_PER_HOUR: '200' });
});
afterAll(async () => {
  await api?.close();
});

const INVITE = `mutation($i: MemberInput!) { inviteMember(input: $i) { __typename ... on InvitationPayload { email role token expiresAt } ... on Error { message } } }`;
const ACCEPT = `mutation($t: String!) { acceptInvitation(token: $t) { __typename ... on Membership { role organization { id } } ... on Error { message } } }`;
const CHANGE = `mutation($u: ID!, $r: Role!) { changeMemberRole(userId: $u, role: $r) { __typename ... on Membership { role } ... on Error { message } } }`;
const REMOVE = `mutation($u: ID!) { removeMember(userId: $u) { __typename ... on RemovedMember { userId } ... on Error { message } } }`;
const MEMBERS = `{ organization { id members(first: 10) { edges { node { role user { id } } } } } }`;

async function orgWith(owner: TestUser, ...members: [TestUser, string][]) {
  for (const [user, role] of members) await addMemberByInvitation(api, owner, user, role);
}

describe('organizations and roles', () => {
  it('an owner invites members; members pick the organization per request with a header', async () => {
    const owner = await api.register();
    const member = await api.register();
    await orgWith(owner, [member, 'MEMBER']);
    const asMember = await api.gql(MEMBERS, {}, { token: member.accessToken, org: owner.organizationId });
    expect(asMember.data.organization.id).toBe(owner.organizationId);
    expect(asMember.data.organization.members.edges.map((e: any) => e.node.role).sort()).toEqual(['MEMBER', 'OWNER']);
    // Without the header the member acts in their own personal organization.
    const own = await api.gql(`{ organization { id } }`, {}, { token: member.accessToken });
    expect(own.data.organization.id).toBe(member.organizationId);
  });

  it('the header cannot select an organization the caller does not belong to', async () => {
    const alice = await api.register();
    const mallory = await api.register();
    const result = await api.gql(MEMBERS, {}, { token: mallory.accessToken, org: alice.organizationId });
    expect(result.errors?.[0].extensions?.code).toBe('FORBIDDEN');
    expect(result.data ?? null).toBeNull();
  });

  it('a member cannot manage members; an admin can, but cannot touch owners', async () => {
    const owner = await api.register();
    const admin = await api.register();
    const member = await api.register();
    const outsider = await api.register();
    await orgWith(owner, [admin, 'ADMIN'], [member, 'MEMBER']);
    const asMember = { token: member.accessToken, org: owner.organizationId };
    const asAdmin = { token: admin.accessToken, org: owner.organizationId };

    expect((await api.gql(INVITE, { i: { email: outsider.email, role: 'MEMBER' } }, asMember)).data.inviteMember.__typename).toBe('ForbiddenError');
    expect((await api.gql(REMOVE, { u: admin.id }, asMember)).data.removeMember.__typename).toBe('ForbiddenError');
    expect((await api.gql(CHANGE, { u: member.id, r: 'ADMIN' }, asMember)).data.changeMemberRole.__typename).toBe('ForbiddenError');

    expect((await api.gql(INVITE, { i: { email: outsider.email, role: 'OWNER' } }, asAdmin)).data.inviteMember.__typename).toBe('ForbiddenError');
    expect((await api.gql(CHANGE, { u: owner.id, r: 'MEMBER' }, asAdmin)).data.changeMemberRole.__typename).toBe('ForbiddenError');
    expect((await api.gql(CHANGE, { u: member.id, r: 'ADMIN' }, asAdmin)).data.changeMemberRole).toEqual({ __typename: 'Membership', role: 'ADMIN' });
    await addMemberByInvitation(api, admin, outsider, 'MEMBER', owner.organizationId);
    expect((await api.gql(REMOVE, { u: outsider.id }, asAdmin)).data.removeMember).toEqual({ __typename: 'RemovedMember', userId: outsider.id });

    const memberships = await api.app.db.membership.findMany({ where: { organizationId: owner.organizationId } });
    expect(memberships.map((m) => m.role).sort()).toEqual(['ADMIN', 'ADMIN', 'OWNER']);
  });

  it('the last owner cannot be demoted or removed', async () => {
    const owner = await api.register();
    const demote = await api.gql(CHANGE, { u: owner.id, r: 'ADMIN' }, { token: owner.accessToken });
    expect(demote.data.changeMemberRole.__typename).toBe('ConflictError');
    const leave = await api.gql(REMOVE, { u: owner.id }, { token: owner.accessToken });
    expect(leave.data.removeMember.__typename).toBe('ConflictError');
  });

  it('invitations are accepted only by the invited email, once', async () => {
    const owner = await api.register();
    const invitee = await api.register();
    const other = await api.register();
    const invite = await api.gql(INVITE, { i: { email: invitee.email, role: 'ADMIN' } }, { token: owner.accessToken });
    const token = invite.data.inviteMember.token;
    expect((await api.gql(ACCEPT, { t: token }, { token: other.accessToken })).data.acceptInvitation.__typename).toBe('NotFoundError');
    expect((await api.gql(ACCEPT, { t: token }, { token: invitee.accessToken })).data.acceptInvitation).toEqual({ __typename: 'Membership', role: 'ADMIN', organization: { id: owner.organizationId } });
    expect((await api.gql(ACCEPT, { t: token }, { token: invitee.accessToken })).data.acceptInvitation.__typename).toBe('NotFoundError');
  });

  it('addMember and inviteMember answer the same whether or not the email has an account, and add nobody until they accept', async () => {
    const owner = await api.register();
    const existing = await api.register();
    const unknownEmail = `nobody-${existing.email}`;
    const ADD = `mutation($i: MemberInput!) { addMember(input: $i) { __typename ... on InvitationPayload { email role token expiresAt } ... on Error { message } } }`;
    const shape = (payload: Record<string, unknown>) => ({ ...payload, email: '<email>', token: String(payload.token).replace(/^(cvy_inv_)[A-Za-z0-9_-]+$/, '$1<secret>'), expiresAt: typeof payload.expiresAt });
    const answers = [];
    for (const email of [existing.email, unknownEmail]) {
      for (const [query, field] of [[ADD, 'addMember'], [INVITE, 'inviteMember']] as const) {
        const result = await api.gql(query, { i: { email, role: 'MEMBER' } }, { token: owner.accessToken });
        expect(result.errors).toBeUndefined();
        answers.push(shape(result.data[field]));
      }
    }
    expect(answers[0]).toMatchObject({ __typename: 'InvitationPayload', role: 'MEMBER', token: 'cvy_inv_<secret>' });
    expect(answers).toEqual(Array(4).fill(answers[0]));

    // Nobody was added: the existing user is not a member, and cannot act in the organization.
    expect(await api.app.db.membership.findMany({ where: { organizationId: owner.organizationId }, select: { userId: true } })).toEqual([{ userId: owner.id }]);
    const before = await api.gql(`{ organization { id } }`, {}, { token: existing.accessToken, org: owner.organizationId });
    expect(before.errors?.[0].extensions?.code).toBe('FORBIDDEN');

    // Invitations are stored as hashes; inviting again replaces the pending one, and only the last token works.
    const pending = await api.app.db.invitation.findMany({ where: { organizationId: owner.organizationId, email: existing.email }, orderBy: { createdAt: 'asc' } });
    expect(pending).toHaveLength(2);
    expect(pending[0].revokedAt).not.toBeNull();
    const last = await api.gql(INVITE, { i: { email: existing.email, role: 'ADMIN' } }, { token: owner.accessToken });
    const stored = await api.app.db.invitation.findFirstOrThrow({ where: { organizationId: owner.organizationId, email: existing.email, revokedAt: null } });
    expect(stored.tokenHash).toBe(hashToken(last.data.inviteMember.token));
    expect(JSON.stringify(await api.app.db.invitation.findMany())).not.toContain(last.data.inviteMember.token);

    expect((await api.gql(ACCEPT, { t: last.data.inviteMember.token }, { token: existing.accessToken })).data.acceptInvitation).toEqual({ __typename: 'Membership', role: 'ADMIN', organization: { id: owner.organizationId } });
    expect((await api.gql(`{ organization { id } }`, {}, { token: existing.accessToken, org: owner.organizationId })).data.organization.id).toBe(owner.organizationId);
  });

  it('admins list and revoke pending invitations; a revoked one adds nobody, and other organizations cannot touch them', async () => {
    const owner = await api.register();
    const invitee = await api.register();
    const stranger = await api.register();
    const invited = (await api.gql(INVITE, { i: { email: invitee.email, role: 'MEMBER' } }, { token: owner.accessToken })).data.inviteMember;
    const LIST = `{ invitations { id email role revokedAt } }`;
    const REVOKE = `mutation($id: ID!) { revokeInvitation(id: $id) { __typename ... on Invitation { id revokedAt } ... on Error { message } } }`;
    const [listed] = (await api.gql(LIST, {}, { token: owner.accessToken })).data.invitations;
    expect(listed).toEqual({ id: expect.any(String), email: invitee.email, role: 'MEMBER', revokedAt: null });
    expect(JSON.stringify(await api.gql(LIST, {}, { token: owner.accessToken }))).not.toContain(invited.token);
    expect((await api.gql(LIST, {}, { token: stranger.accessToken })).data.invitations).toEqual([]);
    expect((await api.gql(REVOKE, { id: listed.id }, { token: stranger.accessToken })).data.revokeInvitation.__typename).toBe('NotFoundError');

    expect((await api.gql(REVOKE, { id: listed.id }, { token: owner.accessToken })).data.revokeInvitation).toEqual({ __typename: 'Invitation', id: listed.id, revokedAt: expect.any(String) });
    expect((await api.gql(LIST, {}, { token: owner.accessToken })).data.invitations).toEqual([]);
    expect((await api.gql(ACCEPT, { t: invited.token }, { token: invitee.accessToken })).data.acceptInvitation.__typename).toBe('NotFoundError');
    expect(await api.app.db.membership.count({ where: { organizationId: owner.organizationId, userId: invitee.id } })).toBe(0);
  });

  it('member management from another organization behaves like a missing member', async () => {
    const alice = await api.register();
    const bob = await api.register();
    const result = await api.gql(REMOVE, { u: alice.id }, { token: bob.accessToken });
    expect(result.data.removeMember.__typename).toBe('NotFoundError');
    expect(await api.app.db.membership.count({ where: { organizationId: alice.organizationId } })).toBe(1);
  });

  it('records every membership change in the audit log, readable by admins only', async () => {
    const owner = await api.register();
    const member = await api.register();
    await orgWith(owner, [member, 'MEMBER']);
    const log = await api.gql(`{ auditLog(first: 20) { edges { node { action actor { id } requestId } } } }`, {}, { token: owner.accessToken, headers: { 'x-request-id': 'req-audit-1' } });
    const actions = log.data.auditLog.edges.map((e: any) => e.node.action);
    expect(actions).toEqual(expect.arrayContaining(['member.invite', 'member.accept_invitation']));
    const asMember = await api.gql(`{ auditLog(first: 5) { edges { node { id } } } }`, {}, { token: member.accessToken, org: owner.organizationId });
    expect(asMember.errors?.[0].extensions?.code).toBe('FORBIDDEN');
  });
});

describe('migration policy', () => {
  it('owners and admins set what happens to services when their worker fails; members cannot', async () => {
    const owner = await api.register();
    const admin = await api.register();
    const member = await api.register();
    await orgWith(owner, [admin, 'ADMIN'], [member, 'MEMBER']);
    const SET = `mutation($p: MigrationPolicy!) { setMigrationPolicy(policy: $p) { __typename ... on Organization { migrationPolicy } ... on Error { message } } }`;
    expect((await api.gql(`{ organization { migrationPolicy } }`, {}, { token: owner.accessToken })).data.organization.migrationPolicy).toBe('AUTOMATIC');
    expect((await api.gql(SET, { p: 'NONE' }, { token: member.accessToken, org: owner.organizationId })).data.setMigrationPolicy.__typename).toBe('ForbiddenError');
    expect((await api.gql(SET, { p: 'MANUAL' }, { token: admin.accessToken, org: owner.organizationId })).data.setMigrationPolicy).toEqual({ __typename: 'Organization', migrationPolicy: 'MANUAL' });
    expect((await api.gql(SET, { p: 'NONE' }, { token: owner.accessToken })).data.setMigrationPolicy).toEqual({ __typename: 'Organization', migrationPolicy: 'NONE' });
    expect(await api.app.db.organization.findUniqueOrThrow({ where: { id: owner.organizationId } })).toMatchObject({ migrationPolicy: 'NONE' });
    const audit = await api.app.db.auditLogEntry.findMany({ where: { organizationId: owner.organizationId, action: 'organization.set_migration_policy' }, orderBy: { createdAt: 'asc' } });
    expect(audit.map((e) => [e.actorUserId, e.metadata])).toEqual([
      [admin.id, { from: 'AUTOMATIC', to: 'MANUAL' }],
      [owner.id, { from: 'MANUAL', to: 'NONE' }],
    ]);
    expect((await api.gql(SET, { p: 'SOMETIMES' }, { token: owner.accessToken })).errors?.length).toBeGreaterThan(0);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi, type TestUser } from './helpers/api.js';

let api: TestApi;
beforeAll(async () => {
  api = await startTestApi();
});
afterAll(async () => {
  await api?.close();
});

const ADD = `mutation($i: MemberInput!) { addMember(input: $i) { __typename ... on Membership { role user { email } } ... on Error { message } } }`;
const CHANGE = `mutation($u: ID!, $r: Role!) { changeMemberRole(userId: $u, role: $r) { __typename ... on Membership { role } ... on Error { message } } }`;
const REMOVE = `mutation($u: ID!) { removeMember(userId: $u) { __typename ... on RemovedMember { userId } ... on Error { message } } }`;
const MEMBERS = `{ organization { id members(first: 10) { edges { node { role user { id } } } } } }`;

async function orgWith(owner: TestUser, ...members: [TestUser, string][]) {
  for (const [user, role] of members) {
    const added = await api.gql(ADD, { i: { email: user.email, role } }, { token: owner.accessToken });
    expect(added.data.addMember.__typename).toBe('Membership');
  }
}

describe('organizations and roles', () => {
  it('an owner adds members; members pick the organization per request with a header', async () => {
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

    expect((await api.gql(ADD, { i: { email: outsider.email, role: 'MEMBER' } }, asMember)).data.addMember.__typename).toBe('ForbiddenError');
    expect((await api.gql(REMOVE, { u: admin.id }, asMember)).data.removeMember.__typename).toBe('ForbiddenError');
    expect((await api.gql(CHANGE, { u: member.id, r: 'ADMIN' }, asMember)).data.changeMemberRole.__typename).toBe('ForbiddenError');

    expect((await api.gql(ADD, { i: { email: outsider.email, role: 'OWNER' } }, asAdmin)).data.addMember.__typename).toBe('ForbiddenError');
    expect((await api.gql(CHANGE, { u: owner.id, r: 'MEMBER' }, asAdmin)).data.changeMemberRole.__typename).toBe('ForbiddenError');
    expect((await api.gql(CHANGE, { u: member.id, r: 'ADMIN' }, asAdmin)).data.changeMemberRole).toEqual({ __typename: 'Membership', role: 'ADMIN' });
    expect((await api.gql(ADD, { i: { email: outsider.email, role: 'MEMBER' } }, asAdmin)).data.addMember.__typename).toBe('Membership');
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
    const invite = await api.gql(`mutation($i: MemberInput!) { inviteMember(input: $i) { __typename ... on InvitationPayload { token role } } }`, { i: { email: invitee.email, role: 'ADMIN' } }, { token: owner.accessToken });
    const token = invite.data.inviteMember.token;
    const ACCEPT = `mutation($t: String!) { acceptInvitation(token: $t) { __typename ... on Membership { role organization { id } } } }`;
    expect((await api.gql(ACCEPT, { t: token }, { token: other.accessToken })).data.acceptInvitation.__typename).toBe('NotFoundError');
    expect((await api.gql(ACCEPT, { t: token }, { token: invitee.accessToken })).data.acceptInvitation).toEqual({ __typename: 'Membership', role: 'ADMIN', organization: { id: owner.organizationId } });
    expect((await api.gql(ACCEPT, { t: token }, { token: invitee.accessToken })).data.acceptInvitation.__typename).toBe('NotFoundError');
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
    expect(actions).toContain('member.add');
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

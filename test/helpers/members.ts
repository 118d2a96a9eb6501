// Members join an organization only by accepting an invitation: the two steps, for tests that need a member.
import type { TestApi, TestUser } from './api.js';

const INVITE = `mutation($i: MemberInput!) { inviteMember(input: $i) { __typename ... on InvitationPayload { token } ... on Error { message } } }`;
const ACCEPT = `mutation($t: String!) { acceptInvitation(token: $t) { __typename ... on Membership { id role } ... on Error { message } } }`;

/** `inviter` invites `invitee` into the organization it acts in (its personal one unless `org` names another); the invitee accepts. */
export async function addMemberByInvitation(api: TestApi, inviter: TestUser, invitee: TestUser, role: string, org?: string): Promise<{ id: string; role: string }> {
  const invited = (await api.gql(INVITE, { i: { email: invitee.email, role } }, { token: inviter.accessToken, org })).data?.inviteMember;
  if (invited?.__typename !== 'InvitationPayload') throw new Error(`inviteMember failed: ${JSON.stringify(invited)}`);
  const accepted = (await api.gql(ACCEPT, { t: invited.token }, { token: invitee.accessToken })).data?.acceptInvitation;
  if (accepted?.__typename !== 'Membership') throw new Error(`acceptInvitation failed: ${JSON.stringify(accepted)}`);
  return accepted;
}

// Who is calling: resolved once per request (HTTP or WebSocket) from the Authorization header and
// the organization header, then narrowed by scope-auth in resolvers.
import type { Role } from '../../generated/prisma/enums.js';

export type OrgMembership = { organizationId: string; role: Role };

export type Caller =
  | { kind: 'anonymous' }
  | { kind: 'user'; userId: string; via: 'jwt' | 'apiToken'; apiTokenId?: string; organization: OrgMembership | null; organizationDenied: boolean }
  | { kind: 'worker'; workerId: string };

export type UserCaller = Extract<Caller, { kind: 'user' }>;

/** A user acting inside one organization: what every org-scoped service function takes. */
export type Actor = { userId: string; organizationId: string; role: Role; requestId: string };

export const ROLE_RANK: Record<Role, number> = { MEMBER: 1, ADMIN: 2, OWNER: 3 };

export function hasRole(actor: { role: Role }, atLeast: Role): boolean {
  return ROLE_RANK[actor.role] >= ROLE_RANK[atLeast];
}

export const ORGANIZATION_HEADER = 'x-convoy-organization';

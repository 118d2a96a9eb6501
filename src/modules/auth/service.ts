import { randomUUID, randomBytes } from 'node:crypto';
import { SignJWT, jwtVerify, errors as joseErrors } from 'jose';
import { z } from 'zod';
import type { Db } from '../../platform/db/client.js';
import type { Config } from '../../config.js';
import { deriveKey, generateToken, hashPassword, hashToken, verifyPassword } from '../../platform/crypto/tokens.js';
import { displayName, email, password } from '../../shared/validation.js';
import { parseInput } from '../common/parse.js';
import { ConflictError, InvalidCredentialsError, NotFoundError, UnauthenticatedError } from '../common/errors.js';
import { recordAudit } from '../audit/audit.js';
import { Role } from '../../generated/prisma/enums.js';
import { ORGANIZATION_HEADER, type Actor, type Caller, type OrgMembership } from './caller.js';
import { workerIdForCredential, type WorkerCredentialDeps } from './worker-credentials.js';
import { isSessionRevoked, revokeSession, type SessionDeps } from './sessions.js';

export type AuthDeps = { db: Db; config: Config };
export type TokenPair = { accessToken: string; refreshToken: string; accessTokenExpiresAt: Date; refreshTokenExpiresAt: Date };

const API_TOKEN_PREFIX = 'cvy_pat';
const REFRESH_TOKEN_PREFIX = 'cvy_rt';
export const WORKER_TOKEN_PREFIX = 'cvy_wrk';

// A dummy hash keeps login timing the same whether or not the email exists.
const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

export const registerInput = z.object({ email, password, name: displayName });
export const loginInput = z.object({ email, password: z.string().min(1, 'must not be empty').max(256, 'must be at most 256 characters') });
const apiTokenInput = z.object({
  name: displayName,
  expiresInDays: z.number().int().min(1, 'must be at least 1 day').max(3650, 'must be at most 3650 days').nullish(),
});

function jwtKey(config: Config) {
  return deriveKey(config.secretKey, 'jwt-access');
}

/** `sid` names the session (the refresh-token family) the token belongs to: ending it ends the token. */
async function issueAccessToken(deps: AuthDeps, userId: string, sessionId: string): Promise<{ token: string; expiresAt: Date }> {
  const expiresAt = new Date(Date.now() + deps.config.accessTokenTtlSeconds * 1000);
  const token = await new SignJWT({ typ: 'access', sid: sessionId })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(userId)
    .setIssuer('convoy')
    .setIssuedAt()
    .setJti(randomUUID())
    .setExpirationTime(Math.floor(expiresAt.getTime() / 1000))
    .sign(jwtKey(deps.config));
  return { token, expiresAt };
}

async function issueTokenPair(deps: AuthDeps, userId: string, familyId: string, db: Db | Parameters<Parameters<Db['$transaction']>[0]>[0] = deps.db): Promise<TokenPair> {
  const refreshToken = generateToken(REFRESH_TOKEN_PREFIX);
  const refreshTokenExpiresAt = new Date(Date.now() + deps.config.refreshTokenTtlSeconds * 1000);
  await db.refreshToken.create({ data: { userId, familyId, tokenHash: hashToken(refreshToken), expiresAt: refreshTokenExpiresAt } });
  const access = await issueAccessToken(deps, userId, familyId);
  return { accessToken: access.token, accessTokenExpiresAt: access.expiresAt, refreshToken, refreshTokenExpiresAt };
}

function organizationSlug(base: string): string {
  const cleaned = base.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'org';
  return `${cleaned}-${randomBytes(3).toString('hex')}`;
}

/** Creates an organization with its owner, wallet and quota: the shape every organization starts in. */
export async function createOrganizationFor(
  tx: Parameters<Parameters<Db['$transaction']>[0]>[0],
  ownerId: string,
  name: string,
  personal: boolean,
) {
  return tx.organization.create({
    data: {
      name,
      slug: organizationSlug(name),
      personal,
      memberships: { create: { userId: ownerId, role: Role.OWNER } },
      wallet: { create: {} },
      quota: { create: {} },
    },
  });
}

/**
 * The first account of an installation operates it (platform admin). The advisory lock, taken only
 * while no user exists, keeps two concurrent first registrations from both becoming admin.
 */
async function isFirstUser(tx: Parameters<Parameters<Db['$transaction']>[0]>[0]): Promise<boolean> {
  if (await tx.user.findFirst({ select: { id: true } })) return false;
  await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext('convoy:first-user'))`;
  return !(await tx.user.findFirst({ select: { id: true } }));
}

export async function register(deps: AuthDeps, input: unknown, requestId?: string) {
  const { email: mail, password: pw, name } = parseInput(registerInput, input);
  const passwordHash = await hashPassword(pw);
  try {
    return await deps.db.$transaction(async (tx) => {
      const user = await tx.user.create({ data: { email: mail, name, passwordHash, platformAdmin: await isFirstUser(tx) } });
      const org = await createOrganizationFor(tx, user.id, `${name}'s organization`, true);
      await recordAudit(tx, { userId: user.id, organizationId: org.id, requestId }, 'user.register', 'User', user.id);
      const tokens = await issueTokenPair(deps, user.id, randomUUID(), tx);
      return { user, organization: org, tokens };
    });
  } catch (error) {
    if ((error as { code?: string }).code === 'P2002') throw new ConflictError('An account with this email already exists', 'email');
    throw error;
  }
}

export async function login(deps: AuthDeps, input: unknown, requestId?: string) {
  const { email: mail, password: pw } = parseInput(loginInput, input);
  const user = await deps.db.user.findUnique({ where: { email: mail } });
  const ok = await verifyPassword(pw, user?.passwordHash ?? DUMMY_HASH);
  if (!user || !ok) throw new InvalidCredentialsError();
  const tokens = await issueTokenPair(deps, user.id, randomUUID());
  await recordAudit(deps.db, { userId: user.id, requestId }, 'user.login', 'User', user.id);
  return { user, tokens };
}

/**
 * Rotates a refresh token. A token that was already used means it leaked (or a client raced):
 * the whole family is revoked, logging out every session that descends from that login.
 */
export async function refresh(deps: AuthDeps & SessionDeps, refreshToken: string) {
  if (typeof refreshToken !== 'string' || refreshToken.length > 200) throw new InvalidCredentialsError();
  const stored = await deps.db.refreshToken.findUnique({ where: { tokenHash: hashToken(refreshToken) } });
  if (!stored || stored.revokedAt || stored.expiresAt < new Date()) throw new InvalidCredentialsError();
  // Claim the token atomically so two concurrent refreshes cannot both succeed.
  const claimed = await deps.db.refreshToken.updateMany({ where: { id: stored.id, usedAt: null }, data: { usedAt: new Date() } });
  if (claimed.count === 0) {
    await revokeFamily(deps, stored.familyId);
    await recordAudit(deps.db, { userId: stored.userId }, 'auth.refresh_token_reused', 'User', stored.userId, { familyId: stored.familyId });
    throw new InvalidCredentialsError();
  }
  const user = await deps.db.user.findUniqueOrThrow({ where: { id: stored.userId } });
  const tokens = await issueTokenPair(deps, user.id, stored.familyId);
  return { user, tokens };
}

/** Ends a session: its refresh tokens in the database, its access tokens through the revocation mark. */
async function revokeFamily(deps: AuthDeps & SessionDeps, familyId: string) {
  await deps.db.refreshToken.updateMany({ where: { familyId, revokedAt: null }, data: { revokedAt: new Date() } });
  await revokeSession(deps, familyId);
}

/** Ends the session the refresh token belongs to. Unknown tokens are ignored: logout always succeeds. */
export async function logout(deps: AuthDeps & SessionDeps, refreshToken: string, requestId?: string): Promise<void> {
  if (typeof refreshToken !== 'string' || refreshToken.length > 200) return;
  const stored = await deps.db.refreshToken.findUnique({ where: { tokenHash: hashToken(refreshToken) } });
  if (!stored) return;
  await revokeFamily(deps, stored.familyId);
  await recordAudit(deps.db, { userId: stored.userId, requestId }, 'user.logout', 'User', stored.userId);
}

export async function createApiToken(deps: AuthDeps, actor: Actor, input: unknown) {
  const { name, expiresInDays } = parseInput(apiTokenInput, input);
  const token = generateToken(API_TOKEN_PREFIX);
  const record = await deps.db.apiToken.create({
    data: {
      userId: actor.userId,
      organizationId: actor.organizationId,
      name,
      prefix: token.slice(0, API_TOKEN_PREFIX.length + 7),
      tokenHash: hashToken(token),
      expiresAt: expiresInDays ? new Date(Date.now() + expiresInDays * 86_400_000) : null,
    },
  });
  await recordAudit(deps.db, actor, 'api_token.create', 'ApiToken', record.id, { name });
  return { apiToken: record, token };
}

export async function revokeApiToken(deps: AuthDeps, actor: Actor, id: string) {
  // Only the token's owner revokes it; another user's id behaves like a missing one.
  const token = await deps.db.apiToken.findFirst({ where: { id, userId: actor.userId, organizationId: actor.organizationId } });
  if (!token) throw new NotFoundError('ApiToken', id);
  const updated = await deps.db.apiToken.update({ where: { id }, data: { revokedAt: token.revokedAt ?? new Date() } });
  await recordAudit(deps.db, actor, 'api_token.revoke', 'ApiToken', id);
  return updated;
}

type Headers = { get(name: string): string | null };

/** Resolves the caller from request headers. Bad credentials are an error, missing ones are anonymous. */
export async function authenticate(deps: AuthDeps & WorkerCredentialDeps & SessionDeps, headers: Headers): Promise<Caller> {
  const authorization = headers.get('authorization');
  if (!authorization) return { kind: 'anonymous' };
  const match = /^Bearer ([A-Za-z0-9._~+/=-]{10,2048})$/.exec(authorization.trim());
  if (!match) throw new UnauthenticatedError('Malformed Authorization header');
  const token = match[1];
  const requestedOrg = headers.get(ORGANIZATION_HEADER);

  if (token.startsWith(`${WORKER_TOKEN_PREFIX}_`)) {
    const workerId = await workerIdForCredential(deps, hashToken(token));
    if (!workerId) throw new UnauthenticatedError('Invalid worker credential');
    return { kind: 'worker', workerId };
  }

  if (token.startsWith(`${API_TOKEN_PREFIX}_`)) {
    const apiToken = await deps.db.apiToken.findUnique({ where: { tokenHash: hashToken(token) } });
    if (!apiToken || apiToken.revokedAt || (apiToken.expiresAt && apiToken.expiresAt < new Date())) throw new UnauthenticatedError('Invalid API token');
    const membership = await deps.db.membership.findUnique({ where: { userId_organizationId: { userId: apiToken.userId, organizationId: apiToken.organizationId } } });
    if (!membership) throw new UnauthenticatedError('API token owner is no longer a member of its organization');
    // API tokens are bound to one organization; asking for another one is refused, not silently ignored.
    const denied = !!requestedOrg && requestedOrg !== apiToken.organizationId;
    void deps.db.apiToken.update({ where: { id: apiToken.id }, data: { lastUsedAt: new Date() } }).catch(() => {});
    return {
      kind: 'user',
      userId: apiToken.userId,
      via: 'apiToken',
      apiTokenId: apiToken.id,
      organization: denied ? null : { organizationId: membership.organizationId, role: membership.role },
      organizationDenied: denied,
    };
  }

  let userId: string;
  let sessionId: string;
  try {
    const { payload } = await jwtVerify(token, jwtKey(deps.config), { issuer: 'convoy', algorithms: ['HS256'] });
    if (payload.typ !== 'access' || typeof payload.sub !== 'string' || typeof payload.sid !== 'string') throw new UnauthenticatedError('Invalid access token');
    userId = payload.sub;
    sessionId = payload.sid;
  } catch (error) {
    if (error instanceof joseErrors.JWTExpired) throw new UnauthenticatedError('Access token expired');
    throw new UnauthenticatedError('Invalid access token');
  }
  if (await isSessionRevoked(deps, sessionId)) throw new UnauthenticatedError('Session ended: log in again');
  const { organization, denied } = await pickOrganization(deps.db, userId, requestedOrg);
  return { kind: 'user', userId, via: 'jwt', organization, organizationDenied: denied };
}

/** The organization named by the header (id or slug) if the user belongs to it, else their personal one. */
async function pickOrganization(db: Db, userId: string, requested: string | null): Promise<{ organization: OrgMembership | null; denied: boolean }> {
  if (requested) {
    if (requested.length > 100) return { organization: null, denied: true };
    const membership = await db.membership.findFirst({
      where: { userId, organization: { OR: [{ id: requested }, { slug: requested }] } },
    });
    return membership ? { organization: { organizationId: membership.organizationId, role: membership.role }, denied: false } : { organization: null, denied: true };
  }
  const memberships = await db.membership.findMany({ where: { userId }, include: { organization: { select: { personal: true } } }, orderBy: { createdAt: 'asc' } });
  const chosen = memberships.find((m) => m.organization.personal && m.role === Role.OWNER) ?? memberships[0];
  return { organization: chosen ? { organizationId: chosen.organizationId, role: chosen.role } : null, denied: false };
}


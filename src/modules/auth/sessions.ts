// A session is one login: its refresh-token family, named by the `sid` claim of every access token
// issued for it. Access tokens are checked without the database, so ending a session (logout, or a
// spent refresh token presented again) writes the session id to Redis for as long as any of its access
// tokens can live, and every request looks it up there: answered from this process's memory for at most
// CHECK_MS, so a session ended anywhere stops working everywhere within about a second, and in the
// process that ended it at once.
import type { Config } from '../../config.js';
import { isRedisDown, isRedisUnavailable, type Redis } from '../../platform/redis/connection.js';
import { ServiceUnavailableError } from '../common/errors.js';

export type SessionDeps = { redis: Redis; config: Pick<Config, 'redisPrefix' | 'accessTokenTtlSeconds'> };

const CHECK_MS = 1000;
// While Redis is down, how long the last answer for a session stays good enough.
const STALE_TRUST_MS = 10 * 60_000;
const MAX_CACHED = 100_000;
// Access tokens are accepted a little past their expiry by clocks that disagree; keep the mark longer.
const CLOCK_SKEW_SECONDS = 60;

function revokedKey(prefix: string, sessionId: string): string {
  return `${prefix}:auth:revoked-session:${sessionId}`;
}

class SessionRevocations {
  private readonly known = new Map<string, { revoked: boolean; checkedAt: number }>();
  private readonly lookups = new Map<string, Promise<boolean>>();

  constructor(private readonly deps: SessionDeps) {}

  async isRevoked(sessionId: string): Promise<boolean> {
    const entry = this.known.get(sessionId);
    if (entry && (entry.revoked || Date.now() - entry.checkedAt < CHECK_MS)) return entry.revoked;
    // Known to be down: no need to wait for the command to time out.
    if (entry && Date.now() - entry.checkedAt < STALE_TRUST_MS && isRedisDown(this.deps.redis)) return entry.revoked;
    let lookup = this.lookups.get(sessionId);
    if (!lookup) {
      lookup = this.deps.redis
        .exists(revokedKey(this.deps.config.redisPrefix, sessionId))
        .then(
          (found) => {
            // A revocation made here while the lookup ran wins over its (older) answer.
            const revoked = found > 0 || this.known.get(sessionId)?.revoked === true;
            if (this.known.size >= MAX_CACHED) this.known.clear();
            this.known.set(sessionId, { revoked, checkedAt: Date.now() });
            return revoked;
          },
          (error: unknown) => {
            // Redis cannot tell: a session this process checked within STALE_TRUST_MS keeps its last
            // answer (so a Redis outage does not log everyone out); one it never saw cannot be checked.
            const last = this.known.get(sessionId);
            if (isRedisUnavailable(error) && last && Date.now() - last.checkedAt < STALE_TRUST_MS) return last.revoked;
            throw isRedisUnavailable(error) ? new ServiceUnavailableError('redis') : error;
          },
        )
        .finally(() => this.lookups.delete(sessionId));
      this.lookups.set(sessionId, lookup);
    }
    return lookup;
  }

  async revoke(sessionId: string): Promise<void> {
    this.known.set(sessionId, { revoked: true, checkedAt: Date.now() });
    const ttl = this.deps.config.accessTokenTtlSeconds + CLOCK_SKEW_SECONDS;
    await this.deps.redis.set(revokedKey(this.deps.config.redisPrefix, sessionId), '1', 'EX', ttl);
  }
}

const revocations = new WeakMap<Redis, SessionRevocations>();

function revocationsFor(deps: SessionDeps): SessionRevocations {
  let found = revocations.get(deps.redis);
  if (!found) revocations.set(deps.redis, (found = new SessionRevocations(deps)));
  return found;
}

export function isSessionRevoked(deps: SessionDeps, sessionId: string): Promise<boolean> {
  return revocationsFor(deps).isRevoked(sessionId);
}

/** Ends every access token of the session (their refresh tokens are revoked in the database by the caller). */
export function revokeSession(deps: SessionDeps, sessionId: string): Promise<void> {
  return revocationsFor(deps).revoke(sessionId);
}

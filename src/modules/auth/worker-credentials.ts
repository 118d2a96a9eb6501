// Worker credentials are checked on every heartbeat, which is most of the API's traffic: tens of
// thousands of agents, one request each every CONVOY_WORKER_HEARTBEAT_SECONDS. Three things keep that
// check off the database:
//
// - Lookups that arrive together share one statement (measured: the pg socket write of each statement
//   costs the API more CPU than the rest of the lookup, so a query per request caps the whole process).
// - A credential found valid is remembered for CONVOY_WORKER_CREDENTIAL_CACHE_SECONDS (300 s by default,
//   0 turns it off; at most MAX_CACHED of them), longer than the heartbeat interval, so an agent waits for
//   a lookup only on its first request to this process.
// - Past half that age an entry is still trusted but looked up again in the background: a credential in
//   steady use never waits for the database, and one revoked by hand in the database stops working after
//   half the cache time plus a heartbeat or so.
//
// Revocation: whoever revokes a worker credential or removes a worker calls `forgetWorkerCredentials`
// after the change is committed. In this process that takes effect at once; other API processes notice
// within about VERSION_CHECK_MS, because every cache compares a Redis version key it bumps (one GET per
// process per interval, not per request, made in the background while the last answer is recent).
// Heartbeats need none of this to stop a removed worker: their UPDATE skips removed rows.
import type { Db } from '../../platform/db/client.js';
import type { Redis } from '../../platform/redis/connection.js';
import type { Config } from '../../config.js';
import { InFlightBatcher } from '../workers/batcher.js';

export type WorkerCredentialDeps = { db: Db; redis: Redis; config: Pick<Config, 'redisPrefix' | 'workers'> };

const MAX_CACHED = 100_000;
const MAX_LOOKUP_BATCH = 500;
const VERSION_CHECK_MS = 1000;
// Past this, nothing cached is trusted until Redis has answered the version again (it is down, or this
// process was idle): requests wait for the check.
const VERSION_TRUST_MS = 2 * VERSION_CHECK_MS;
// Under load, lookups wait this long to share a statement (see InFlightBatcher); idle, one runs at once.
const LOOKUP_LINGER_MS = 5;

function versionKey(prefix: string): string {
  return `${prefix}:auth:worker-credentials-version`;
}

class WorkerCredentialCache {
  /** Worker id by credential hash. */
  private readonly entries = new Map<string, { workerId: string; refreshAt: number; until: number; refreshing: boolean }>();
  private readonly lookups: InFlightBatcher<string, string | null>;
  private readonly ttlMs: number;
  /** Bumped whenever entries are forgotten: a lookup that started before then is not cached. */
  private epoch = 0;
  private version: string | null = null;
  private versionCheckedAt = -Infinity;
  private versionCheck: Promise<void> | null = null;

  constructor(private readonly deps: WorkerCredentialDeps) {
    this.ttlMs = deps.config.workers.credentialCacheSeconds * 1000;
    this.lookups = new InFlightBatcher(
      async (hashes) => {
        const found = await deps.db.workerCredential.findMany({
          where: { tokenHash: { in: [...new Set(hashes)] }, revokedAt: null, worker: { removedAt: null } },
          select: { tokenHash: true, workerId: true },
        });
        const byHash = new Map(found.map((c) => [c.tokenHash, c.workerId]));
        return hashes.map((hash) => byHash.get(hash) ?? null);
      },
      { maxItems: MAX_LOOKUP_BATCH, concurrency: 2, lingerMs: LOOKUP_LINGER_MS },
    );
  }

  /** The worker a valid credential belongs to, or null for an unknown, revoked or removed one. */
  async workerIdFor(tokenHash: string): Promise<string | null> {
    if (this.ttlMs > 0 && (await this.versionIsCurrent())) {
      const entry = this.entries.get(tokenHash);
      const now = Date.now();
      if (entry && entry.until > now) {
        if (entry.refreshAt <= now && !entry.refreshing) {
          entry.refreshing = true;
          this.lookup(tokenHash).catch(() => (entry.refreshing = false));
        }
        return entry.workerId;
      }
    }
    return this.lookup(tokenHash);
  }

  private async lookup(tokenHash: string): Promise<string | null> {
    const epoch = this.epoch;
    const startedAt = Date.now();
    const workerId = await this.lookups.run(tokenHash);
    // Only valid credentials are cached: unknown tokens cannot fill the cache, and a fresh one works at once.
    // A lookup that started before something was forgotten leaves the cache alone.
    if (epoch === this.epoch) {
      if (workerId && this.ttlMs > 0) {
        if (this.entries.size >= MAX_CACHED) this.entries.clear();
        this.entries.set(tokenHash, { workerId, refreshAt: startedAt + this.ttlMs / 2, until: startedAt + this.ttlMs, refreshing: false });
      } else this.entries.delete(tokenHash);
    }
    return workerId;
  }

  forget(workerId: string) {
    this.epoch++;
    for (const [hash, entry] of this.entries) if (entry.workerId === workerId) this.entries.delete(hash);
  }

  async bumpVersion() {
    await this.deps.redis.incr(versionKey(this.deps.config.redisPrefix));
  }

  /**
   * Checks the shared version at most every VERSION_CHECK_MS (concurrent callers share the check); a
   * changed version empties the cache. While the last answer is younger than VERSION_TRUST_MS the check
   * runs in the background and callers go on; past that they wait for it. False when Redis cannot tell:
   * then nothing cached is trusted.
   */
  private async versionIsCurrent(): Promise<boolean> {
    const age = Date.now() - this.versionCheckedAt;
    if (age < VERSION_CHECK_MS) return true;
    this.versionCheck ??= this.deps.redis
      .get(versionKey(this.deps.config.redisPrefix))
      .then(
        (version) => {
          if (version !== this.version) {
            this.epoch++;
            this.entries.clear();
            this.version = version;
          }
          this.versionCheckedAt = Date.now();
        },
        () => {
          this.epoch++;
          this.entries.clear();
        },
      )
      .finally(() => (this.versionCheck = null));
    if (age < VERSION_TRUST_MS) return true;
    await this.versionCheck;
    return Date.now() - this.versionCheckedAt < VERSION_CHECK_MS;
  }
}

// One per app, keyed by its database client as the heartbeat writer is.
const caches = new WeakMap<Db, WorkerCredentialCache>();

function cacheFor(deps: WorkerCredentialDeps): WorkerCredentialCache {
  let cache = caches.get(deps.db);
  if (!cache) {
    cache = new WorkerCredentialCache(deps);
    caches.set(deps.db, cache);
  }
  return cache;
}

export function workerIdForCredential(deps: WorkerCredentialDeps, tokenHash: string): Promise<string | null> {
  return cacheFor(deps).workerIdFor(tokenHash);
}

/** Call after revoking a worker's credentials or removing it (committed): its credentials stop working everywhere. */
export async function forgetWorkerCredentials(deps: WorkerCredentialDeps, workerId: string): Promise<void> {
  const cache = cacheFor(deps);
  cache.forget(workerId);
  await cache.bumpVersion();
}

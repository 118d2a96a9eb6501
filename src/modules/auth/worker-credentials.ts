// Worker credentials are checked on every heartbeat, which is most of the API's traffic: tens of
// thousands of agents, one request each every CONVOY_WORKER_HEARTBEAT_SECONDS. Two things keep that
// check off the database:
//
// - Lookups that arrive together share one statement (measured: the pg socket write of each statement
//   costs the API more CPU than the rest of the lookup, so a query per request caps the whole process).
// - A credential found valid is remembered for CONVOY_WORKER_CREDENTIAL_CACHE_SECONDS (10 s by default,
//   0 turns it off; at most MAX_CACHED of them). It saves a lookup round trip (~5 ms of latency, not CPU:
//   measured, batched lookups cost the API about as little) only while heartbeats come more often than
//   that; at the default 30 s interval the batching is what counts.
//
// Revocation: whoever revokes a worker credential or removes a worker calls `forgetWorkerCredentials`
// after the change is committed. In this process that takes effect at once; other API processes notice
// within VERSION_CHECK_MS, because every cache compares a Redis version key it bumps at most that often
// (one GET per process per interval, not per request). Revocations that skip it (SQL by hand) still end
// within the TTL. Heartbeats need none of this to stop a removed worker: their UPDATE skips removed rows.
import type { Db } from '../../platform/db/client.js';
import type { Redis } from '../../platform/redis/connection.js';
import type { Config } from '../../config.js';
import { InFlightBatcher } from '../workers/batcher.js';

export type WorkerCredentialDeps = { db: Db; redis: Redis; config: Pick<Config, 'redisPrefix' | 'workers'> };

const MAX_CACHED = 100_000;
const MAX_LOOKUP_BATCH = 500;
const VERSION_CHECK_MS = 1000;
// Under load, lookups wait this long to share a statement (see InFlightBatcher); idle, one runs at once.
const LOOKUP_LINGER_MS = 5;

function versionKey(prefix: string): string {
  return `${prefix}:auth:worker-credentials-version`;
}

class WorkerCredentialCache {
  /** Worker id by credential hash. */
  private readonly entries = new Map<string, { workerId: string; until: number }>();
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
      if (entry && entry.until > Date.now()) return entry.workerId;
    }
    const epoch = this.epoch;
    const startedAt = Date.now();
    const workerId = await this.lookups.run(tokenHash);
    // Only valid credentials are cached: unknown tokens cannot fill the cache, and a fresh one works at once.
    if (workerId && this.ttlMs > 0 && epoch === this.epoch) {
      if (this.entries.size >= MAX_CACHED) this.entries.clear();
      this.entries.set(tokenHash, { workerId, until: startedAt + this.ttlMs });
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
   * changed version empties the cache. False when Redis cannot tell: then nothing cached is trusted.
   */
  private async versionIsCurrent(): Promise<boolean> {
    if (Date.now() - this.versionCheckedAt < VERSION_CHECK_MS) return true;
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

// The hot path: every worker sends one heartbeat every CONVOY_WORKER_HEARTBEAT_SECONDS. Heartbeats are
// written in batches (one UPDATE, one Redis script call, one publish per batch); notifications, events
// and audit only happen when something changes (status back to ONLINE, a resource crossing its threshold).
//
// A steady heartbeat (the worker is ONLINE or DRAINING, its agent process the same, its previous heartbeat
// recent, no resource newly over its alert threshold) changes nothing but the worker's last-seen time and metrics, so it is answered as soon as it is
// queued for the next batch, a few milliseconds before that batch commits. Measured on two shared cores,
// waiting for PostgreSQL and Redis put every scheduling hiccup of either into the heartbeat's latency: at
// 2,000 heartbeats/s the p99 went over 100 ms while the API itself was never blocked that long. Every
// other heartbeat (a worker this process has not written yet, a new agent session, a worker that may have
// been marked UNHEALTHY meanwhile, a new alert) waits for its write, its status-change notifications and alerts, as
// does every heartbeat while writes are backing up.
import type { Db } from '../../platform/db/client.js';
import type { Redis } from '../../platform/redis/connection.js';
import type { Worker, WorkerStatus } from '../../generated/prisma/client.js';
import type { Config } from '../../config.js';
import type { Logger } from '../../platform/logging/logger.js';
import type { ContainerStatsSample, ConvoyBus, WorkerHeartbeatEvent } from '../../events.js';
import { parseInput } from '../common/parse.js';
import { UnauthenticatedError } from '../common/errors.js';
import { heartbeatInput } from './validation.js';
import { InFlightBatcher } from './batcher.js';
import { writeHeartbeatMetrics, type HeartbeatSample, type NodeSample } from './metrics.js';
import { announceResourceExhaustion, announceStatusChanges, newlyExhausted, snapshotOf, type MetricsSnapshot, type Resource, type StatusChange } from './notify.js';

export type HeartbeatDeps = { db: Db; bus: ConvoyBus; redis: Redis; config: Config; log: Logger };

export type HeartbeatResult = { worker: Worker; nextHeartbeatInSeconds: number };

// Service ids are looked up again in the background after LIVE_SERVICE_REFRESH_MS, and waited for only
// once older than LIVE_SERVICE_CACHE_MS: at the default 30 s heartbeat interval a shorter life would make
// nearly every heartbeat wait for a query.
const LIVE_SERVICE_REFRESH_MS = 30_000;
const LIVE_SERVICE_CACHE_MS = 300_000;
const LIVE_SERVICE_CACHE_MAX = 100_000;
const KNOWN_WORKERS_MAX = 100_000;
const MAX_BATCH = 500;
const WRITER_CONCURRENCY = 2;
// Under load a batch waits this long for more heartbeats: measured, most of a small batch's cost is its
// statement and script round trips, so thousands a second need batches of tens, not of one or two.
const WRITER_LINGER_MS = 20;
// Past this many heartbeats waiting to be written, steady ones wait for their write too: a slow database
// slows the agents down instead of piling up unwritten heartbeats.
const MAX_UNCONFIRMED = MAX_BATCH * WRITER_CONCURRENCY;

/**
 * Which reported service ids belong to services that exist and are not deleted. Concurrent misses share
 * one query. A known id is answered from memory and refreshed in the background once older than
 * LIVE_SERVICE_REFRESH_MS, so a steady stream of heartbeats waits for no query and a service deleted
 * meanwhile stops collecting metrics within about that long.
 */
class LiveServiceCache {
  private readonly entries = new Map<string, { live: boolean; checkedAt: number }>();
  private readonly lookups: InFlightBatcher<string[], Set<string>>;
  private readonly refreshing = new Set<string>();

  constructor(
    db: Db,
    private readonly log: Logger,
  ) {
    this.lookups = new InFlightBatcher(async (requests) => {
      const ids = [...new Set(requests.flat())];
      const found = await db.service.findMany({ where: { id: { in: ids }, deletedAt: null }, select: { id: true } });
      const live = new Set(found.map((s) => s.id));
      return requests.map(() => live);
    });
  }

  async filter(ids: string[]): Promise<Set<string>> {
    const now = Date.now();
    const live = new Set<string>();
    const unknown: string[] = [];
    const stale: string[] = [];
    for (const id of new Set(ids)) {
      const entry = this.entries.get(id);
      if (!entry || now - entry.checkedAt > LIVE_SERVICE_CACHE_MS) {
        unknown.push(id);
        continue;
      }
      if (entry.live) live.add(id);
      if (now - entry.checkedAt > LIVE_SERVICE_REFRESH_MS && !this.refreshing.has(id)) stale.push(id);
    }
    if (stale.length) {
      for (const id of stale) this.refreshing.add(id);
      this.lookup(stale)
        .catch((error: unknown) => this.log.warn({ err: error }, 'could not refresh which services are live'))
        .finally(() => stale.forEach((id) => this.refreshing.delete(id)));
    }
    if (unknown.length === 0) return live;
    const found = await this.lookup(unknown);
    for (const id of unknown) if (found.has(id)) live.add(id);
    return live;
  }

  private async lookup(ids: string[]): Promise<Set<string>> {
    const checkedAt = Date.now();
    const found = await this.lookups.run(ids);
    if (this.entries.size > LIVE_SERVICE_CACHE_MAX) this.entries.clear();
    for (const id of ids) this.entries.set(id, { live: found.has(id), checkedAt });
    return found;
  }
}

type HeartbeatRow = Worker & { previousStatus: WorkerStatus; previousMetrics: Worker['lastMetrics'] };

type Heartbeat = HeartbeatSample & { snapshot: MetricsSnapshot; agentSession: string | null };

/**
 * Per app (keyed by its database client). Heartbeats that arrive while a batch is being written go into
 * the next one: an idle API writes each at once, a busy one hundreds per statement, which is what lets
 * one process keep up with thousands of workers. `known` holds the row each worker's last write returned:
 * what its next steady heartbeat is answered from.
 */
type HeartbeatState = { services: LiveServiceCache; writer: InFlightBatcher<Heartbeat, Worker | null>; known: Map<string, Worker> };
const states = new WeakMap<Db, HeartbeatState>();

function stateFor(deps: HeartbeatDeps): HeartbeatState {
  let state = states.get(deps.db);
  if (!state) {
    const known = new Map<string, Worker>();
    state = {
      services: new LiveServiceCache(deps.db, deps.log),
      // An UPDATE changes a row once, and two batches in flight could commit in either order: a worker's
      // next heartbeat waits until its previous one is written, so the last one sent is the one kept.
      // Two batches in flight keep PostgreSQL and Redis busy while the previous answers go out.
      writer: new InFlightBatcher((heartbeats) => writeBatch(deps, known, heartbeats), { maxItems: MAX_BATCH, keyOf: (h) => h.workerId, concurrency: WRITER_CONCURRENCY, lingerMs: WRITER_LINGER_MS }),
      known,
    };
    states.set(deps.db, state);
  }
  return state;
}

/**
 * Writes a batch of heartbeats, at most one per worker, with one UPDATE, one Redis script call and one
 * publish, then announces what changed (a worker back from UNHEALTHY or OFFLINE, a resource crossing its
 * threshold). A worker removed meanwhile gets null.
 */
async function writeBatch(deps: HeartbeatDeps, known: Map<string, Worker>, heartbeats: Heartbeat[]): Promise<(Worker | null)[]> {
  const values = heartbeats.map((h) => ({ id: h.workerId, at: h.snapshot.at, metrics: h.snapshot, session: h.agentSession }));
  const store = { redis: deps.redis, prefix: deps.config.redisPrefix, ttlSeconds: deps.config.workers.metricsTtlSeconds };
  let rows: HeartbeatRow[];
  try {
    // Metrics go to Redis while PostgreSQL works. The UPDATE returns each worker's status before it, so a
    // worker coming back is noticed without a transaction; rows are locked in id order, so concurrent
    // batches cannot deadlock each other. DRAINING stays DRAINING; only the health states recover.
    [rows] = await Promise.all([
      deps.db.$queryRaw<HeartbeatRow[]>`
        UPDATE "Worker" AS w
        SET "lastHeartbeatAt" = v."at", "lastMetrics" = v."metrics", "updatedAt" = v."at", "agentSession" = COALESCE(v."session", w."agentSession"),
            "status" = CASE WHEN previous."status" IN ('UNHEALTHY', 'OFFLINE') THEN 'ONLINE'::"WorkerStatus" ELSE previous."status" END
        FROM jsonb_to_recordset(${JSON.stringify(values)}::jsonb) AS v("id" text, "at" timestamp(3), "metrics" jsonb, "session" text),
          (SELECT "id", "status", "lastMetrics" FROM "Worker"
           WHERE "id" = ANY(${values.map((v) => v.id)}::text[]) AND "removedAt" IS NULL ORDER BY "id" FOR UPDATE) AS previous
        WHERE w."id" = previous."id" AND v."id" = w."id"
        RETURNING w.*, previous."status" AS "previousStatus", previous."lastMetrics" AS "previousMetrics"`,
      writeHeartbeatMetrics(store, heartbeats),
    ]);
  } catch (error) {
    // Said once per batch, not once per heartbeat. These workers' next heartbeats wait for their write,
    // so an agent hears about a failing database from its next heartbeat at the latest.
    for (const h of heartbeats) known.delete(h.workerId);
    deps.log.error({ err: error, heartbeats: heartbeats.length }, 'could not record heartbeats');
    throw error;
  }

  const byWorker = new Map(rows.map((row) => [row.id, row]));
  if (known.size > KNOWN_WORKERS_MAX) known.clear();
  const written: Heartbeat[] = [];
  const events: WorkerHeartbeatEvent[] = [];
  const changes: StatusChange[] = [];
  const alerts: [Worker, Resource[], MetricsSnapshot][] = [];
  const results = heartbeats.map((h) => {
    const row = byWorker.get(h.workerId);
    if (!row) {
      known.delete(h.workerId);
      return null;
    }
    const { previousStatus, previousMetrics, ...worker } = row;
    remember(known, worker, h.snapshot);
    written.push(h);
    events.push({ workerId: h.workerId, hostname: worker.hostname, status: worker.status, at: h.snapshot.at, ...h.node });
    if (previousStatus !== worker.status) changes.push({ worker, previousStatus, reason: 'heartbeats resumed' });
    const crossed = newlyExhausted(snapshotOf(previousMetrics), h.snapshot, deps.config.workers.alerts);
    if (crossed.length) alerts.push([worker, crossed, h.snapshot]);
    return worker;
  });

  try {
    await Promise.all([
      events.length ? deps.bus.publish('workerHeartbeats', 'all', { heartbeats: events }) : null,
      ...written.flatMap((h) => [...h.services].map(([serviceId, containers]) => deps.bus.publish('serviceMetrics', serviceId, { serviceId, at: h.snapshot.at, containers }))),
      changes.length ? announceStatusChanges(deps, changes) : null,
      ...alerts.map(([worker, resources, snapshot]) => announceResourceExhaustion(deps, worker, resources, snapshot)),
    ]);
  } catch (error) {
    // The heartbeats are recorded; a lost event or notification does not make them fail.
    deps.log.error({ err: error }, 'could not publish heartbeat events or notifications');
  }
  return results;
}

/**
 * Keeps the row a worker's write returned, for its next steady heartbeat. A worker already known keeps
 * its cached object and gets only the fields that changed (its last-seen times and metrics, as a rule):
 * the cache lives in the old generation, and replacing whole rows every heartbeat made every row's
 * strings and dates live long enough to be promoted there too.
 */
function remember(known: Map<string, Worker>, row: Worker, metrics: MetricsSnapshot): void {
  const cached = known.get(row.id);
  if (!cached) {
    known.set(row.id, { ...row, lastMetrics: metrics as unknown as Worker['lastMetrics'] });
    return;
  }
  const target = cached as Record<string, unknown>;
  for (const [key, value] of Object.entries(row)) {
    if (key !== 'lastMetrics' && !sameValue(target[key], value)) target[key] = value;
  }
  cached.lastMetrics = metrics as unknown as Worker['lastMetrics'];
}

/** Equal as column values: dates by time, JSON by content. */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => sameValue((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]));
}

/**
 * A heartbeat that changes nothing but the worker's last-seen time, metrics and session, and raises no
 * alert: judged against the row the worker's previous write returned.
 */
function isSteady(deps: HeartbeatDeps, worker: Worker | undefined, heartbeat: Heartbeat): worker is Worker {
  if (!worker || (worker.status !== 'ONLINE' && worker.status !== 'DRAINING')) return false;
  if (heartbeat.agentSession !== null && heartbeat.agentSession !== worker.agentSession) return false;
  // Silent long enough for the health sweep to have marked it UNHEALTHY: its recovery is announced first.
  const silentMs = heartbeat.at.getTime() - (worker.lastHeartbeatAt?.getTime() ?? 0);
  if (silentMs >= deps.config.workers.unhealthySeconds * 1000) return false;
  return newlyExhausted(snapshotOf(worker.lastMetrics), heartbeat.snapshot, deps.config.workers.alerts).length === 0;
}

export async function recordHeartbeat(deps: HeartbeatDeps, workerId: string, input: unknown): Promise<HeartbeatResult> {
  const parsed = parseInput(heartbeatInput, input);
  const at = new Date();
  const state = stateFor(deps);
  const reported = parsed.containers.flatMap((c) => (c.serviceId ? [c.serviceId] : []));
  const live = reported.length ? await state.services.filter(reported) : new Set<string>();
  const services = new Map<string, ContainerStatsSample[]>();
  for (const c of parsed.containers) {
    if (!c.serviceId || !live.has(c.serviceId)) continue;
    const sample = { containerId: c.containerId, taskId: c.taskId ?? null, cpuPercent: c.cpuPercent, memoryUsedMb: c.memoryUsedMb, networkRxBytes: c.networkRxBytes, networkTxBytes: c.networkTxBytes };
    const samples = services.get(c.serviceId);
    if (samples) samples.push(sample);
    else services.set(c.serviceId, [sample]);
  }
  const node: NodeSample = {
    cpuPercent: parsed.cpuPercent,
    memoryUsedMb: parsed.memoryUsedMb,
    memoryTotalMb: parsed.memoryTotalMb,
    diskUsedGb: parsed.diskUsedGb,
    diskTotalGb: parsed.diskTotalGb,
    load1: parsed.load1,
    containerCount: parsed.containers.length,
  };
  const snapshot: MetricsSnapshot = { at: at.toISOString(), ...node, serviceIds: [...services.keys()] };
  const heartbeat: Heartbeat = { workerId, at, node, services, snapshot, agentSession: parsed.agentSession ?? null };

  const known = state.known.get(workerId);
  const steady = isSteady(deps, known, heartbeat) && state.writer.queued < MAX_UNCONFIRMED;
  const written = state.writer.run(heartbeat);
  if (steady) {
    // writeBatch reports a failure once for the whole batch.
    written.catch(() => {});
    // What the UPDATE will make of the row: a steady heartbeat leaves the status as it is.
    const worker: Worker = { ...known, lastHeartbeatAt: at, lastMetrics: snapshot as unknown as Worker['lastMetrics'], updatedAt: at, agentSession: heartbeat.agentSession ?? known.agentSession };
    return { worker, nextHeartbeatInSeconds: deps.config.workers.heartbeatSeconds };
  }
  const worker = await written;
  // Removed between authentication and now.
  if (!worker) throw new UnauthenticatedError('Invalid worker credential');
  return { worker, nextHeartbeatInSeconds: deps.config.workers.heartbeatSeconds };
}

// The hot path: every worker sends one heartbeat every CONVOY_WORKER_HEARTBEAT_SECONDS. Heartbeats are
// written in batches (one UPDATE, one Redis script call, one publish per batch); notifications, events
// and audit only happen when something changes (status back to ONLINE, a resource crossing its threshold).
import type { Db } from '../../platform/db/client.js';
import type { Redis } from '../../platform/redis/connection.js';
import type { Worker, WorkerStatus } from '../../generated/prisma/client.js';
import type { Config } from '../../config.js';
import type { ContainerStatsSample, ConvoyBus, WorkerHeartbeatEvent } from '../../events.js';
import { parseInput } from '../common/parse.js';
import { UnauthenticatedError } from '../common/errors.js';
import { heartbeatInput } from './validation.js';
import { InFlightBatcher } from './batcher.js';
import { writeHeartbeatMetrics, type HeartbeatSample, type NodeSample } from './metrics.js';
import { announceResourceExhaustion, announceStatusChanges, exhaustedResources, snapshotOf, type MetricsSnapshot } from './notify.js';

export type HeartbeatDeps = { db: Db; bus: ConvoyBus; redis: Redis; config: Config };

export type HeartbeatResult = { worker: Worker; nextHeartbeatInSeconds: number };

const LIVE_SERVICE_CACHE_MS = 30_000;
const LIVE_SERVICE_CACHE_MAX = 100_000;
const MAX_BATCH = 500;
const WRITER_CONCURRENCY = 2;
// Under load a batch waits this long for more heartbeats: measured, most of a small batch's cost is its
// statement and script round trips, so thousands a second need batches of tens, not of one or two.
const WRITER_LINGER_MS = 5;

/**
 * Which reported service ids belong to services that exist and are not deleted. Answers are cached for
 * 30 s, so a steady stream of heartbeats costs no query at all (a service deleted meanwhile collects
 * metrics for at most that long), and concurrent misses share one query.
 */
class LiveServiceCache {
  private readonly entries = new Map<string, { live: boolean; until: number }>();
  private readonly lookups: InFlightBatcher<string[], Set<string>>;

  constructor(db: Db) {
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
    for (const id of new Set(ids)) {
      const entry = this.entries.get(id);
      if (entry && entry.until > now) {
        if (entry.live) live.add(id);
      } else unknown.push(id);
    }
    if (unknown.length === 0) return live;
    const found = await this.lookups.run(unknown);
    if (this.entries.size > LIVE_SERVICE_CACHE_MAX) this.entries.clear();
    for (const id of unknown) {
      this.entries.set(id, { live: found.has(id), until: now + LIVE_SERVICE_CACHE_MS });
      if (found.has(id)) live.add(id);
    }
    return live;
  }
}

type HeartbeatRow = Worker & { previousStatus: WorkerStatus; previousMetrics: Worker['lastMetrics'] };

type Heartbeat = HeartbeatSample & { snapshot: MetricsSnapshot; agentSession: string | null };

/**
 * Writes a batch of heartbeats, at most one per worker, with one UPDATE, one Redis script call and one
 * publish. A worker removed meanwhile gets null.
 */
async function writeBatch(deps: HeartbeatDeps, heartbeats: Heartbeat[]): Promise<(HeartbeatRow | null)[]> {
  const values = heartbeats.map((h) => ({ id: h.workerId, at: h.snapshot.at, metrics: h.snapshot, session: h.agentSession }));
  const store = { redis: deps.redis, prefix: deps.config.redisPrefix, ttlSeconds: deps.config.workers.metricsTtlSeconds };
  // Metrics go to Redis while PostgreSQL works. The UPDATE returns each worker's status before it, so a
  // worker coming back is noticed without a transaction; rows are locked in id order, so concurrent
  // batches cannot deadlock each other. DRAINING stays DRAINING; only the health states recover.
  const [rows] = await Promise.all([
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
  const byWorker = new Map(rows.map((row) => [row.id, row]));
  const written = heartbeats.filter((h) => byWorker.has(h.workerId));
  const events: WorkerHeartbeatEvent[] = written.map((h) => {
    const row = byWorker.get(h.workerId)!;
    return { workerId: h.workerId, hostname: row.hostname, status: row.status, at: h.snapshot.at, ...h.node };
  });
  await Promise.all([
    events.length ? deps.bus.publish('workerHeartbeats', 'all', { heartbeats: events }) : null,
    ...written.flatMap((h) => [...h.services].map(([serviceId, containers]) => deps.bus.publish('serviceMetrics', serviceId, { serviceId, at: h.snapshot.at, containers }))),
  ]);
  return heartbeats.map((h) => byWorker.get(h.workerId) ?? null);
}

/**
 * Per app (keyed by its database client). Heartbeats that arrive while a batch is being written go into
 * the next one: an idle API writes each at once, a busy one hundreds per statement, which is what lets
 * one process keep up with thousands of workers.
 */
type HeartbeatState = { services: LiveServiceCache; writer: InFlightBatcher<Heartbeat, HeartbeatRow | null> };
const states = new WeakMap<Db, HeartbeatState>();

function stateFor(deps: HeartbeatDeps): HeartbeatState {
  let state = states.get(deps.db);
  if (!state) {
    state = {
      services: new LiveServiceCache(deps.db),
      // An UPDATE changes a row once: a worker's second heartbeat waits for the next batch. Two batches
      // in flight keep PostgreSQL and Redis busy while the previous answers go out.
      writer: new InFlightBatcher((heartbeats) => writeBatch(deps, heartbeats), { maxItems: MAX_BATCH, keyOf: (h) => h.workerId, concurrency: WRITER_CONCURRENCY, lingerMs: WRITER_LINGER_MS }),
    };
    states.set(deps.db, state);
  }
  return state;
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

  const row = await state.writer.run({ workerId, at, node, services, snapshot, agentSession: parsed.agentSession ?? null });
  // Removed between authentication and now.
  if (!row) throw new UnauthenticatedError('Invalid worker credential');
  const { previousStatus, previousMetrics, ...worker } = row;

  if (previousStatus !== worker.status) {
    await announceStatusChanges(deps, [{ worker, previousStatus, reason: 'heartbeats resumed' }]);
  }
  const before = new Set(exhaustedResources(snapshotOf(previousMetrics), deps.config.workers.alerts));
  const crossed = exhaustedResources(snapshot, deps.config.workers.alerts).filter((r) => !before.has(r));
  if (crossed.length) await announceResourceExhaustion(deps, worker, crossed, snapshot);

  return { worker, nextHeartbeatInSeconds: deps.config.workers.heartbeatSeconds };
}

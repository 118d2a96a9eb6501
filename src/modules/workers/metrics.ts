// Metrics at 1-minute granularity in Redis: one hash per worker (and per service) per minute, expiring
// after CONVOY_METRICS_TTL_SECONDS. Heartbeats add to the hashes with one script call per batch; a
// range query reads its minutes back in one pipeline. Sums and sample counts are kept, so a point is
// the average of the minute's samples whatever the heartbeat interval.
import { createHash } from 'node:crypto';
import type { Redis } from '../../platform/redis/connection.js';
import type { ContainerStatsSample } from '../../events.js';

export type MetricsStore = { redis: Redis; prefix: string; ttlSeconds: number };

export type NodeSample = { cpuPercent: number; memoryUsedMb: number; memoryTotalMb: number; diskUsedGb: number; diskTotalGb: number; load1: number; containerCount: number };

export type WorkerMetricsPoint = NodeSample & { at: Date; samples: number };

/** A service's containers on every worker, each averaged over the minute, then summed. */
export type ServiceMetricsPoint = { at: Date; containerCount: number; cpuPercent: number; memoryUsedMb: number; networkRxBytes: number; networkTxBytes: number };

const MINUTE_MS = 60_000;

export function minuteOf(date: Date): number {
  return Math.floor(date.getTime() / MINUTE_MS);
}

function workerKey(store: MetricsStore, workerId: string, minute: number) {
  return `${store.prefix}:metrics:worker:${workerId}:${minute}`;
}

function serviceKey(store: MetricsStore, serviceId: string, minute: number) {
  return `${store.prefix}:metrics:service:${serviceId}:${minute}`;
}

// One script call for a batch of heartbeats, however many workers and containers it covers. Per
// heartbeat: the worker's hash, then each service's hash, all expiring after the TTL. KEYS: per
// heartbeat the worker's key, then one key per service. ARGV: the TTL, then per heartbeat the node's
// seven values and its number of services, and per service its container count and five values per
// container.
const WRITE_HEARTBEATS = `
local ttl = tonumber(ARGV[1])
local a, k = 2, 1
while a <= #ARGV do
  local w = KEYS[k]
  k = k + 1
  redis.call('HINCRBY', w, 'n', 1)
  redis.call('HINCRBYFLOAT', w, 'cpu', ARGV[a])
  redis.call('HINCRBYFLOAT', w, 'mem', ARGV[a + 1])
  redis.call('HINCRBYFLOAT', w, 'load', ARGV[a + 2])
  redis.call('HSET', w, 'memTotal', ARGV[a + 3], 'diskUsed', ARGV[a + 4], 'diskTotal', ARGV[a + 5], 'containers', ARGV[a + 6])
  redis.call('EXPIRE', w, ttl)
  local services = tonumber(ARGV[a + 7])
  a = a + 8
  for s = 1, services do
    local key = KEYS[k]
    k = k + 1
    local count = tonumber(ARGV[a])
    a = a + 1
    for c = 1, count do
      local id = ARGV[a]
      redis.call('HINCRBY', key, 'n:' .. id, 1)
      redis.call('HINCRBYFLOAT', key, 'cpu:' .. id, ARGV[a + 1])
      redis.call('HINCRBYFLOAT', key, 'mem:' .. id, ARGV[a + 2])
      -- Network counters are cumulative: the latest value is the one that counts.
      redis.call('HSET', key, 'rx:' .. id, ARGV[a + 3], 'tx:' .. id, ARGV[a + 4])
      a = a + 5
    end
    redis.call('EXPIRE', key, ttl)
  end
end
return 1`;
const WRITE_HEARTBEATS_SHA = createHash('sha1').update(WRITE_HEARTBEATS).digest('hex');

export type HeartbeatSample = { workerId: string; at: Date; node: NodeSample; services: Map<string, ContainerStatsSample[]> };

export async function writeHeartbeatMetrics(store: MetricsStore, heartbeats: HeartbeatSample[]): Promise<void> {
  if (heartbeats.length === 0) return;
  const keys: string[] = [];
  const args: (string | number)[] = [store.ttlSeconds];
  for (const { workerId, at, node, services } of heartbeats) {
    const minute = minuteOf(at);
    keys.push(workerKey(store, workerId, minute));
    args.push(node.cpuPercent, node.memoryUsedMb, node.load1, node.memoryTotalMb, node.diskUsedGb, node.diskTotalGb, node.containerCount, services.size);
    for (const [serviceId, containers] of services) {
      keys.push(serviceKey(store, serviceId, minute));
      args.push(containers.length);
      // Short ids keep the hash small; they are unique enough within one service.
      for (const c of containers) args.push(c.containerId.slice(0, 12), c.cpuPercent, c.memoryUsedMb, c.networkRxBytes, c.networkTxBytes);
    }
  }
  try {
    await store.redis.evalsha(WRITE_HEARTBEATS_SHA, keys.length, ...keys, ...args);
  } catch (error) {
    // The first call on a Redis that has not seen the script yet (or was restarted).
    if (!String((error as Error).message).startsWith('NOSCRIPT')) throw error;
    await store.redis.eval(WRITE_HEARTBEATS, keys.length, ...keys, ...args);
  }
}

function minutesBetween(from: Date, to: Date): number[] {
  const minutes: number[] = [];
  for (let m = minuteOf(from); m <= minuteOf(to); m++) minutes.push(m);
  return minutes;
}

async function readHashes(store: MetricsStore, keys: string[]): Promise<Record<string, string>[]> {
  if (keys.length === 0) return [];
  const pipeline = store.redis.pipeline();
  for (const key of keys) pipeline.hgetall(key);
  const results = (await pipeline.exec()) ?? [];
  return results.map(([error, value]) => {
    if (error) throw error;
    return value as Record<string, string>;
  });
}

const num = (value: string | undefined) => (value === undefined ? 0 : Number(value));

/** Minutes without a heartbeat are left out. */
export async function readWorkerMetrics(store: MetricsStore, workerId: string, from: Date, to: Date): Promise<WorkerMetricsPoint[]> {
  const minutes = minutesBetween(from, to);
  const hashes = await readHashes(store, minutes.map((m) => workerKey(store, workerId, m)));
  const points: WorkerMetricsPoint[] = [];
  hashes.forEach((h, i) => {
    const samples = num(h.n);
    if (!samples) return;
    points.push({
      at: new Date(minutes[i]! * MINUTE_MS),
      samples,
      cpuPercent: num(h.cpu) / samples,
      memoryUsedMb: num(h.mem) / samples,
      memoryTotalMb: num(h.memTotal),
      diskUsedGb: num(h.diskUsed),
      diskTotalGb: num(h.diskTotal),
      load1: num(h.load) / samples,
      containerCount: num(h.containers),
    });
  });
  return points;
}

export async function readServiceMetrics(store: MetricsStore, serviceId: string, from: Date, to: Date): Promise<ServiceMetricsPoint[]> {
  const minutes = minutesBetween(from, to);
  const hashes = await readHashes(store, minutes.map((m) => serviceKey(store, serviceId, m)));
  const points: ServiceMetricsPoint[] = [];
  hashes.forEach((h, i) => {
    const point: ServiceMetricsPoint = { at: new Date(minutes[i]! * MINUTE_MS), containerCount: 0, cpuPercent: 0, memoryUsedMb: 0, networkRxBytes: 0, networkTxBytes: 0 };
    for (const [field, value] of Object.entries(h)) {
      if (!field.startsWith('n:')) continue;
      const id = field.slice(2);
      const samples = Number(value);
      if (!samples) continue;
      point.containerCount += 1;
      point.cpuPercent += num(h[`cpu:${id}`]) / samples;
      point.memoryUsedMb += num(h[`mem:${id}`]) / samples;
      point.networkRxBytes += num(h[`rx:${id}`]);
      point.networkTxBytes += num(h[`tx:${id}`]);
    }
    if (point.containerCount > 0) points.push(point);
  });
  return points;
}

// What a heartbeat reports: the node's CPU, memory, load and disk from /proc and statfs, and the
// resource use of the Convoy task containers on the local Docker engine.
import { readFile, statfs } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import type Docker from 'dockerode';
import { boundedSignal, sleep } from './sleep.js';
import type { NodeMetricValues } from '../../src/shared/metrics.js';

/** The label every Convoy Swarm service (and so each of its task containers) carries. */
export const SERVICE_ID_LABEL = 'convoy.service-id';
const TASK_ID_LABEL = 'com.docker.swarm.task.id';

const MIN_CPU_WINDOW_MS = 250;
const MB = 1024 * 1024;
const GB = 1024 * MB;

export type CpuTimes = { busy: number; total: number };
export type MemoryInfo = { totalMb: number; usedMb: number };
export type DiskInfo = { totalGb: number; usedGb: number };

export type ContainerStats = {
  containerId: string;
  serviceId: string | null;
  taskId: string | null;
  cpuPercent: number;
  memoryUsedMb: number;
  networkRxBytes: number;
  networkTxBytes: number;
};

export type NodeMetrics = NodeMetricValues & { containers: ContainerStats[] };

export type NodeCapacity = { cpuCores: number; memoryMb: number; diskGb: number };

/** The aggregate "cpu" line of /proc/stat; iowait counts as idle, steal as busy (the CPU was not ours to use). */
export function parseProcStat(text: string): CpuTimes {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('/proc/stat has no aggregate cpu line');
  // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user/nice.
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
  const idleAll = idle + iowait;
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idleAll };
}

/** Busy share of all CPUs between two samples, 0..100. */
export function cpuPercentBetween(before: CpuTimes, after: CpuTimes): number {
  const total = after.total - before.total;
  if (total <= 0) return 0;
  return clampPercent(((after.busy - before.busy) / total) * 100);
}

export function parseMeminfo(text: string): MemoryInfo {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(\w+):\s+(\d+)\s*kB/.exec(line);
    if (match) values.set(match[1]!, Number(match[2]) * 1024);
  }
  const total = values.get('MemTotal');
  if (!total) throw new Error('/proc/meminfo has no MemTotal');
  // MemAvailable (kernel >= 3.14) accounts for reclaimable cache; the fallback is the classic estimate.
  const available = values.get('MemAvailable') ?? (values.get('MemFree') ?? 0) + (values.get('Buffers') ?? 0) + (values.get('Cached') ?? 0);
  return { totalMb: Math.round(total / MB), usedMb: Math.round(Math.max(0, total - available) / MB) };
}

export function parseLoadavg(text: string): number {
  const load1 = Number(text.trim().split(/\s+/)[0]);
  if (!Number.isFinite(load1)) throw new Error('/proc/loadavg is unreadable');
  return load1;
}

export async function readCpuTimes(): Promise<CpuTimes> {
  return parseProcStat(await readFile('/proc/stat', 'utf8'));
}

export async function readMemory(): Promise<MemoryInfo> {
  return parseMeminfo(await readFile('/proc/meminfo', 'utf8'));
}

export async function readLoad1(): Promise<number> {
  return parseLoadavg(await readFile('/proc/loadavg', 'utf8'));
}

/** Usage of the filesystem holding `path`, as `df` shows it (blocks reserved for root count as used). */
export async function readDisk(path: string): Promise<DiskInfo> {
  const fs = await statfs(path);
  const total = fs.blocks * fs.bsize;
  const used = (fs.blocks - fs.bfree) * fs.bsize;
  return { totalGb: round(total / GB, 3), usedGb: round(used / GB, 3) };
}

export async function readCapacity(diskPath: string): Promise<NodeCapacity> {
  const [memory, disk] = await Promise.all([readMemory(), readDisk(diskPath)]);
  return { cpuCores: availableParallelism(), memoryMb: memory.totalMb, diskGb: disk.totalGb };
}

/** CPU share of one container as `docker stats` computes it: 100 % is one full core. */
export function containerCpuPercent(stats: Pick<Docker.ContainerStats, 'cpu_stats' | 'precpu_stats'>): number {
  const cpu = stats.cpu_stats;
  const pre = stats.precpu_stats;
  if (!cpu?.cpu_usage || !pre?.cpu_usage || !pre.system_cpu_usage) return 0;
  const cpuDelta = cpu.cpu_usage.total_usage - pre.cpu_usage.total_usage;
  const systemDelta = cpu.system_cpu_usage - pre.system_cpu_usage;
  if (cpuDelta <= 0 || systemDelta <= 0) return 0;
  const cpus = cpu.online_cpus || cpu.cpu_usage.percpu_usage?.length || 1;
  return round((cpuDelta / systemDelta) * cpus * 100, 2);
}

/** Memory in use without the page cache the kernel can drop, as `docker stats` shows it (cgroup v1 and v2). */
export function containerMemoryMb(stats: Pick<Docker.ContainerStats, 'memory_stats'>): number {
  const memory = stats.memory_stats;
  if (!memory?.usage) return 0;
  const detail = (memory.stats ?? {}) as Record<string, number | undefined>;
  const cache = detail.total_inactive_file ?? detail.inactive_file ?? 0;
  return round(Math.max(0, cache < memory.usage ? memory.usage - cache : memory.usage) / MB, 2);
}

export function containerNetworkBytes(stats: Pick<Docker.ContainerStats, 'networks'>): { rx: number; tx: number } {
  let rx = 0;
  let tx = 0;
  for (const network of Object.values(stats.networks ?? {})) {
    rx += network.rx_bytes ?? 0;
    tx += network.tx_bytes ?? 0;
  }
  return { rx, tx };
}

export type ContainerStatsOptions = { timeoutMs: number; signal?: AbortSignal };

/**
 * Stats of every running container labelled as a Convoy task, fetched concurrently. A container that
 * does not answer within the time bound (or vanished meanwhile) is left out of this round rather than
 * holding up the heartbeat.
 */
export async function collectContainerStats(docker: Docker, options: ContainerStatsOptions): Promise<ContainerStats[]> {
  const bounded = boundedSignal(options.signal, options.timeoutMs);
  const signal = bounded.signal;
  try {
    const containers = await docker.listContainers({ filters: { label: [SERVICE_ID_LABEL], status: ['running'] }, abortSignal: signal } as Docker.ContainerListOptions);
    const results = await Promise.allSettled(containers.map((info) => oneContainerStats(docker, info, signal)));
    if (options.signal?.aborted) throw options.signal.reason;
    return results.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  } finally {
    bounded.dispose();
  }
}

async function oneContainerStats(docker: Docker, info: Docker.ContainerInfo, signal: AbortSignal): Promise<ContainerStats> {
  // stream=false waits for Docker's second sample (about a second), which fills precpu_stats.
  const stats = (await docker.getContainer(info.Id).stats({ stream: false, abortSignal: signal } as { stream: false })) as Docker.ContainerStats;
  const network = containerNetworkBytes(stats);
  return {
    containerId: info.Id,
    serviceId: info.Labels?.[SERVICE_ID_LABEL] || null,
    taskId: info.Labels?.[TASK_ID_LABEL] || null,
    cpuPercent: containerCpuPercent(stats),
    memoryUsedMb: containerMemoryMb(stats),
    networkRxBytes: network.rx,
    networkTxBytes: network.tx,
  };
}

export type MetricsCollectorOptions = {
  diskPath: string;
  /** Null when the node has no reachable Docker engine: node metrics are still reported. */
  docker: Docker | null;
  containerStatsTimeoutMs: number;
  /** Called when container stats could not be collected at all (the engine is down, say). */
  onContainerStatsError?: (error: unknown) => void;
};

/**
 * Keeps the previous /proc/stat sample, so CPU % covers the whole time between two heartbeats rather
 * than a short sleep; the first collection (or one right after another) samples twice, 250 ms apart.
 */
export class MetricsCollector {
  private previousCpu: (CpuTimes & { at: number }) | null = null;

  constructor(private readonly options: MetricsCollectorOptions) {}

  /** `containerStatsTimeoutMs` overrides the collector's bound for this call. */
  async collect(signal?: AbortSignal, containerStatsTimeoutMs = this.options.containerStatsTimeoutMs): Promise<NodeMetrics> {
    const { docker, diskPath } = this.options;
    const containers = docker
      ? collectContainerStats(docker, { timeoutMs: containerStatsTimeoutMs, signal }).catch((error: unknown) => {
          if (signal?.aborted) throw error;
          this.options.onContainerStatsError?.(error);
          return [];
        })
      : Promise.resolve([]);
    const [cpuPercent, memory, load1, disk, containerStats] = await Promise.all([this.cpuPercent(signal), readMemory(), readLoad1(), readDisk(diskPath), containers]);
    return {
      cpuPercent,
      memoryUsedMb: memory.usedMb,
      memoryTotalMb: memory.totalMb,
      diskUsedGb: disk.usedGb,
      diskTotalGb: disk.totalGb,
      load1,
      containers: containerStats,
    };
  }

  private async cpuPercent(signal?: AbortSignal): Promise<number> {
    let before = this.previousCpu;
    // A few jiffies apart, the share is mostly rounding noise: take a fresh pair instead.
    if (!before || performance.now() - before.at < MIN_CPU_WINDOW_MS) {
      before = { ...(await readCpuTimes()), at: performance.now() };
      await sleep(MIN_CPU_WINDOW_MS, signal);
    }
    const now = { ...(await readCpuTimes()), at: performance.now() };
    this.previousCpu = now;
    return round(cpuPercentBetween(before, now), 2);
  }
}

function clampPercent(value: number): number {
  return Math.min(100, Math.max(0, value));
}

function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

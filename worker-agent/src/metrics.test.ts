import { describe, expect, it } from 'vitest';
import { containerCpuPercent, containerMemoryMb, containerNetworkBytes, cpuPercentBetween, parseLoadavg, parseMeminfo, parseProcStat } from './metrics.js';
import { parseLabels } from './labels.js';
import { retryDelayMs } from './agent.js';

describe('node metrics parsing', () => {
  it('reads busy and total jiffies from the aggregate cpu line, iowait as idle', () => {
    const times = parseProcStat('cpu  100 10 50 800 40 5 5 0 0 0\ncpu0 50 5 25 400 20 2 3 0 0 0\n');
    expect(times).toEqual({ busy: 170, total: 1010 });
    expect(cpuPercentBetween({ busy: 100, total: 1000 }, { busy: 150, total: 1200 })).toBe(25);
    expect(cpuPercentBetween({ busy: 100, total: 1000 }, { busy: 100, total: 1000 })).toBe(0);
  });

  it('takes memory in use as total minus available', () => {
    const memory = parseMeminfo('MemTotal:       2048000 kB\nMemFree:         100000 kB\nMemAvailable:   1024000 kB\n');
    expect(memory).toEqual({ totalMb: 2000, usedMb: 1000 });
    expect(parseLoadavg('0.52 0.40 0.31 2/345 6789\n')).toBe(0.52);
  });
});

describe('container stats', () => {
  const cpu = (total: number, system: number) => ({ cpu_usage: { total_usage: total, percpu_usage: [], usage_in_usermode: 0, usage_in_kernelmode: 0 }, system_cpu_usage: system, online_cpus: 2, throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 } });

  it('computes CPU % like docker stats (100 % = one core)', () => {
    expect(containerCpuPercent({ cpu_stats: cpu(1_500, 10_000), precpu_stats: cpu(1_000, 9_000) })).toBe(100);
    expect(containerCpuPercent({ cpu_stats: cpu(1_000, 10_000), precpu_stats: cpu(0, 0) })).toBe(0);
  });

  it('leaves reclaimable page cache out of memory, sums networks', () => {
    const stats = { usage: 300 * 1024 * 1024, stats: { total_inactive_file: 100 * 1024 * 1024 } } as never;
    expect(containerMemoryMb({ memory_stats: stats })).toBe(200);
    expect(containerNetworkBytes({ networks: { eth0: { rx_bytes: 10, tx_bytes: 1 }, eth1: { rx_bytes: 5, tx_bytes: 2 } } as never })).toEqual({ rx: 15, tx: 3 });
  });
});

describe('settings', () => {
  it('parses CONVOY_AGENT_LABELS', () => {
    expect(parseLabels('zone=eu-1, disk = ssd,,')).toEqual({ ok: true, labels: { zone: 'eu-1', disk: 'ssd' } });
    expect(parseLabels('')).toEqual({ ok: true, labels: {} });
    expect(parseLabels('zone,=x,a=1,a=2')).toEqual({ ok: false, problems: ['"zone" is not key=value', '"=x" is not key=value', '"a" is given twice'] });
  });

  it('backs off exponentially up to the cap, with jitter', () => {
    for (let i = 0; i < 50; i++) {
      expect(retryDelayMs(1, 30_000)).toBeGreaterThanOrEqual(800);
      expect(retryDelayMs(1, 30_000)).toBeLessThanOrEqual(1200);
      expect(retryDelayMs(3, 30_000)).toBeGreaterThanOrEqual(3200);
      expect(retryDelayMs(20, 30_000)).toBeLessThanOrEqual(36_000);
      expect(retryDelayMs(20, 1000)).toBeLessThanOrEqual(1200);
    }
  });
});

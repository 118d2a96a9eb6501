// Loaded into the servers under load by bench/heartbeats.ts (node --import): appends one line per garbage
// collection (epoch ms at its start, kind, duration in ms) to BENCH_GC_LOG, so the bench can show the
// pauses of each step. Lines are written in batches, off the collections themselves.
import { appendFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';

const file = process.env.BENCH_GC_LOG;
if (file) {
  let lines: string[] = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      lines.push(`${(performance.timeOrigin + entry.startTime).toFixed(1)} ${(entry as PerformanceEntry & { detail: { kind: number } }).detail.kind} ${entry.duration.toFixed(2)}`);
    }
  }).observe({ entryTypes: ['gc'] });
  setInterval(() => {
    if (lines.length === 0) return;
    appendFileSync(file, lines.join('\n') + '\n');
    lines = [];
  }, 100).unref();
}

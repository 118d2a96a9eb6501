// Shared by the benches: medians, and per-phase breakdowns from timestamps ("marks") taken during a run.

export type Marks = Record<string, number | undefined>;
export type Phase = [label: string, from: string, to: string];

export function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export function fmt(ms: number): string {
  return `${Math.round(ms)} ms`;
}

function span(marks: Marks, from: string, to: string): string {
  const [a, b] = [marks[from], marks[to]];
  return a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b) ? '?' : fmt(b - a);
}

export function describeMarks(marks: Marks, phases: Phase[]): string {
  return phases.map(([label, from, to]) => `${label} ${span(marks, from, to)}`).join(', ');
}

export function describeMedians(runs: { marks: Marks }[], phases: Phase[]): string {
  return phases
    .map(([label, from, to]) => {
      const values = runs.map((r) => (r.marks[from] !== undefined && r.marks[to] !== undefined ? r.marks[to]! - r.marks[from]! : NaN)).filter((v) => !Number.isNaN(v));
      return `${label} ${values.length ? fmt(median(values)) : '?'}`;
    })
    .join(', ');
}

/**
 * Runs a bench, then its clean-up (also on Ctrl-C), and exits: 1 when either threw, else 0.
 * A missed target is printed by the bench, not an error.
 */
export async function runBench(main: () => Promise<void>, cleanUp: () => Promise<void>): Promise<never> {
  process.once('SIGINT', () => {
    console.error('interrupted: cleaning up');
    void cleanUp().finally(() => process.exit(130));
  });
  let exitCode = 0;
  for (const step of [main, cleanUp]) {
    try {
      await step();
    } catch (error) {
      console.error(error);
      exitCode = 1;
    }
  }
  process.exit(exitCode);
}

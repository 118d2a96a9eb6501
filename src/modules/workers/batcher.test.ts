import { describe, expect, it } from 'vitest';
import { InFlightBatcher } from './batcher.js';

describe('InFlightBatcher', () => {
  it('runs an item at once when idle and groups what arrives during a run', async () => {
    const runs: number[][] = [];
    const batcher = new InFlightBatcher<number, number>(async (items) => {
      runs.push(items);
      await new Promise((r) => setTimeout(r, 10));
      return items.map((n) => n * 2);
    });
    const first = batcher.run(1);
    const rest = [2, 3, 4].map((n) => batcher.run(n));
    expect(await Promise.all([first, ...rest])).toEqual([2, 4, 6, 8]);
    expect(runs).toEqual([[1], [2, 3, 4]]);
  });

  it('keeps items with the same key apart and runs at most maxItems together', async () => {
    const runs: string[][] = [];
    const batcher = new InFlightBatcher<string, string>(async (items) => {
      runs.push(items);
      await new Promise((r) => setTimeout(r, 5));
      return items;
    }, { maxItems: 2, keyOf: (item) => item[0]! });
    await Promise.all(['x0', 'a1', 'a2', 'b1', 'c1'].map((item) => batcher.run(item)));
    expect(runs).toEqual([['x0'], ['a1', 'b1'], ['a2', 'c1']]);
  });

  it('keeps up to `concurrency` runs in flight', async () => {
    const runs: number[][] = [];
    let inFlight = 0;
    let most = 0;
    const batcher = new InFlightBatcher<number, number>(async (items) => {
      runs.push(items);
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, 10));
      inFlight--;
      return items;
    }, { concurrency: 2 });
    await Promise.all([1, 2, 3, 4, 5].map((n) => batcher.run(n)));
    expect(most).toBe(2);
    expect(runs).toEqual([[1], [2], [3, 4, 5]]);
  });

  it('never has two items with the same key in flight at once, so the later one lands last', async () => {
    // Two writers of the same row racing: whichever commits last wins, so order has to come from here.
    const landed = new Map<string, string>();
    const runs: string[][] = [];
    const batcher = new InFlightBatcher<string, string>(async (items) => {
      runs.push(items);
      // The first run is the slow one: were 'a2' let into the free slot, it would land before 'a1'.
      await new Promise((r) => setTimeout(r, runs.length === 1 ? 40 : 5));
      for (const item of items) landed.set(item[0]!, item);
      return items;
    }, { concurrency: 2, keyOf: (item) => item[0]! });
    await Promise.all(['a1', 'a2', 'b1'].map((item) => batcher.run(item)));
    // The free slot goes to another key meanwhile.
    expect(runs).toEqual([['a1'], ['b1'], ['a2']]);
    expect(landed.get('a')).toBe('a2');
  });

  it('starts runs at least lingerMs apart, and an item at once after a quiet spell', async () => {
    const runs: number[][] = [];
    const batcher = new InFlightBatcher<number, number>(async (items) => {
      runs.push(items);
      await new Promise((r) => setTimeout(r, 50));
      return items;
    }, { concurrency: 2, lingerMs: 20 });
    const first = batcher.run(1);
    const second = batcher.run(2);
    // Still inside the second run's linger: it takes these too.
    await new Promise((r) => setTimeout(r, 5));
    const more = [3, 4].map((n) => batcher.run(n));
    await Promise.all([first, second, ...more]);
    expect(runs).toEqual([[1], [2, 3, 4]]);
    // Idle again: the next item runs at once, not after a timer.
    const fifth = batcher.run(5);
    await new Promise((r) => setImmediate(r));
    expect(runs.at(-1)).toEqual([5]);
    await fifth;
  });

  it('rejects every item of a failed run and keeps going', async () => {
    let calls = 0;
    const batcher = new InFlightBatcher<number, number>(async (items) => {
      calls++;
      if (calls === 1) throw new Error('boom');
      return items;
    });
    await expect(batcher.run(1)).rejects.toThrow('boom');
    expect(await batcher.run(2)).toBe(2);
  });
});

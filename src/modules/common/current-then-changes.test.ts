import { describe, expect, it } from 'vitest';
import { currentThenChanges, missedThenChanges } from './current-then-changes.js';

type E = { status: string; note?: string; id?: string };

/** A live stream like the event bus's: return() releases it, whether or not it was read. */
function fromList(events: E[], onReturn: () => void): AsyncIterableIterator<E> {
  const queue = [...events];
  const iterator: AsyncIterableIterator<E> = {
    next: async () => (queue.length ? { value: queue.shift()!, done: false } : { value: undefined, done: true }),
    return: async () => {
      onReturn();
      return { value: undefined, done: true };
    },
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}

async function collect(live: E[], current: E, isFinal = (s: string) => ['DONE', 'FAILED'].includes(s)) {
  let returned = false;
  const out: E[] = [];
  for await (const event of currentThenChanges(fromList(live, () => (returned = true)), current, { order: ['QUEUED', 'RUNNING'], isFinal })) out.push(event);
  return { out, returned };
}

describe('currentThenChanges', () => {
  it('sends the current state first and drops the live events it already covers', async () => {
    const { out } = await collect([{ status: 'QUEUED' }, { status: 'RUNNING' }, { status: 'DONE' }], { status: 'RUNNING', note: 'now' });
    expect(out).toEqual([{ status: 'RUNNING', note: 'now' }, { status: 'DONE' }]);
  });

  it('completes at once, and releases the live stream, when the current state is final', async () => {
    const { out, returned } = await collect([{ status: 'RUNNING' }], { status: 'FAILED' });
    expect(out).toEqual([{ status: 'FAILED' }]);
    expect(returned).toBe(true);
  });

  it('completes after a final live event, keeping repeats that come after a real change', async () => {
    const { out } = await collect([{ status: 'RUNNING', note: 'a' }, { status: 'QUEUED' }, { status: 'DONE' }, { status: 'RUNNING' }], { status: 'QUEUED' });
    expect(out.map((e) => e.status)).toEqual(['QUEUED', 'RUNNING', 'QUEUED', 'DONE']);
  });

  it('missedThenChanges: the missed events, then live ones; an event with an id is dropped exactly when the client has it', async () => {
    const missed = [{ status: 'RUNNING', id: 'b' }];
    const live = [{ status: 'QUEUED', id: 'a' }, { status: 'RUNNING', id: 'b' }, { status: 'RUNNING', note: 'no id' }, { status: 'RUNNING', id: 'c' }, { status: 'DONE', id: 'd' }];
    const out: E[] = [];
    const sent = new Set(['a', 'b']);
    for await (const event of missedThenChanges(fromList(live, () => {}), missed, 'RUNNING', { order: ['QUEUED', 'RUNNING'], isFinal: (s) => s === 'DONE', isAlreadySent: (e) => (e.id ? sent.has(e.id) : undefined) })) out.push(event);
    // 'a' and 'b' the client has; the id-less repeat falls to the status rule; 'c' is new though its status is not.
    expect(out).toEqual([{ status: 'RUNNING', id: 'b' }, { status: 'RUNNING', id: 'c' }, { status: 'DONE', id: 'd' }]);
  });

  it('missedThenChanges: nothing missed and a final status: completes at once', async () => {
    let returned = false;
    const out: E[] = [];
    for await (const event of missedThenChanges(fromList([{ status: 'DONE' }], () => (returned = true)), [], 'DONE', { order: [], isFinal: (s) => s === 'DONE' })) out.push(event);
    expect(out).toEqual([]);
    expect(returned).toBe(true);
  });
});

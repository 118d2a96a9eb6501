// Status subscriptions send the object's current state first, then its changes. A client subscribes
// after the mutation answered, and by then a build may already be RUNNING: without the current state
// it would never learn of that transition. The caller subscribes *before* reading the current state,
// so nothing falls between the two; events the snapshot already covers are dropped here.
import { releasingWith } from '../../platform/events/releasing.js';

export type CurrentThenChangesOptions<E> = {
  /** Statuses in lifecycle order; a status absent from the list counts as the last. */
  order: readonly string[];
  /** A final status: nothing follows it, so the subscription completes. */
  isFinal: (status: string) => boolean;
  /** Which live events report a status (the others always pass). Default: all. */
  isStatusEvent?: (event: E) => boolean;
};

export function currentThenChanges<E extends { status: string }>(live: AsyncIterableIterator<E>, current: E, options: CurrentThenChangesOptions<E>): AsyncIterableIterator<E> {
  return releasingWith(changesAfter(live, current, options), live);
}

async function* changesAfter<E extends { status: string }>(live: AsyncIterableIterator<E>, current: E, options: CurrentThenChangesOptions<E>): AsyncGenerator<E> {
  const rank = (status: string) => {
    const index = options.order.indexOf(status);
    return index < 0 ? options.order.length : index;
  };
  const isStatusEvent = options.isStatusEvent ?? (() => true);
  try {
    yield current;
    if (options.isFinal(current.status)) return;
    // Events published between the subscription and the read of `current` are already in it.
    let catchingUp = true;
    for await (const event of live) {
      if (catchingUp && isStatusEvent(event) && (event.status === current.status || rank(event.status) < rank(current.status))) continue;
      catchingUp = false;
      yield event;
      if (isStatusEvent(event) && options.isFinal(event.status)) return;
    }
  } finally {
    await live.return?.();
  }
}

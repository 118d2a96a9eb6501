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
  /**
   * Whether a live event is one the client already has, for events that carry an identity (a stored
   * event's id): exact, where the status rule can only guess. undefined: unknown, the status rule decides.
   */
  isAlreadySent?: (event: E) => boolean | undefined;
};

export function currentThenChanges<E extends { status: string }>(live: AsyncIterableIterator<E>, current: E, options: CurrentThenChangesOptions<E>): AsyncIterableIterator<E> {
  return releasingWith(changesAfter(live, [current], current.status, options), live);
}

/**
 * The same rule for a client that resumes after the last event it has: `missed`, the stored events
 * since (possibly none), replace the current state; `status` is where they leave the client (the
 * object's current status).
 */
export function missedThenChanges<E extends { status: string }>(live: AsyncIterableIterator<E>, missed: E[], status: string, options: CurrentThenChangesOptions<E>): AsyncIterableIterator<E> {
  return releasingWith(changesAfter(live, missed, status, options), live);
}

async function* changesAfter<E extends { status: string }>(live: AsyncIterableIterator<E>, first: E[], status: string, options: CurrentThenChangesOptions<E>): AsyncGenerator<E> {
  const rank = (s: string) => {
    const index = options.order.indexOf(s);
    return index < 0 ? options.order.length : index;
  };
  const isStatusEvent = options.isStatusEvent ?? (() => true);
  const isAlreadySent = options.isAlreadySent ?? (() => undefined);
  try {
    yield* first;
    if (options.isFinal(status)) return;
    // Events published between the subscription and the read of `first` are already in it.
    let catchingUp = true;
    for await (const event of live) {
      const known = isAlreadySent(event);
      if (known) continue;
      if (catchingUp && known === undefined && isStatusEvent(event) && (event.status === status || rank(event.status) < rank(status))) continue;
      catchingUp = false;
      yield event;
      if (isStatusEvent(event) && options.isFinal(event.status)) return;
    }
  } finally {
    await live.return?.();
  }
}

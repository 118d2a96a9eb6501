// Typed publish/subscribe. Redis carries events between processes so any API replica can serve any
// subscriber; an in-process fan-out keeps one Redis subscription per channel however many listen.
import type { Redis } from 'ioredis';
import { isRedisDown, withinRedisDeadline } from '../redis/connection.js';

export interface EventBus<Events extends Record<string, unknown>> {
  publish<T extends keyof Events & string>(topic: T, key: string, event: Events[T]): Promise<void>;
  /** Events published after the returned promise resolves; `return()` on the iterator unsubscribes. */
  subscribe<T extends keyof Events & string>(topic: T, key: string, options?: { signal?: AbortSignal }): Promise<AsyncIterableIterator<Events[T]>>;
  /** Number of live listeners; lets tests prove that closed subscriptions are released. */
  listenerCount(): number;
  close(): Promise<void>;
}

type Listener = (payload: unknown) => void;

// A slow subscriber must not grow memory without bound: beyond this, its oldest events are dropped.
const MAX_BUFFERED_EVENTS = 1000;
// How long a publish may hold up the mutation that made the change, while Redis does not answer.
const PUBLISH_WAIT_MS = 500;

export type PublishFailure = (error: unknown, channel: string) => void;

export class RedisEventBus<Events extends Record<string, unknown>> implements EventBus<Events> {
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly openIterators = new Set<() => void>();
  private closed = false;

  constructor(
    private readonly publisher: Redis,
    private readonly subscriber: Redis,
    private readonly prefix: string,
    /** A publish that Redis did not take: the event is dropped (subscribers read the current state when they reconnect). */
    private readonly onPublishFailed: PublishFailure = () => {},
  ) {
    subscriber.on('message', (channel: string, message: string) => {
      const set = this.listeners.get(channel);
      if (!set) return;
      const payload = JSON.parse(message) as unknown;
      for (const listener of set) listener(payload);
    });
  }

  private channel(topic: string, key: string): string {
    return `${this.prefix}:events:${topic}:${key}`;
  }

  async publish<T extends keyof Events & string>(topic: T, key: string, event: Events[T]): Promise<void> {
    // The change is already stored: a Redis that is down must not fail or stall what made it.
    const channel = this.channel(topic, key);
    try {
      if (isRedisDown(this.publisher)) throw new Error(`Redis connection is ${this.publisher.status}`);
      await withinRedisDeadline(this.publisher.publish(channel, JSON.stringify(event)), PUBLISH_WAIT_MS, 'publish');
    } catch (error) {
      this.onPublishFailed(error, channel);
    }
  }

  async subscribe<T extends keyof Events & string>(topic: T, key: string, options: { signal?: AbortSignal } = {}): Promise<AsyncIterableIterator<Events[T]>> {
    const channel = this.channel(topic, key);
    const queue: Events[T][] = [];
    let wake: (() => void) | undefined;
    let done = false;

    const listener: Listener = (payload) => {
      if (queue.length >= MAX_BUFFERED_EVENTS) queue.shift();
      queue.push(payload as Events[T]);
      wake?.();
    };
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
      await this.subscriber.subscribe(channel);
    }
    set.add(listener);

    const finish = () => {
      if (done) return;
      done = true;
      const current = this.listeners.get(channel);
      current?.delete(listener);
      if (current && current.size === 0) {
        this.listeners.delete(channel);
        if (!this.closed) void this.subscriber.unsubscribe(channel).catch(() => {});
      }
      this.openIterators.delete(finish);
      wake?.();
    };
    this.openIterators.add(finish);
    options.signal?.addEventListener('abort', finish, { once: true });

    const iterator: AsyncIterableIterator<Events[T]> = {
      next: async () => {
        while (!done && queue.length === 0) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        if (queue.length > 0) return { value: queue.shift()!, done: false };
        return { value: undefined, done: true };
      },
      return: async () => {
        finish();
        return { value: undefined, done: true };
      },
      throw: async (error?: unknown) => {
        finish();
        throw error;
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  listenerCount(): number {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const finish of [...this.openIterators]) finish();
    this.listeners.clear();
  }
}

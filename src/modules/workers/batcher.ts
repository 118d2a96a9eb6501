export type BatcherOptions<Item> = {
  maxItems?: number;
  /** Runs in flight at once (1 by default). */
  concurrency?: number;
  /**
   * Items with the same key never share a run, nor run while another with their key is in flight: the
   * later ones wait, so same-key items take effect in the order they arrived.
   */
  keyOf?: (item: Item) => string;
  /**
   * Runs start at least this far apart: a run that could start sooner after the previous one waits
   * (unless it is full), collecting what arrives meanwhile; after a quiet spell an item runs at once.
   * Under load runs then grow with the rate rather than with their own duration, so their fixed cost
   * (a statement, a round trip) is paid a few hundred times a second, not once per item.
   */
  lingerMs?: number;
};

/**
 * Runs `work` over everything queued, a few runs at a time: what arrives while they are in flight waits
 * for the next one. Idle, an item runs at once; busy, runs grow by themselves, so a burst of requests
 * costs a few statements rather than one each.
 */
export class InFlightBatcher<Item, Result> {
  private queue: { item: Item; resolve(result: Result): void; reject(error: unknown): void }[] = [];
  private active = 0;
  private lingering: ReturnType<typeof setTimeout> | null = null;
  private lastStartAt = -Infinity;
  private readonly keysInFlight = new Set<string>();

  /** `work` answers with one result per item, in order. */
  constructor(
    private readonly work: (items: Item[]) => Promise<Result[]>,
    private readonly options: BatcherOptions<Item> = {},
  ) {}

  /** Items waiting for a run (not those in flight). */
  get queued(): number {
    return this.queue.length;
  }

  run(item: Item): Promise<Result> {
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.pump();
    });
  }

  private takeRun() {
    const { maxItems = Infinity, keyOf } = this.options;
    const run: typeof this.queue = [];
    const rest: typeof this.queue = [];
    const keys = new Set<string>();
    for (const queued of this.queue) {
      const key = keyOf?.(queued.item);
      if (run.length >= maxItems || (key !== undefined && (keys.has(key) || this.keysInFlight.has(key)))) {
        rest.push(queued);
        continue;
      }
      if (key !== undefined) keys.add(key);
      run.push(queued);
    }
    this.queue = rest;
    for (const key of keys) this.keysInFlight.add(key);
    return { run, keys };
  }

  private pump() {
    const { concurrency = 1, lingerMs = 0, maxItems = Infinity } = this.options;
    while (this.active < concurrency && this.queue.length > 0) {
      const wait = this.lastStartAt + lingerMs - performance.now();
      if (wait > 0 && this.queue.length < maxItems) {
        this.lingering ??= setTimeout(() => {
          this.lingering = null;
          this.pump();
        }, wait);
        return;
      }
      if (this.lingering) {
        clearTimeout(this.lingering);
        this.lingering = null;
      }
      const { run, keys } = this.takeRun();
      // Everything waiting has a key in flight: the run that finishes will pump again.
      if (run.length === 0) return;
      this.lastStartAt = performance.now();
      this.active++;
      Promise.resolve()
        .then(() => this.work(run.map((queued) => queued.item)))
        .then(
          (results) => run.forEach((queued, i) => queued.resolve(results[i]!)),
          (error: unknown) => run.forEach((queued) => queued.reject(error)),
        )
        .finally(() => {
          for (const key of keys) this.keysInFlight.delete(key);
          this.active--;
          this.pump();
        });
    }
  }
}

export type BatcherOptions<Item> = {
  maxItems?: number;
  /** Runs in flight at once (1 by default). */
  concurrency?: number;
  /** Items with the same key never share a run: the later ones wait for the next. */
  keyOf?: (item: Item) => string;
};

/**
 * Runs `work` over everything queued, a few runs at a time: what arrives while they are in flight waits
 * for the next one. Idle, an item runs at once; busy, runs grow by themselves, so a burst of requests
 * costs a few statements rather than one each.
 */
export class InFlightBatcher<Item, Result> {
  private queue: { item: Item; resolve(result: Result): void; reject(error: unknown): void }[] = [];
  private active = 0;

  /** `work` answers with one result per item, in order. */
  constructor(
    private readonly work: (items: Item[]) => Promise<Result[]>,
    private readonly options: BatcherOptions<Item> = {},
  ) {}

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
      if (run.length >= maxItems || (key !== undefined && keys.has(key))) {
        rest.push(queued);
        continue;
      }
      if (key !== undefined) keys.add(key);
      run.push(queued);
    }
    this.queue = rest;
    return run;
  }

  private pump() {
    while (this.active < (this.options.concurrency ?? 1) && this.queue.length > 0) {
      const run = this.takeRun();
      this.active++;
      Promise.resolve()
        .then(() => this.work(run.map((queued) => queued.item)))
        .then(
          (results) => run.forEach((queued, i) => queued.resolve(results[i]!)),
          (error: unknown) => run.forEach((queued) => queued.reject(error)),
        )
        .finally(() => {
          this.active--;
          this.pump();
        });
    }
  }
}

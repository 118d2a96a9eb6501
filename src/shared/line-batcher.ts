// Log lines sent in batches, in order: a batch goes out when it is full or `flushMs` after its first
// line. Used for build logs, whether they are written by the controller or sent by an agent.

export type LineBatcherOptions = { flushMs: number; maxLines: number; maxLineLength?: number };

export class LineBatcher {
  private pending: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> = Promise.resolve();

  /** `send` gets each batch after the previous one settled; its failures are its own to handle. */
  constructor(
    private readonly send: (lines: string[]) => Promise<void>,
    private readonly options: LineBatcherOptions,
  ) {}

  /** A text with newlines is several lines. */
  line(text: string): void {
    for (const line of text.split('\n')) this.pending.push(this.options.maxLineLength ? line.slice(0, this.options.maxLineLength) : line);
    if (this.pending.length >= this.options.maxLines) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.options.flushMs);
  }

  /** Sends what is pending; resolves once every batch so far has been sent. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const lines = this.pending;
    this.pending = [];
    if (lines.length) this.sending = this.sending.then(() => this.send(lines));
    return this.sending;
  }
}

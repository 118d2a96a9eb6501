// A service's logs, read task by task. Docker 20.10's own service log endpoint (`/services/<id>/logs`)
// hangs for good once a few tasks have written a few thousand lines, while each task's endpoint
// (`/tasks/<id>/logs`) answers at once: so every task is read on its own, with a timeout on each call,
// and the lines are merged by time here.
//
// Frames with `timestamps` carry "<RFC3339Nano> <line>"; the task (hence its slot) is the one asked about.
import { readDockerFrames } from './docker-frames.js';
import { OrchestratorError, type LogLine, type ServiceLogsOptions, type TaskInfo, type TaskState } from './orchestrator.js';

/** Lines asked of each task the first time; a read that filters most of them out asks for more. */
const FIRST_READ_LINES = 200;
const READ_GROWTH = 4;
/** Tasks read at once: a service with a long history has many. */
const READ_CONCURRENCY = 6;
/** How often a follow looks for new tasks (a deploy, a restart), and how long it keeps reading an ended one. */
const FOLLOW_TASK_POLL_MS = 1000;
const ENDED_TASK_GRACE_MS = 2000;
/** Lines a resumed follow may scan back for the ones written between the tail read and the follow. */
const FOLLOW_RESUME_LINES = 1000;

type ParsedFrame = { timestamp: Date; nanos: bigint; line: string };

function parseTaskLogPayload(payload: Buffer): ParsedFrame | null {
  const text = payload.toString('utf8').replace(/\r?\n$/, '');
  const afterTimestamp = text.indexOf(' ');
  const nanos = parseNanos(afterTimestamp < 0 ? text : text.slice(0, afterTimestamp));
  if (nanos === null) return null;
  return { timestamp: new Date(Number(nanos / 1_000_000n)), nanos, line: afterTimestamp < 0 ? '' : text.slice(afterTimestamp + 1) };
}

/** Nanoseconds since the epoch: Docker's RFC3339Nano, which a Date (milliseconds) would round. */
function parseNanos(timestamp: string): bigint | null {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(timestamp);
  if (!match) return null;
  const seconds = Date.parse(`${match[1]}${match[3]}`);
  if (Number.isNaN(seconds)) return null;
  return BigInt(seconds) * 1_000_000n + BigInt((match[2] ?? '').padEnd(9, '0'));
}

const ENDED_STATES: ReadonlySet<TaskState> = new Set(['complete', 'shutdown', 'failed', 'rejected', 'remove', 'orphaned']);
/** A task that stopped by itself (a crash, an exit): its last lines belong to the deployment's story. */
const EXITED_STATES: ReadonlySet<TaskState> = new Set(['complete', 'failed']);

/**
 * The tasks whose lines a log read covers. With a time range: every task alive at some point in it. Without:
 * the tasks meant to run now and the current deployment's tasks that exited by themselves (crashes); not the
 * tasks Swarm shut down (replaced by a redeploy or a restart, removed by a scale-down).
 */
export function selectLogTasks(tasks: TaskInfo[], currentDeploymentId: string | null, range: { since?: Date; until?: Date }): TaskInfo[] {
  if (range.since || range.until) {
    return tasks.filter((task) => {
      if (range.until && task.createdAt > range.until) return false;
      return !range.since || !ENDED_STATES.has(task.state) || task.stateChangedAt >= range.since;
    });
  }
  return tasks.filter(
    (task) => task.desiredState === 'running' || (currentDeploymentId !== null && task.deploymentId === currentDeploymentId && EXITED_STATES.has(task.state)),
  );
}

/** What the task-by-task reader needs of the engine. */
export type TaskLogSource = {
  listTasks(): Promise<TaskInfo[]>;
  /** DEPLOYMENT_LABEL of the spec Swarm converges to. */
  currentDeploymentId(): Promise<string | null>;
  /** One task's multiplexed log stream, with timestamps; ends unless following. */
  openTaskLogs(taskId: string, options: { follow: boolean; tail?: number; since?: bigint; signal: AbortSignal }): Promise<AsyncIterable<Buffer> | Iterable<Buffer>>;
};

type TimedLine = LogLine & { nanos: bigint };

/**
 * Reads or follows a service's logs task by task. Stopping (the signal, or the consumer's return()) aborts
 * every request at once, even while no line is coming: return() does not wait for the next line.
 */
export function serviceLogsByTask(source: TaskLogSource, options: ServiceLogsOptions): AsyncIterable<LogLine> {
  return {
    [Symbol.asyncIterator]() {
      const requests = new AbortController();
      const lines = generateLines(source, options, requests);
      return {
        next: () => lines.next(),
        return: async (value?: unknown) => {
          requests.abort();
          return lines.return(value as undefined);
        },
        [Symbol.asyncIterator]() {
          return this;
        },
      };
    },
  };
}

async function* generateLines(source: TaskLogSource, options: ServiceLogsOptions, requests: AbortController): AsyncGenerator<LogLine, undefined> {
  if (options.signal?.aborted) return;
  const abortRequests = () => requests.abort();
  options.signal?.addEventListener('abort', abortRequests, { once: true });
  try {
    const [tasks, currentDeploymentId] = await Promise.all([source.listTasks(), source.currentDeploymentId()]);
    const selected = selectLogTasks(tasks, currentDeploymentId, options);
    if (!options.follow) {
      for (const line of (await readTail(source, selected, options, requests.signal)).lines) yield withoutNanos(line);
      return;
    }
    yield* follow(source, tasks, options, requests.signal, await readTail(source, selected, options, requests.signal));
  } catch (error) {
    if (requests.signal.aborted) return;
    throw error;
  } finally {
    options.signal?.removeEventListener('abort', abortRequests);
    requests.abort();
  }
}

function withoutNanos({ nanos: _nanos, ...line }: TimedLine): LogLine {
  return line;
}

/**
 * The last `tail` wanted lines over all the tasks (everything when tail is undefined), oldest first; and for
 * each task the newest line it had when read (wanted or not), where following resumes.
 */
async function readTail(source: TaskLogSource, tasks: TaskInfo[], options: ServiceLogsOptions, signal: AbortSignal): Promise<{ lines: TimedLine[]; newest: Map<string, bigint> }> {
  const newest = new Map<string, bigint>();
  if (options.tail === 0) return { lines: [], newest };
  const perTask = await mapWithConcurrency(tasks, READ_CONCURRENCY, async (task) => {
    const read = await readTaskTail(source, task, options, signal);
    if (read.newest !== null) newest.set(task.id, read.newest);
    return read.lines;
  });
  const merged = perTask.flat().sort((a, b) => (a.nanos < b.nanos ? -1 : a.nanos > b.nanos ? 1 : 0));
  return { lines: options.tail === undefined ? merged : merged.slice(-options.tail), newest };
}

/** Asks for a few more lines than wanted, and for more again only when filtering left too few. */
async function readTaskTail(source: TaskLogSource, task: TaskInfo, options: ServiceLogsOptions, signal: AbortSignal): Promise<{ lines: TimedLine[]; newest: bigint | null }> {
  const since = options.since ? BigInt(options.since.getTime()) * 1_000_000n : undefined;
  for (let asked = options.tail === undefined ? undefined : Math.max(options.tail, FIRST_READ_LINES); ; asked = asked! * READ_GROWTH) {
    let received = 0;
    let newest: bigint | null = null;
    const lines: TimedLine[] = [];
    for await (const frame of readDockerFrames(await source.openTaskLogs(task.id, { follow: false, tail: asked, since, signal }))) {
      const line = toLogLine(frame, task);
      if (!line) continue;
      received++;
      if (newest === null || line.nanos > newest) newest = line.nanos;
      if (wanted(line, options)) lines.push(line);
    }
    const wholeLog = asked === undefined || received < asked;
    if (wholeLog || options.tail === undefined || lines.length >= options.tail) {
      return { lines: options.tail === undefined ? lines : lines.slice(-options.tail), newest };
    }
  }
}

function wanted(line: LogLine, options: ServiceLogsOptions): boolean {
  if (options.since && line.timestamp < options.since) return false;
  if (options.until && line.timestamp > options.until) return false;
  return !options.filter || options.filter(line);
}

function toLogLine(frame: { stream: string; payload: Buffer }, task: TaskInfo): TimedLine | null {
  if (frame.stream === 'stdin') return null;
  const parsed = parseTaskLogPayload(frame.payload);
  if (!parsed) return null;
  return { timestamp: parsed.timestamp, nanos: parsed.nanos, stream: frame.stream as LogLine['stream'], taskId: task.id, replica: task.slot, line: parsed.line };
}

/**
 * The last `tail` lines, then every new line of every task meant to run, including tasks that start later
 * (a deploy, a restart). Each task is followed from the newest line the tail read saw of it.
 */
async function* follow(source: TaskLogSource, tasksAtStart: TaskInfo[], options: ServiceLogsOptions, signal: AbortSignal, backlog: Awaited<ReturnType<typeof readTail>>): AsyncGenerator<LogLine> {
  const queue = new LineQueue(signal);
  const followed = new Map<string, AbortController>();
  const ending = new Set<string>();
  const retryFrom = new Map<string, { tail?: number; after?: bigint }>();
  const since = options.since ? BigInt(options.since.getTime()) * 1_000_000n : undefined;
  const startFollowing = (task: TaskInfo, from: { tail?: number; after?: bigint }) => {
    const controller = new AbortController();
    followed.set(task.id, controller);
    const taskSignal = AbortSignal.any([signal, controller.signal]);
    void (async () => {
      let opened = false;
      try {
        const stream = await source.openTaskLogs(task.id, { follow: true, tail: from.tail, since: from.after ?? since, signal: taskSignal });
        opened = true;
        for await (const frame of readDockerFrames(stream)) {
          const line = toLogLine(frame, task);
          if (!line || (from.after !== undefined && line.nanos <= from.after)) continue;
          if (wanted(line, options)) queue.push(withoutNanos(line));
        }
      } catch (error) {
        if (taskSignal.aborted) return;
        // A task Swarm has just forgotten has nothing more to say; anything else ends the follow.
        if (error instanceof OrchestratorError && error.code === 'NOT_FOUND') return;
        // No answer yet (a task still starting, a busy engine): the next look at the tasks tries again.
        if (!opened && error instanceof OrchestratorError && error.code === 'UNAVAILABLE') {
          followed.delete(task.id);
          retryFrom.set(task.id, from);
          return;
        }
        queue.fail(error);
      }
    })();
  };

  const isLive = (task: TaskInfo) => task.desiredState === 'running' && !ENDED_STATES.has(task.state);
  for (const task of tasksAtStart) {
    if (!isLive(task)) {
      followed.set(task.id, new AbortController()); // ended before the follow began: its tail was read
      continue;
    }
    const after = backlog.newest.get(task.id);
    // tail 0: nothing from before. Otherwise what came after the newest line the tail read saw (Docker applies
    // `tail` before `since`: the tail only bounds how much of the log it scans).
    if (options.tail === 0) startFollowing(task, { tail: 0 });
    else startFollowing(task, after === undefined ? {} : { after, tail: FOLLOW_RESUME_LINES });
  }

  // The followers are open (and queue what comes) while the tail is handed over.
  for (const line of backlog.lines) yield withoutNanos(line);

  const watcher = (async () => {
    while (!signal.aborted) {
      await sleepUnlessAborted(FOLLOW_TASK_POLL_MS, signal);
      if (signal.aborted) return;
      const tasks = await source.listTasks();
      const known = new Set(tasks.map((task) => task.id));
      for (const task of tasks) if (!followed.has(task.id) && isLive(task)) startFollowing(task, retryFrom.get(task.id) ?? {});
      for (const [taskId, controller] of followed) {
        const task = tasks.find((t) => t.id === taskId);
        // Docker keeps a finished task's follow open: let its last lines arrive, then close it.
        if (!ending.has(taskId) && (!known.has(taskId) || (task && ENDED_STATES.has(task.state)))) {
          ending.add(taskId);
          setTimeout(() => controller.abort(), ENDED_TASK_GRACE_MS).unref();
        }
      }
    }
  })().catch((error) => {
    if (!signal.aborted) queue.fail(error);
  });

  try {
    yield* queue.drain();
  } finally {
    for (const controller of followed.values()) controller.abort();
    // The watcher ends by itself once the caller's finally aborts the signal.
    void watcher;
  }
}

function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}

/** Lines pushed by many followers, pulled by one consumer; ends when the signal aborts. */
class LineQueue {
  private readonly lines: LogLine[] = [];
  private failure: { error: unknown } | null = null;
  private wake: (() => void) | null = null;

  constructor(private readonly signal: AbortSignal) {
    signal.addEventListener('abort', () => this.notify(), { once: true });
  }

  push(line: LogLine) {
    this.lines.push(line);
    this.notify();
  }

  fail(error: unknown) {
    this.failure ??= { error };
    this.notify();
  }

  async *drain(): AsyncGenerator<LogLine> {
    for (;;) {
      while (this.lines.length) yield this.lines.shift()!;
      if (this.failure) throw this.failure.error;
      if (this.signal.aborted) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private notify() {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}

async function mapWithConcurrency<T, R>(items: T[], concurrency: number, map: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await map(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}

/** Docker's `since`: seconds, with nanoseconds after the point. */
export function dockerSince(nanos: bigint): string {
  return `${nanos / 1_000_000_000n}.${String(nanos % 1_000_000_000n).padStart(9, '0')}`;
}

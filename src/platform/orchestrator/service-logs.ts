// Service log frames with `timestamps` and `details` carry "<RFC3339Nano> <k=v,k=v,...> <line>": the details
// name the node, service and task (API 1.41 sends no slot, so slots come from the task list).
import type { TaskInfo } from './orchestrator.js';

const TASK_ID_DETAIL = 'com.docker.swarm.task.id';

export type ParsedLogPayload = { timestamp: Date; taskId: string; line: string };

export function parseServiceLogPayload(payload: Buffer): ParsedLogPayload | null {
  const text = payload.toString('utf8').replace(/\r?\n$/, '');
  const afterTimestamp = text.indexOf(' ');
  if (afterTimestamp < 0) return null;
  const afterDetails = text.indexOf(' ', afterTimestamp + 1);
  const details = text.slice(afterTimestamp + 1, afterDetails < 0 ? undefined : afterDetails);
  const taskId = parseDetails(details)[TASK_ID_DETAIL];
  if (!taskId) return null;
  return {
    timestamp: new Date(text.slice(0, afterTimestamp)),
    taskId,
    line: afterDetails < 0 ? '' : text.slice(afterDetails + 1),
  };
}

function parseDetails(details: string): Record<string, string> {
  const entries = details.split(',').map((pair) => {
    const separator = pair.indexOf('=');
    return [queryUnescape(pair.slice(0, separator)), queryUnescape(pair.slice(separator + 1))];
  });
  return Object.fromEntries(entries);
}

/** The engine escapes detail keys and values with Go's url.QueryEscape ('+' for space). */
function queryUnescape(text: string): string {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    return text;
  }
}

/** Caches task slots; lists the tasks again only when a log line names a task it has not seen. */
export class TaskSlotLookup {
  private readonly slots = new Map<string, number | null>();

  constructor(private readonly listTasks: () => Promise<TaskInfo[]>) {}

  async slotOf(taskId: string): Promise<number | null> {
    if (!this.slots.has(taskId)) {
      for (const task of await this.listTasks()) this.slots.set(task.id, task.slot);
      // Tasks pruned from Swarm's history stay unknown; remember that instead of asking again.
      if (!this.slots.has(taskId)) this.slots.set(taskId, null);
    }
    return this.slots.get(taskId) ?? null;
  }
}

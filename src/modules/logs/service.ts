// Runtime logs of a service's Swarm tasks: followed live, or read for a time range and downloaded.
import type { Db } from '../../platform/db/client.js';
import type { LogLine, Orchestrator } from '../../platform/orchestrator/index.js';
import { ValidationError } from '../common/errors.js';
import type { Actor } from '../auth/caller.js';
import { getService } from '../services/service.js';
import { swarmServiceName } from '../deployments/spec.js';

export type LogDeps = { db: Db; orchestrator: Orchestrator };
export type LogQuery = { since?: Date | null; until?: Date | null; search?: string | null; tail?: number | null; limit?: number | null };
export type LogEntry = { timestamp: Date; stream: 'stdout' | 'stderr'; taskId: string; replica: number | null; line: string };

const MAX_LINES = 10_000;

function checkQuery(query: LogQuery) {
  if (query.search && query.search.length > 200) throw ValidationError.single(['search'], 'must be at most 200 characters');
  if (query.tail != null && (query.tail < 0 || query.tail > MAX_LINES)) throw ValidationError.single(['tail'], `must be between 0 and ${MAX_LINES}`);
  if (query.limit != null && (query.limit < 1 || query.limit > MAX_LINES)) throw ValidationError.single(['limit'], `must be between 1 and ${MAX_LINES}`);
  if (query.since && query.until && query.since > query.until) throw ValidationError.single(['since'], 'must be before until');
}

function searchFilter(query: LogQuery): ((line: LogLine) => boolean) | undefined {
  const search = query.search?.toLowerCase();
  return search ? (line) => line.line.toLowerCase().includes(search) : undefined;
}

/** Resolves the service first: another organization's service is not found, and no log is opened. */
async function swarmIdFor(deps: LogDeps, actor: Actor, serviceId: string): Promise<string | null> {
  const service = await getService(deps, actor, serviceId);
  const swarm = await deps.orchestrator.findServiceByName(swarmServiceName(service.id));
  return swarm?.id ?? null;
}

/**
 * The last `tail` lines of the service (of the tasks meant to run now, and of the current deployment's
 * tasks that exited by themselves; with `since`, of every task alive since then), then new lines as they
 * come. Stopping the iteration (or the signal) closes every Docker request.
 */
export async function followServiceLogs(deps: LogDeps, actor: Actor, serviceId: string, query: LogQuery, signal?: AbortSignal): Promise<AsyncIterable<LogEntry>> {
  checkQuery(query);
  const swarmId = await swarmIdFor(deps, actor, serviceId);
  if (!swarmId) return (async function* () {})();
  return deps.orchestrator.serviceLogs(swarmId, { follow: true, since: query.since ?? undefined, tail: query.tail ?? 100, filter: searchFilter(query), signal });
}

/**
 * The newest `limit` lines in the range (of the tasks `followServiceLogs` would tail, or with a range of
 * every task alive in it), oldest first. The signal (the client going away) cancels the Docker requests.
 */
export async function readServiceLogs(deps: LogDeps, actor: Actor, serviceId: string, query: LogQuery, signal?: AbortSignal): Promise<LogEntry[]> {
  checkQuery(query);
  const swarmId = await swarmIdFor(deps, actor, serviceId);
  if (!swarmId) return [];
  const limit = Math.min(query.limit ?? 1000, query.tail ?? Infinity);
  const result: LogEntry[] = [];
  const lines = deps.orchestrator.serviceLogs(swarmId, {
    follow: false,
    since: query.since ?? undefined,
    until: query.until ?? undefined,
    tail: limit,
    filter: searchFilter(query),
    signal,
  });
  for await (const line of lines) result.push(line);
  return result;
}

export type LogFormat = 'text' | 'json' | 'csv';

function csvField(value: string): string {
  return /[",\n\r]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

export function formatLogs(entries: LogEntry[], format: LogFormat): string {
  if (format === 'json') return entries.map((e) => JSON.stringify({ timestamp: e.timestamp.toISOString(), stream: e.stream, taskId: e.taskId, replica: e.replica, line: e.line })).join('\n') + (entries.length ? '\n' : '');
  if (format === 'csv') {
    const rows = entries.map((e) => [e.timestamp.toISOString(), e.stream, e.taskId, e.replica ?? '', e.line].map((v) => csvField(String(v))).join(','));
    return ['timestamp,stream,task_id,replica,line', ...rows].join('\n') + '\n';
  }
  return entries.map((e) => `${e.timestamp.toISOString()} replica=${e.replica ?? '?'} task=${e.taskId} ${e.stream}: ${e.line}`).join('\n') + (entries.length ? '\n' : '');
}

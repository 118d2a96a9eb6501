// Which tasks a log read covers: the tail of a service is its running tasks' (and its current deployment's
// crashes), not the tasks Swarm shut down; a time range reaches every task alive in it.
import { describe, expect, it } from 'vitest';
import type { TaskInfo, TaskState } from './orchestrator.js';
import { selectLogTasks } from './service-logs.js';

const at = (minute: number) => new Date(Date.UTC(2026, 11, 1, 12, minute));

function task(id: string, deploymentId: string, desiredState: TaskState, state: TaskState, createdMinute: number, changedMinute: number): TaskInfo {
  return { id, slot: 1, nodeId: 'n1', desiredState, state, message: '', error: null, containerId: `c-${id}`, deploymentId, createdAt: at(createdMinute), stateChangedAt: at(changedMinute) };
}

const tasks = [
  task('replaced', 'dep-1', 'shutdown', 'shutdown', 0, 10), // replaced by the redeploy at minute 10
  task('scaled-away', 'dep-2', 'shutdown', 'shutdown', 10, 20), // removed by a scale-down at minute 20
  task('crashed', 'dep-2', 'shutdown', 'failed', 10, 15), // exited by itself, restarted
  task('running', 'dep-2', 'running', 'running', 15, 15),
];
const ids = (selected: TaskInfo[]) => selected.map((t) => t.id);

describe('selectLogTasks', () => {
  it('without a range: the running tasks and the current deployment’s crashes, not the ones Swarm shut down', () => {
    expect(ids(selectLogTasks(tasks, 'dep-2', {}))).toEqual(['crashed', 'running']);
    // An older deployment's crash is history: only a range reaches it.
    expect(ids(selectLogTasks(tasks, 'dep-3', {}))).toEqual(['running']);
  });

  it('with a range: every task alive at some point in it', () => {
    expect(ids(selectLogTasks(tasks, 'dep-2', { since: at(12) }))).toEqual(['scaled-away', 'crashed', 'running']);
    expect(ids(selectLogTasks(tasks, 'dep-2', { since: at(0), until: at(5) }))).toEqual(['replaced']);
    expect(ids(selectLogTasks(tasks, 'dep-2', { until: at(12) }))).toEqual(['replaced', 'scaled-away', 'crashed']);
  });
});

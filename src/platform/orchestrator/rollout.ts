// Decides, from successive snapshots of a service and its tasks, whether a deployment has rolled out.
// Kept free of I/O so the rules read in one place; SwarmOrchestrator.waitForRollout feeds it snapshots.
import type { ObservedService, ObservedTask } from './docker-spec.js';
import type { RolloutProgress, RolloutResult, TaskState } from './orchestrator.js';

export type RolloutCriteria = { deploymentId: string; desiredReplicas: number; failedTaskLimit: number };

const TERMINAL_STATES: ReadonlySet<TaskState> = new Set(['complete', 'shutdown', 'failed', 'rejected', 'remove', 'orphaned']);
const FAILED_STATES: ReadonlySet<TaskState> = new Set(['failed', 'rejected']);
const TASK_ID_IN_MESSAGE = /\btask ([a-z0-9]{25})\b/;

type Snapshot = { service: ObservedService; tasks: ObservedTask[] };

export class RolloutTracker {
  // Swarm replaces the "rolled back due to failure of task X" message with "rollback completed" once
  // the rollback ends: keep the first one, it is the reason a user needs.
  private rollbackCause: string | null = null;
  private lastProgressKey = '';
  private last: Snapshot | null = null;

  constructor(private readonly criteria: RolloutCriteria) {}

  /** Returns the outcome once decided, or null while the rollout is still in progress. */
  observe(service: ObservedService, tasks: ObservedTask[]): RolloutResult | null {
    this.last = { service, tasks };
    if (service.updateStatus?.state === 'rollback_started') this.rollbackCause ??= service.updateStatus.message;
    if (service.deploymentLabel !== this.criteria.deploymentId) return this.decideReplaced(service, tasks);
    return this.decideOwn(service, tasks);
  }

  /** The latest progress, or null when nothing changed since the previous call. */
  progressIfChanged(): RolloutProgress | null {
    if (!this.last) return null;
    const { service, tasks } = this.last;
    const key = JSON.stringify([service.updateStatus?.state, tasks.map((t) => [t.id, t.state, t.desiredState])]);
    if (key === this.lastProgressKey) return null;
    this.lastProgressKey = key;
    return {
      updateState: service.updateStatus?.state ?? null,
      runningReplicas: this.healthyTasks(service, tasks).length,
      desiredReplicas: this.criteria.desiredReplicas,
      tasks,
    };
  }

  resultAtDeadline(waitedMs: number): RolloutResult {
    const waited = `after ${Math.round(waitedMs / 1000)} s`;
    if (!this.last) return { outcome: 'timeout', reason: `no answer from the orchestrator ${waited}` };
    const { service, tasks } = this.last;
    // Swarm has already decided to go back; only the rollback itself is slow.
    if (service.deploymentLabel !== this.criteria.deploymentId && service.updateStatus?.state === 'rollback_started') {
      return { outcome: 'rolled_back', reason: `${this.rollbackReason(service, tasks)} (rollback still in progress)` };
    }
    return { outcome: 'timeout', reason: `timed out ${waited}: ${this.describeWait(service, tasks)}` };
  }

  private decideReplaced(service: ObservedService, tasks: ObservedTask[]): RolloutResult | null {
    switch (service.updateStatus?.state) {
      case 'rollback_started':
        return null;
      case 'rollback_completed':
        return { outcome: 'rolled_back', reason: this.rollbackReason(service, tasks) };
      case 'rollback_paused':
        return { outcome: 'failed', reason: `rollback paused: ${this.rollbackReason(service, tasks)}` };
      default:
        return {
          outcome: 'failed',
          reason: `the service now runs deployment ${service.deploymentLabel ?? '(unlabelled)'} instead`,
        };
    }
  }

  private decideOwn(service: ObservedService, tasks: ObservedTask[]): RolloutResult | null {
    const update = service.updateStatus;
    if (update?.state === 'paused' || update?.state === 'rollback_paused') {
      return { outcome: 'failed', reason: withTaskError(update.message, this.failingTask(update.message, tasks)) };
    }
    // Swarm supervises an update in progress (and rolls back or pauses on failure): let it finish.
    if (update?.state === 'updating' || update?.state === 'rollback_started') return null;

    if (this.hasConverged(service, tasks)) {
      const { desiredReplicas } = this.criteria;
      return { outcome: 'healthy', reason: `${desiredReplicas}/${desiredReplicas} replicas running` };
    }
    // Nothing supervises a fresh service: Swarm restarts failing tasks forever, so we give up after a few.
    const failures = this.ownTasks(service, tasks).filter((t) => FAILED_STATES.has(t.state));
    if (failures.length >= this.criteria.failedTaskLimit) {
      const latest = newestFirst(failures)[0];
      return { outcome: 'failed', reason: `${failures.length} tasks failed; last: ${describeTaskError(latest)}` };
    }
    return null;
  }

  private hasConverged(service: ObservedService, tasks: ObservedTask[]): boolean {
    if (this.criteria.desiredReplicas === 0) return tasks.every((t) => TERMINAL_STATES.has(t.state));
    const healthy = this.healthyTasks(service, tasks);
    const othersStillRunning = tasks.some((t) => t.state === 'running' && !healthy.includes(t));
    return healthy.length === this.criteria.desiredReplicas && !othersStillRunning;
  }

  /** Tasks of this deployment and of the current restart generation (a forced restart keeps the deployment id). */
  private ownTasks(service: ObservedService, tasks: ObservedTask[]): ObservedTask[] {
    return tasks.filter((t) => t.deploymentId === this.criteria.deploymentId && t.forceUpdate === service.forceUpdate);
  }

  private healthyTasks(service: ObservedService, tasks: ObservedTask[]): ObservedTask[] {
    return this.ownTasks(service, tasks).filter((t) => t.desiredState === 'running' && t.state === 'running');
  }

  private rollbackReason(service: ObservedService, tasks: ObservedTask[]): string {
    const cause = this.rollbackCause ?? service.updateStatus?.message ?? 'rolled back';
    const ownTasks = tasks.filter((t) => t.deploymentId === this.criteria.deploymentId);
    return withTaskError(cause, this.failingTask(cause, ownTasks));
  }

  /** The task Swarm names in its message, else the newest failed one. */
  private failingTask(message: string, tasks: ObservedTask[]): ObservedTask | undefined {
    const namedId = TASK_ID_IN_MESSAGE.exec(message)?.[1];
    const named = namedId ? tasks.find((t) => t.id === namedId) : undefined;
    return named ?? newestFirst(tasks.filter((t) => FAILED_STATES.has(t.state) || t.error))[0];
  }

  private describeWait(service: ObservedService, tasks: ObservedTask[]): string {
    const { desiredReplicas } = this.criteria;
    const parts = [`${this.healthyTasks(service, tasks).length}/${desiredReplicas} replicas running`];
    if (service.updateStatus) parts.push(`update ${service.updateStatus.state}: ${service.updateStatus.message}`);
    for (const task of this.ownTasks(service, tasks)) {
      if (task.desiredState === 'running' && task.state !== 'running') {
        parts.push(`replica ${task.slot} ${task.state}${task.error || task.message ? ` (${describeTaskError(task)})` : ''}`);
      }
    }
    const stale = tasks.filter((t) => t.state === 'running' && t.deploymentId !== this.criteria.deploymentId).length;
    if (stale > 0) parts.push(`${stale} task(s) of other deployments still running`);
    return parts.join('; ');
  }
}

function withTaskError(message: string, task: ObservedTask | undefined): string {
  return task ? `${message}: ${describeTaskError(task)}` : message;
}

function describeTaskError(task: ObservedTask): string {
  return task.error ?? task.message;
}

function newestFirst(tasks: ObservedTask[]): ObservedTask[] {
  return [...tasks].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
}

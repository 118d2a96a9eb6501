// Template saves check that each component's Nix expression evaluates, and tenant Nix code is hostile:
// the API process never evaluates it. The evaluation goes where builds run (CONVOY_BUILD_EXECUTOR):
// - `controller`: a job on the `evaluations` queue, answered by a controller's evaluation worker;
// - `agents`: a WorkerJob of kind EVALUATE, claimed and completed by a worker agent.
// The save waits for the answer (CONVOY_EVALUATION_TIMEOUT_SECONDS) and fails with a clear error when
// no executor answers. Evaluations have a queue (or job kind) of their own, outside the builds'
// concurrency and fairness, so a save is never stuck behind long builds.
import { hostname } from 'node:os';
import type { Queue, QueueEvents } from 'bullmq';
import type { Db } from '../../platform/db/client.js';
import type { ConvoyBus } from '../../events.js';
import type { Config } from '../../config.js';
import type { Logger } from '../../platform/logging/logger.js';
import type { Builder, EvaluateResult } from '../../platform/builder/index.js';
import { createQueue, createQueueEvents, createWorker, QUEUES } from '../../platform/queue/queues.js';
import { WorkerJobKind, WorkerJobStatus } from '../../generated/prisma/enums.js';
import { publishJob } from './agent-jobs.js';
import { compactResult, EVALUATION_CONCURRENCY, EVALUATION_NIX_TIMEOUT_MS, noExecutorAnswered, type EvaluationAnswer, type EvaluationJob } from './evaluation-result.js';
import type { Evaluator } from '../templates/evaluator.js';

export { noExecutorAnswered, type EvaluationAnswer, type EvaluationJob };
export type { Evaluator };

const POLL_MS = 200;

export type EvaluatorDeps = { db: Db; bus: ConvoyBus; config: Config; log: Logger };

export class ExecutorEvaluator implements Evaluator {
  private queue: Queue<EvaluationJob> | null = null;
  private events: QueueEvents | null = null;

  constructor(private readonly deps: EvaluatorDeps) {}

  evaluate(organizationId: string, expression: string): Promise<EvaluateResult> {
    return this.deps.config.build.executor === 'agents' ? this.onAgent(organizationId, expression) : this.onController(expression);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.events?.close(), this.queue?.close()]);
  }

  private get timeoutSeconds() {
    return this.deps.config.build.evaluationTimeoutSeconds;
  }

  /** Connections made on first use: processes that never save a template hold none. */
  private connections() {
    if (!this.queue || !this.events) {
      const connection = { redisUrl: this.deps.config.redisUrl, prefix: this.deps.config.redisPrefix, onError: (error: Error) => this.deps.log.warn({ err: error }, 'Redis connection error') };
      this.queue = createQueue<EvaluationJob>(QUEUES.evaluations, connection);
      this.events = createQueueEvents(QUEUES.evaluations, connection);
    }
    return { queue: this.queue, events: this.events };
  }

  private async onController(expression: string): Promise<EvaluateResult> {
    const { queue, events } = this.connections();
    const job = await queue.add('evaluate', { expression }, { attempts: 1, removeOnComplete: { age: 3600, count: 1000 }, removeOnFail: { age: 3600, count: 1000 } });
    try {
      const answer = (await job.waitUntilFinished(events, this.timeoutSeconds * 1000)) as EvaluationAnswer;
      return compactResult(answer);
    } catch (error) {
      if ((await job.getState().catch(() => 'unknown')) === 'failed') {
        this.deps.log.warn({ err: error, jobId: job.id }, 'the evaluation worker failed');
        return { ok: false, error: 'the expression could not be evaluated: the build executor failed; try again' };
      }
      // Nobody took it: a controller that starts later need not evaluate it for nobody.
      await job.remove().catch(() => {});
      return { ok: false, error: noExecutorAnswered(this.timeoutSeconds) };
    }
  }

  private async onAgent(organizationId: string, expression: string): Promise<EvaluateResult> {
    const { db } = this.deps;
    await pruneEvaluationJobs(db);
    // One attempt: the save is waiting; an agent lost mid-evaluation is covered by the timeout.
    const job = await db.workerJob.create({ data: { kind: WorkerJobKind.EVALUATE, organizationId, payload: { expression }, maxAttempts: 1 } });
    await publishJob(this.deps, { action: 'OFFER', jobId: job.id, kind: job.kind, workerId: null, organizationId });
    const deadline = Date.now() + this.timeoutSeconds * 1000;
    for (;;) {
      let current = await db.workerJob.findUniqueOrThrow({ where: { id: job.id } });
      if (!isFinished(current.status) && Date.now() >= deadline) {
        const [expired] = await db.workerJob.updateManyAndReturn({
          where: { id: job.id, status: { in: [WorkerJobStatus.QUEUED, WorkerJobStatus.CLAIMED] } },
          data: { status: WorkerJobStatus.FAILED, finishedAt: new Date(), error: noExecutorAnswered(this.timeoutSeconds) },
        });
        // Completed in the meantime: its answer stands.
        current = expired ?? (await db.workerJob.findUniqueOrThrow({ where: { id: job.id } }));
        if (expired && current.workerId) await publishJob(this.deps, { action: 'CANCEL', jobId: job.id, kind: job.kind, workerId: current.workerId });
      }
      if (isFinished(current.status)) {
        const derivation = (current.result as { derivation?: string } | null)?.derivation;
        return current.status === WorkerJobStatus.SUCCEEDED && derivation
          ? { ok: true, drvPath: derivation }
          : compactResult({ ok: false, error: current.error ?? 'does not evaluate' });
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}

/** Evaluation jobs hold a tenant's expression and matter only while a save waits: an hour later they go. */
const EVALUATION_JOB_RETENTION_MS = 60 * 60_000;

/** Removes finished evaluation jobs past retention, and unfinished ones an API that crashed mid-wait left. */
export async function pruneEvaluationJobs(db: Db, now = Date.now()): Promise<number> {
  const before = new Date(now - EVALUATION_JOB_RETENTION_MS);
  const { count } = await db.workerJob.deleteMany({
    where: { kind: WorkerJobKind.EVALUATE, OR: [{ finishedAt: { lt: before } }, { finishedAt: null, createdAt: { lt: before } }] },
  });
  return count;
}

function isFinished(status: WorkerJobStatus): boolean {
  return status === WorkerJobStatus.SUCCEEDED || status === WorkerJobStatus.FAILED || status === WorkerJobStatus.CANCELLED;
}

/** Who evaluated, as a controller's answer says it. */
function controllerName(): string {
  return `controller ${hostname()} (pid ${process.pid})`;
}

/** The controller's evaluation worker (executor `controller`); its own queue and concurrency, beside builds. */
export function startEvaluationController(deps: { config: Config; log: Logger; builder: Pick<Builder, 'evaluate'> }) {
  const { config } = deps;
  const worker = createWorker<EvaluationJob>(
    QUEUES.evaluations,
    async (job): Promise<EvaluationAnswer> => {
      // Its save has given up on it already (a controller that was down, a long queue).
      if (Date.now() - job.timestamp > config.build.evaluationTimeoutSeconds * 1000) {
        return { ok: false, error: noExecutorAnswered(config.build.evaluationTimeoutSeconds), evaluatedBy: controllerName() };
      }
      const result = await deps.builder.evaluate({ kind: 'expression', expression: job.data.expression }, { timeoutMs: EVALUATION_NIX_TIMEOUT_MS });
      return { ...compactResult(result), evaluatedBy: controllerName() };
    },
    { redisUrl: config.redisUrl, prefix: config.redisPrefix, onError: (error) => deps.log.warn({ err: error }, 'Redis connection error') },
    { concurrency: EVALUATION_CONCURRENCY, lockDuration: EVALUATION_NIX_TIMEOUT_MS * 2 },
  );
  worker.on('failed', (job, error) => deps.log.warn({ err: error, jobId: job?.id }, 'evaluation job failed'));
  return { close: () => worker.close() };
}

// Builds on worker agents. The controller turns a build into a WorkerJob and offers it (workerJobs
// subscription); an agent claims it (claimJob), streams its log (appendJobLogs) and reports the
// outcome (completeJob). A claim belongs to one agent process (worker + agentSession) and lasts while
// that process heartbeats: when it goes silent, restarts (new session) or its worker leaves ONLINE,
// the job goes back to the queue with the next attempt number, and only the current attempt may
// report on it, so a stale agent cannot overwrite its successor's work.
//
// Secrets: the job's payload and the claim carry no Git token. An agent asks for it with
// jobGitCredential(jobId, attempt) just before it clones; the API hands it out once per claim, only to
// the worker and process holding the current attempt, and never once the job ended. The agent keeps it
// in memory for the clone (and to redact its log), never on disk; a lost claim cannot fetch it again.
//
// Template evaluations are WorkerJobs too (kind EVALUATE, no build, one attempt: see evaluations.ts).
//
// A platform admin may restrict a worker to some organizations (Worker.buildOrganizationIds): it is
// offered only their jobs, and another organization's job is NOT_FOUND to it, like a missing one.
import type { Db } from '../../platform/db/client.js';
import type { Prisma, WorkerJob } from '../../generated/prisma/client.js';
import { WorkerJobKind, WorkerJobStatus, WorkerStatus } from '../../generated/prisma/enums.js';
import type { ConvoyBus, WorkerJobEvent } from '../../events.js';
import type { Config } from '../../config.js';
import type { Redis } from '../../platform/redis/connection.js';
import type { Logger } from '../../platform/logging/logger.js';
import { gitTokenOf } from '../services/service.js';
import { ConflictError, NotFoundError, ValidationError } from '../common/errors.js';
import type { BuildOutcome, BuildSpec } from './execute.js';
import { appendBuildLog, watchCancellation } from './runner.js';
import { redactor } from './execute.js';
import { releasingWith } from '../../platform/events/releasing.js';

export type AgentJobDeps = { db: Db; bus: ConvoyBus; config: Config; redis: Redis; log: Logger };

const POLL_MS = 500;
const MAX_LOG_LINES_PER_CALL = 1000;
const MAX_LOG_LINE = 8192;

const FINISHED = [WorkerJobStatus.SUCCEEDED, WorkerJobStatus.FAILED, WorkerJobStatus.CANCELLED] as WorkerJobStatus[];

export async function publishJob(deps: Pick<AgentJobDeps, 'bus'>, event: Omit<WorkerJobEvent, 'at'>) {
  await deps.bus.publish('workerJobs', 'all', { ...event, at: new Date().toISOString() });
}

// ---------------------------------------------------------------- controller side

/**
 * Offers the build to agents and waits for its outcome. Resumable: a controller that takes over the
 * build after a crash finds the job (one per build) and goes on waiting.
 */
export async function runOnAgent(deps: AgentJobDeps, spec: BuildSpec, organizationId: string): Promise<BuildOutcome> {
  const payload = spec as unknown as Prisma.InputJsonValue;
  const job = await deps.db.workerJob.upsert({ where: { buildId: spec.buildId }, create: { kind: WorkerJobKind.BUILD, buildId: spec.buildId, organizationId, payload }, update: {} });
  if (job.status === WorkerJobStatus.QUEUED) {
    await appendBuildLog(deps, spec.buildId, ['waiting for a worker agent to take the build']);
    await publishJob(deps, { action: 'OFFER', jobId: job.id, kind: job.kind, workerId: null, organizationId: job.organizationId });
  }
  let cancelRequested = false;
  const stopWatching = watchCancellation(deps, spec.buildId, () => (cancelRequested = true));
  const claimDeadline = Date.now() + deps.config.build.jobClaimTimeoutSeconds * 1000;
  try {
    for (;;) {
      const current = await deps.db.workerJob.findUniqueOrThrow({ where: { id: job.id }, include: { worker: true } });
      if (FINISHED.includes(current.status)) return outcomeOf(current);
      if (cancelRequested && !current.cancelRequestedAt) {
        if (await cancelJob(deps, current)) return { status: 'CANCELLED', error: 'cancelled before an agent took it' };
      }
      if (current.status === WorkerJobStatus.CLAIMED && claimLost(deps.config, current)) await releaseJob(deps, current);
      if (current.status === WorkerJobStatus.QUEUED && Date.now() > claimDeadline) {
        const failed = await finishJob(deps.db, current.id, current.attempt, WorkerJobStatus.FAILED, null, `no worker agent took the build within ${deps.config.build.jobClaimTimeoutSeconds} s`, WorkerJobStatus.QUEUED);
        if (failed) return outcomeOf(failed);
      }
      // A claimed job that was asked to stop and whose agent vanished ends here.
      if (current.cancelRequestedAt && current.status === WorkerJobStatus.QUEUED) {
        const cancelled = await finishJob(deps.db, current.id, current.attempt, WorkerJobStatus.CANCELLED, null, 'cancelled', WorkerJobStatus.QUEUED);
        if (cancelled) return outcomeOf(cancelled);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } finally {
    stopWatching();
  }
}

function outcomeOf(job: WorkerJob): BuildOutcome {
  const result = (job.result ?? {}) as BuildOutcome;
  const status = job.status === WorkerJobStatus.SUCCEEDED ? 'SUCCEEDED' : job.status === WorkerJobStatus.CANCELLED ? 'CANCELLED' : 'FAILED';
  return { ...result, status, error: job.error ?? result.error };
}

/** The claiming process stopped heartbeating, restarted, or its worker is no longer ONLINE. */
function claimLost(config: Config, job: WorkerJob & { worker: { status: WorkerStatus; lastHeartbeatAt: Date | null; agentSession: string | null; removedAt: Date | null } | null }): boolean {
  const worker = job.worker;
  if (!worker || worker.removedAt || worker.status !== WorkerStatus.ONLINE) return true;
  if (worker.agentSession && job.agentSession && worker.agentSession !== job.agentSession) return true;
  // A claim is a sign of life too: a restarted agent may claim before its first heartbeat lands.
  const silentMs = Date.now() - Math.max(worker.lastHeartbeatAt?.getTime() ?? 0, job.claimedAt?.getTime() ?? 0);
  return silentMs > config.build.jobLeaseSeconds * 1000;
}

async function releaseJob(deps: AgentJobDeps, job: WorkerJob & { worker: { hostname: string } | null }) {
  const retry = job.attempt < job.maxAttempts;
  const moved = await deps.db.workerJob.updateMany({
    where: { id: job.id, status: WorkerJobStatus.CLAIMED, attempt: job.attempt },
    data: retry
      ? { status: WorkerJobStatus.QUEUED, workerId: null, agentSession: null, claimedAt: null }
      : { status: WorkerJobStatus.FAILED, finishedAt: new Date(), error: `the agent running it was lost ${job.attempt} times` },
  });
  if (!moved.count || !job.buildId) return;
  const who = job.worker?.hostname ?? 'its worker';
  await appendBuildLog(deps, job.buildId, [retry ? `the agent on ${who} stopped answering: retrying the build (attempt ${job.attempt + 1} of ${job.maxAttempts})` : `the agent on ${who} stopped answering: giving up after ${job.attempt} attempts`]);
  deps.log.warn({ jobId: job.id, workerId: job.workerId, attempt: job.attempt, retry }, 'worker job lost its agent');
  if (retry) await publishJob(deps, { action: 'OFFER', jobId: job.id, kind: job.kind, workerId: null, organizationId: job.organizationId });
}

/** True when the job ended here (nobody had it); otherwise the agent running it is told to stop. */
async function cancelJob(deps: AgentJobDeps, job: WorkerJob): Promise<boolean> {
  const now = new Date();
  const unclaimed = await deps.db.workerJob.updateMany({ where: { id: job.id, status: WorkerJobStatus.QUEUED }, data: { status: WorkerJobStatus.CANCELLED, cancelRequestedAt: now, finishedAt: now, error: 'cancelled' } });
  if (unclaimed.count) return true;
  await deps.db.workerJob.updateMany({ where: { id: job.id, cancelRequestedAt: null }, data: { cancelRequestedAt: now } });
  await publishJob(deps, { action: 'CANCEL', jobId: job.id, kind: job.kind, workerId: job.workerId });
  return false;
}

async function finishJob(db: Db, jobId: string, attempt: number, status: WorkerJobStatus, result: Prisma.InputJsonValue | null, error: string | null, from: WorkerJobStatus): Promise<WorkerJob | null> {
  const [done] = await db.workerJob.updateManyAndReturn({
    where: { id: jobId, status: from, attempt },
    data: { status, finishedAt: new Date(), error, ...(result ? { result } : {}) },
  });
  return done ?? null;
}

// ---------------------------------------------------------------- agent side (through the API)

export type AgentCaller = { workerId: string };

export type ClaimedJob = { job: WorkerJob; spec: BuildSpec };

/** The one rule for a worker's organizations: none set takes every organization's jobs. */
export function workerTakesOrganization(worker: { buildOrganizationIds: string[] }, organizationId: string | null): boolean {
  if (worker.buildOrganizationIds.length === 0) return true;
  return organizationId !== null && worker.buildOrganizationIds.includes(organizationId);
}

/** Prisma filter for the jobs a worker may take (the same rule as workerTakesOrganization). */
function takenBy(worker: { buildOrganizationIds: string[] }): Prisma.WorkerJobWhereInput {
  return worker.buildOrganizationIds.length ? { organizationId: { in: worker.buildOrganizationIds } } : {};
}

/** A job another worker holds, or one that does not exist, looks the same: NOT_FOUND. */
async function heldJob(db: Db, caller: AgentCaller, jobId: string, attempt: number) {
  const job = jobId.length <= 64
    ? await db.workerJob.findFirst({ where: { id: jobId, workerId: caller.workerId }, include: { build: { select: { service: { select: { gitTokenEnc: true } } } } } })
    : null;
  if (!job) throw new NotFoundError('WorkerJob', jobId.slice(0, 64));
  if (job.status !== WorkerJobStatus.CLAIMED || job.attempt !== attempt) {
    throw new ConflictError(`This claim on job ${job.id} is no longer current (the job is ${job.status}, attempt ${job.attempt}): stop working on it`);
  }
  return job;
}

export async function claimJob(deps: AgentJobDeps, caller: AgentCaller, jobId: string, agentSession: string): Promise<ClaimedJob> {
  const worker = await deps.db.worker.findUniqueOrThrow({ where: { id: caller.workerId } });
  if (worker.status !== WorkerStatus.ONLINE) throw new ConflictError(`Only ONLINE workers take jobs; this one is ${worker.status}`);
  // The claimant is this worker's live process: record its session before the claim, since a restarted
  // agent may claim before its first heartbeat and the job must not look held by the old process.
  await deps.db.worker.update({ where: { id: worker.id }, data: { agentSession } });
  const [claimed] = jobId.length <= 64
    ? await deps.db.workerJob.updateManyAndReturn({
        where: { id: jobId, status: WorkerJobStatus.QUEUED, cancelRequestedAt: null, ...takenBy(worker) },
        data: { status: WorkerJobStatus.CLAIMED, workerId: worker.id, agentSession, claimedAt: new Date(), gitCredentialIssuedAt: null, attempt: { increment: 1 } },
      })
    : [];
  if (!claimed) {
    // Another organization's job, for a worker restricted to others, is as missing as a job that is not there.
    const exists = jobId.length <= 64 && (await deps.db.workerJob.count({ where: { id: jobId, ...takenBy(worker) } })) > 0;
    if (!exists) throw new NotFoundError('WorkerJob', jobId.slice(0, 64));
    throw new ConflictError('Another agent took this job, or it ended');
  }
  if (claimed.buildId) {
    await deps.db.build.update({ where: { id: claimed.buildId }, data: { workerId: worker.id } });
    await appendBuildLog(deps, claimed.buildId, [`worker ${worker.hostname} took the build (attempt ${claimed.attempt})`]);
  }
  return { job: claimed, spec: claimed.payload as unknown as BuildSpec };
}

/**
 * The repository's access token for the clone of the current claim (null: the repository has none).
 * Once per claim: a second request, a stale attempt or an ended job is refused (CONFLICT).
 */
export async function jobGitCredential(deps: AgentJobDeps, caller: AgentCaller, jobId: string, attempt: number): Promise<string | null> {
  const job = await heldJob(deps.db, caller, jobId, attempt);
  // The process that claimed it must still be the worker's live one (a restarted agent's claims are void).
  const worker = await deps.db.worker.findUniqueOrThrow({ where: { id: caller.workerId }, select: { agentSession: true } });
  if (!job.agentSession || worker.agentSession !== job.agentSession) throw new ConflictError('This claim belongs to an agent process that is gone: stop working on it');
  const issued = await deps.db.workerJob.updateMany({
    where: { id: job.id, status: WorkerJobStatus.CLAIMED, attempt, workerId: caller.workerId, agentSession: job.agentSession, gitCredentialIssuedAt: null },
    data: { gitCredentialIssuedAt: new Date() },
  });
  if (!issued.count) throw new ConflictError('The Git credential of this claim was already handed out: it is given once, for the clone');
  const token = job.build ? gitTokenOf(deps.config, job.build.service) : null;
  if (job.buildId) await appendBuildLog(deps, job.buildId, [token ? 'the agent fetched the repository credential for the clone' : 'the repository has no access token']);
  return token;
}

export async function appendJobLogs(deps: AgentJobDeps, caller: AgentCaller, jobId: string, attempt: number, lines: string[]): Promise<number> {
  const job = await heldJob(deps.db, caller, jobId, attempt);
  if (!job.buildId || lines.length === 0) return 0;
  const kept = lines.slice(0, MAX_LOG_LINES_PER_CALL).map((line) => line.slice(0, MAX_LOG_LINE));
  // The agent redacts the token already; the API does it again rather than trust it.
  const redact = redactor([job.build ? gitTokenOf(deps.config, job.build.service) : null]);
  await appendBuildLog(deps, job.buildId, kept.map(redact));
  return kept.length;
}

export async function completeJob(deps: AgentJobDeps, caller: AgentCaller, jobId: string, attempt: number, outcome: BuildOutcome): Promise<WorkerJob> {
  const job = await heldJob(deps.db, caller, jobId, attempt);
  const evaluation = job.kind === WorkerJobKind.EVALUATE;
  if (outcome.status === 'SUCCEEDED') {
    if (evaluation && !outcome.derivation) throw ValidationError.single(['outcome', 'derivation'], 'a successful evaluation names its derivation');
    if (!evaluation && !(outcome.imageRef && outcome.imageId)) throw ValidationError.single(['outcome', 'imageRef'], 'a successful build names its image');
  }
  const status = outcome.status === 'SUCCEEDED' ? WorkerJobStatus.SUCCEEDED : outcome.status === 'CANCELLED' ? WorkerJobStatus.CANCELLED : WorkerJobStatus.FAILED;
  // An evaluation keeps its answer only (the API reads the derivation, or the error).
  const result = evaluation ? (outcome.derivation ? { derivation: outcome.derivation } : {}) : outcome;
  const done = await finishJob(deps.db, jobId, attempt, status, result as unknown as Prisma.InputJsonValue, outcome.error ?? null, WorkerJobStatus.CLAIMED);
  if (!done) throw new ConflictError('This claim on the job is no longer current: stop working on it');
  return done;
}

/** Jobs waiting for an agent of this worker (what a newly connected agent should look at first). */
export async function queuedJobs(db: Db, worker: { buildOrganizationIds: string[] }): Promise<WorkerJob[]> {
  return db.workerJob.findMany({ where: { status: WorkerJobStatus.QUEUED, cancelRequestedAt: null, ...takenBy(worker) }, orderBy: { createdAt: 'asc' }, take: 100 });
}

/** How long a subscription trusts the worker's organizations before reading them again. */
const WORKER_ORGANIZATIONS_TTL_MS = 5000;

/** Offers (to the agents allowed to take them) and cancellations (to the agent holding the job), queued ones first. */
export async function followWorkerJobs(deps: Pick<AgentJobDeps, 'db' | 'bus'>, caller: AgentCaller): Promise<AsyncIterableIterator<WorkerJobEvent>> {
  const live = await deps.bus.subscribe('workerJobs', 'all');
  const readWorker = () => deps.db.worker.findUniqueOrThrow({ where: { id: caller.workerId }, select: { buildOrganizationIds: true } });
  const events = async function* (): AsyncGenerator<WorkerJobEvent> {
    try {
      let worker = await readWorker();
      let readAt = Date.now();
      for (const job of await queuedJobs(deps.db, worker)) yield { action: 'OFFER', jobId: job.id, kind: job.kind, workerId: null, at: job.createdAt.toISOString() };
      for await (const event of live) {
        if (event.action === 'CANCEL' && event.workerId !== caller.workerId) continue;
        if (event.action === 'OFFER') {
          if (Date.now() - readAt > WORKER_ORGANIZATIONS_TTL_MS) [worker, readAt] = [await readWorker(), Date.now()];
          if (!workerTakesOrganization(worker, event.organizationId ?? null)) continue;
        }
        // Which organization a job is for stays between the API and the controller.
        yield { action: event.action, jobId: event.jobId, kind: event.kind, workerId: event.workerId, at: event.at };
      }
    } finally {
      await live.return?.();
    }
  };
  return releasingWith(events(), live);
}

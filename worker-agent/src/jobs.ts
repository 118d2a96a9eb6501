// Build jobs on this node: listen to workerJobs, claim offers while fewer than `concurrency` jobs run
// here (so one tenant's long or stuck build does not hold the node for everyone else), build with the
// builder library against the local Docker engine, stream the log (appendJobLogs, batched) and report
// the outcome (completeJob). All through GraphQL with the worker's credential. A Git source's token is
// fetched (jobGitCredential) right before the clone and only kept in memory: never in the spec, on
// disk or in the log. Evaluations (EVALUATE jobs: a template's expression, instantiated for a save the
// API is holding) run beside builds, outside their concurrency, so a save never waits on a long build.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import type { Logger } from '../../src/platform/logging/logger.js';
import type { Builder } from '../../src/platform/builder/index.js';
import { executeBuild, type BuildOutcome, type BuildSpec } from '../../src/modules/builds/execute.js';
import { compactResult, EVALUATION_CONCURRENCY, EVALUATION_NIX_TIMEOUT_MS, type EvaluationJob } from '../../src/modules/builds/evaluation-result.js';
import { GraphQLRequestError, type GraphQLClient } from './graphql-client.js';
import { LineBatcher } from '../../src/shared/line-batcher.js';

const LOG_FLUSH_MS = 300;
const LOG_BATCH_MAX = 500;
const COMPLETE_ATTEMPTS = 5;
const RESUBSCRIBE_OVERLAP_MS = 2000;

const WORKER_JOBS = /* GraphQL */ `subscription { workerJobs { action jobId kind } }`;
const CLAIM_JOB = /* GraphQL */ `
  mutation ClaimJob($jobId: ID!, $agentSession: String!) {
    claimJob(jobId: $jobId, agentSession: $agentSession) { job { id attempt kind } spec }
  }
`;
const JOB_GIT_CREDENTIAL = /* GraphQL */ `mutation JobGitCredential($jobId: ID!, $attempt: Int!) { jobGitCredential(jobId: $jobId, attempt: $attempt) }`;
const APPEND_JOB_LOGS = /* GraphQL */ `mutation AppendJobLogs($jobId: ID!, $attempt: Int!, $lines: [String!]!) { appendJobLogs(jobId: $jobId, attempt: $attempt, lines: $lines) }`;
const COMPLETE_JOB = /* GraphQL */ `
  mutation CompleteJob($jobId: ID!, $attempt: Int!, $outcome: BuildOutcomeInput!) { completeJob(jobId: $jobId, attempt: $attempt, outcome: $outcome) { id status } }
`;

type JobEvent = { action: 'OFFER' | 'CANCEL'; jobId: string; kind: string };
type Claimed = { job: { id: string; attempt: number; kind: string }; spec: BuildSpec };

export const DEFAULT_JOB_CONCURRENCY = 2;

export type JobRunnerOptions = {
  apiUrl: string;
  credential: string;
  /** This process's session id, also sent with every heartbeat. */
  session: string;
  client: GraphQLClient;
  builder: Builder;
  docker: Docker;
  log: Logger;
  /** Jobs run at once (default DEFAULT_JOB_CONCURRENCY). */
  concurrency?: number;
};

export class JobRunner {
  private ws: Client | null = null;
  private readonly running = new Map<string, AbortController>();
  private readonly evaluating = new Set<string>();
  private stopped = false;
  /** An offer came while this agent was full: it may still be queued once a job ends. */
  private missedOffers = false;
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly options: JobRunnerOptions) {}

  start(): void {
    const url = new URL(this.options.client.url);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    this.ws = createClient({
      url: url.toString(),
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${this.options.credential}` },
      // The API restarting must not end job offers for good.
      retryAttempts: Infinity,
      shouldRetry: () => !this.stopped,
      lazy: false,
    });
    this.listen();
  }

  /** Stops listening and abandons a running build: the API gives it to another agent when this one's heartbeats stop. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    for (const abort of this.running.values()) abort.abort();
    await this.ws?.dispose();
  }

  /** (Re)subscribes; the subscription starts with the jobs queued now, so jobs offered while busy are not missed. */
  private listen() {
    if (this.stopped || !this.ws) return;
    // The new subscription overlaps the old one for a moment, so no cancellation of a job still
    // running here falls between the two (events seen twice are harmless).
    const previous = this.unsubscribe;
    if (previous) setTimeout(previous, RESUBSCRIBE_OVERLAP_MS).unref();
    this.unsubscribe = this.ws.subscribe<{ workerJobs: JobEvent }>(
      { query: WORKER_JOBS },
      {
        next: (message) => {
          const event = message.data?.workerJobs;
          if (event) this.onEvent(event);
        },
        error: (error) => {
          this.options.log.warn({ err: error }, 'job offers subscription failed; subscribing again');
          setTimeout(() => this.listen(), 1000).unref();
        },
        complete: () => {},
      },
    );
  }

  private onEvent(event: JobEvent) {
    if (event.action === 'CANCEL') {
      const abort = this.running.get(event.jobId);
      if (abort) {
        this.options.log.info({ jobId: event.jobId }, 'job cancelled by the API');
        abort.abort();
      }
      return;
    }
    if (this.stopped) return;
    if (event.kind === 'EVALUATE') return this.onEvaluationOffer(event.jobId);
    if (event.kind !== 'BUILD' || this.running.has(event.jobId)) return;
    if (this.running.size >= (this.options.concurrency ?? DEFAULT_JOB_CONCURRENCY)) {
      this.missedOffers = true;
      return;
    }
    const abort = new AbortController();
    this.running.set(event.jobId, abort);
    void this.claimAndRun(event.jobId, abort).finally(() => {
      this.running.delete(event.jobId);
      // Offers that came while this agent was full may still be queued: subscribing again replays them.
      if (this.missedOffers) {
        this.missedOffers = false;
        this.listen();
      }
    });
  }

  private onEvaluationOffer(jobId: string) {
    if (this.evaluating.has(jobId)) return;
    if (this.evaluating.size >= EVALUATION_CONCURRENCY) {
      this.missedOffers = true;
      return;
    }
    this.evaluating.add(jobId);
    void this.claimAndEvaluate(jobId)
      .catch((error: unknown) => this.options.log.warn({ err: error, jobId }, 'evaluation job failed'))
      .finally(() => {
        this.evaluating.delete(jobId);
        if (this.missedOffers) {
          this.missedOffers = false;
          this.listen();
        }
      });
  }

  /** Instantiates the expression (no build) and answers with its derivation or Nix's error. */
  private async claimAndEvaluate(jobId: string): Promise<void> {
    const { client, session, log, builder } = this.options;
    let claimed: { job: Claimed['job']; spec: EvaluationJob };
    try {
      claimed = (await client.request<{ claimJob: { job: Claimed['job']; spec: EvaluationJob } }>(CLAIM_JOB, { jobId, agentSession: session })).claimJob;
    } catch (error) {
      if (error instanceof GraphQLRequestError && (error.code === 'CONFLICT' || error.code === 'NOT_FOUND')) return;
      log.warn({ err: error, jobId }, 'claiming an evaluation failed');
      return;
    }
    const { job, spec } = claimed;
    const result = compactResult(await builder.evaluate({ kind: 'expression', expression: spec.expression }, { timeoutMs: EVALUATION_NIX_TIMEOUT_MS }));
    if (this.stopped) return;
    await this.complete(job.id, job.attempt, result.ok ? { status: 'SUCCEEDED', derivation: result.drvPath } : { status: 'FAILED', error: result.error });
    log.info({ jobId: job.id, ok: result.ok }, 'evaluation job finished');
  }

  private async claimAndRun(jobId: string, abort: AbortController): Promise<void> {
    const { client, session, log } = this.options;
    let claimed: Claimed;
    try {
      claimed = (await client.request<{ claimJob: Claimed }>(CLAIM_JOB, { jobId, agentSession: session })).claimJob;
    } catch (error) {
      // Another agent was first, or the job ended: nothing to do.
      if (error instanceof GraphQLRequestError && (error.code === 'CONFLICT' || error.code === 'NOT_FOUND')) return;
      log.warn({ err: error, jobId }, 'claiming a job failed');
      return;
    }
    const { job, spec } = claimed;
    log.info({ jobId: job.id, attempt: job.attempt, buildId: spec.buildId }, 'running a build job');
    // Asked for only when the clone starts; executeBuild redacts it from every line it hands out.
    const gitCredential = async () => (await client.request<{ jobGitCredential: string | null }>(JOB_GIT_CREDENTIAL, { jobId: job.id, attempt: job.attempt })).jobGitCredential;
    const logs = new JobLog(client, job.id, job.attempt, () => abort.abort(), log);
    const workDir = await mkdtemp(join(tmpdir(), 'convoy-agent-build-'));
    let outcome: BuildOutcome;
    try {
      outcome = await executeBuild(this.options, spec, { workDir, gitCredential, onLog: (line) => logs.line(line), signal: abort.signal });
    } finally {
      await logs.close();
      await rm(workDir, { recursive: true, force: true }).catch(() => {});
    }
    if (this.stopped || logs.lost) {
      log.info({ jobId: job.id }, logs.lost ? 'the job was taken from this agent; not reporting it' : 'stopping: the job is left for another agent');
      return;
    }
    await this.complete(job.id, job.attempt, outcome);
    log.info({ jobId: job.id, status: outcome.status }, 'build job finished');
  }

  private async complete(jobId: string, attempt: number, outcome: BuildOutcome) {
    const clean = Object.fromEntries(Object.entries(outcome).filter(([, v]) => v !== undefined && v !== null));
    for (let i = 1; ; i++) {
      try {
        await this.options.client.request(COMPLETE_JOB, { jobId, attempt, outcome: clean });
        return;
      } catch (error) {
        // The API's database or Redis being down (SERVICE_UNAVAILABLE) is worth the retries too.
        if (error instanceof GraphQLRequestError && error.status < 500 && error.code !== 'INTERNAL_SERVER_ERROR' && error.code !== 'SERVICE_UNAVAILABLE') {
          this.options.log.warn({ err: error, jobId }, 'the API refused the job outcome');
          return;
        }
        if (i >= COMPLETE_ATTEMPTS || this.stopped) throw error;
        await new Promise((resolve) => setTimeout(resolve, 500 * i));
      }
    }
  }
}

/** Sends log lines in batches (appendJobLogs); a refusal means the claim is gone. */
class JobLog {
  private readonly batcher: LineBatcher;
  lost = false;

  constructor(
    private readonly client: GraphQLClient,
    private readonly jobId: string,
    private readonly attempt: number,
    private readonly onLost: () => void,
    private readonly log: Logger,
  ) {
    this.batcher = new LineBatcher((lines) => this.send(lines), { flushMs: LOG_FLUSH_MS, maxLines: LOG_BATCH_MAX });
  }

  line(text: string) {
    if (!this.lost) this.batcher.line(text);
  }

  close(): Promise<void> {
    return this.batcher.flush();
  }

  private async send(lines: string[]) {
    if (this.lost) return;
    try {
      await this.client.request(APPEND_JOB_LOGS, { jobId: this.jobId, attempt: this.attempt, lines });
    } catch (error) {
      if (error instanceof GraphQLRequestError && (error.code === 'CONFLICT' || error.code === 'NOT_FOUND')) {
        this.lost = true;
        this.onLost();
      } else this.log.warn({ err: error, jobId: this.jobId }, 'sending build log lines failed; they are lost');
    }
  }
}

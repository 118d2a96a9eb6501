// The worker agent's side of build jobs: workerJobs (offers and cancellations), claimJob,
// appendJobLogs, completeJob. Worker credentials only; a worker acts on the jobs it holds.
import { builder } from '../../graphql/builder.js';
import type { GraphQLContext } from '../../graphql/context.js';
import { WorkerJobKind, WorkerJobStatus } from '../../generated/prisma/enums.js';
import type { WorkerJobEvent } from '../../events.js';
import { workerIdOf } from '../common/graphql.js';
import { parseInput } from '../common/parse.js';
import { z } from 'zod';
import { AGENT_SESSION } from '../workers/validation.js';
import * as jobs from './agent-jobs.js';
import type { BuildOutcome } from './execute.js';

function agentOf(ctx: GraphQLContext): jobs.AgentCaller {
  return { workerId: workerIdOf(ctx) };
}

const WorkerJobKindEnum = builder.enumType(WorkerJobKind, { name: 'WorkerJobKind' });
const WorkerJobStatusEnum = builder.enumType(WorkerJobStatus, { name: 'WorkerJobStatus' });
const WorkerJobActionEnum = builder.enumType('WorkerJobAction', { values: ['OFFER', 'CANCEL'] as const });
const BuildOutcomeStatusEnum = builder.enumType('BuildOutcomeStatus', { values: ['SUCCEEDED', 'FAILED', 'CANCELLED'] as const });

const WorkerJobRef = builder.prismaObject('WorkerJob', {
  fields: (t) => ({
    id: t.exposeID('id'),
    kind: t.expose('kind', { type: WorkerJobKindEnum }),
    status: t.expose('status', { type: WorkerJobStatusEnum }),
    attempt: t.exposeInt('attempt', { description: 'Which claim this is; reports must name the current one' }),
    buildId: t.exposeID('buildId', { nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

const WorkerJobEventRef = builder.objectRef<WorkerJobEvent>('WorkerJobEvent').implement({
  fields: (t) => ({
    action: t.field({ type: WorkerJobActionEnum, resolve: (e) => e.action }),
    jobId: t.exposeID('jobId'),
    kind: t.field({ type: WorkerJobKindEnum, resolve: (e) => e.kind as WorkerJobKind }),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
  }),
});

const ClaimedJobRef = builder.objectRef<jobs.ClaimedJob>('ClaimedJob').implement({
  fields: (t) => ({
    job: t.field({ type: WorkerJobRef, resolve: (c) => c.job }),
    spec: t.field({ type: 'JSON', description: 'What to build (a BuildSpec); it never holds a secret: see jobGitCredential', resolve: (c) => c.spec }),
  }),
});

const BuildOutcomeInput = builder.inputType('BuildOutcomeInput', {
  fields: (t) => ({
    status: t.field({ type: BuildOutcomeStatusEnum, required: true }),
    error: t.string(),
    commitSha: t.string(),
    derivation: t.string(),
    storePath: t.string(),
    closureSizeBytes: t.float(),
    imageRef: t.string(),
    imageId: t.string(),
    imageSizeBytes: t.float(),
    cacheHit: t.boolean(),
  }),
});

const STORE_PATH = /^\/nix\/store\/[a-z0-9]{32}-[A-Za-z0-9+._?=-]{1,200}$/;
// What a successful outcome must name depends on the job's kind (an image, a derivation): completeJob checks it.
const outcomeInput = z.object({
  status: z.enum(['SUCCEEDED', 'FAILED', 'CANCELLED']),
  error: z.string().max(4000).nullish(),
  commitSha: z.string().regex(/^[0-9a-f]{40}([0-9a-f]{24})?$/, 'must be a commit SHA').nullish(),
  derivation: z.string().regex(/^\/nix\/store\/[a-z0-9]{32}-[A-Za-z0-9+._?=-]{1,200}\.drv$/, 'must be a .drv store path').nullish(),
  storePath: z.string().regex(STORE_PATH, 'must be a store path').nullish(),
  closureSizeBytes: z.number().min(0).nullish(),
  imageRef: z.string().regex(/^[a-z0-9][a-z0-9._:/@-]{0,255}$/, 'must be an image reference').nullish(),
  imageId: z.string().regex(/^sha256:[a-f0-9]{64}$/, 'must be an image id').nullish(),
  imageSizeBytes: z.number().min(0).nullish(),
  cacheHit: z.boolean().nullish(),
});

const jobId = z.string().max(64);
const logLines = z.array(z.string()).max(1000, 'at most 1000 lines per call');

builder.subscriptionField('workerJobs', (t) =>
  t.field({
    type: WorkerJobEventRef,
    description: 'Jobs waiting for an agent (those queued now first), and cancellations of the jobs this worker holds (worker credentials)',
    authScopes: { worker: true },
    subscribe: (_root, _args, ctx) => jobs.followWorkerJobs(ctx.app, agentOf(ctx)),
    resolve: (event) => event,
  }),
);

builder.mutationField('claimJob', (t) =>
  t.field({
    type: ClaimedJobRef,
    description: 'Takes a queued job for this agent process; CONFLICT when another agent was first',
    authScopes: { worker: true },
    args: { jobId: t.arg.id({ required: true }), agentSession: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => {
      const input = parseInput(z.object({ jobId, agentSession: z.string().regex(AGENT_SESSION, 'must be the agent session id') }), { jobId: String(args.jobId), agentSession: args.agentSession });
      return jobs.claimJob(ctx.app, agentOf(ctx), input.jobId, input.agentSession);
    },
  }),
);

builder.mutationField('jobGitCredential', (t) =>
  t.string({
    nullable: true,
    description: "The repository's access token for the clone of a job this worker holds (null: none). Given once per claim, right before cloning; CONFLICT afterwards or once the job ended. Keep it in memory, never log or store it",
    authScopes: { worker: true },
    args: { jobId: t.arg.id({ required: true }), attempt: t.arg.int({ required: true }) },
    resolve: (_root, args, ctx) => {
      const input = parseInput(z.object({ jobId }), { jobId: String(args.jobId) });
      return jobs.jobGitCredential(ctx.app, agentOf(ctx), input.jobId, args.attempt);
    },
  }),
);

builder.mutationField('appendJobLogs', (t) =>
  t.int({
    description: 'Appends log lines of a job this worker holds (at most 1000 per call); returns how many were kept',
    authScopes: { worker: true },
    args: { jobId: t.arg.id({ required: true }), attempt: t.arg.int({ required: true }), lines: t.arg.stringList({ required: true }) },
    resolve: (_root, args, ctx) => {
      const input = parseInput(z.object({ jobId, lines: logLines }), { jobId: String(args.jobId), lines: args.lines });
      return jobs.appendJobLogs(ctx.app, agentOf(ctx), input.jobId, args.attempt, input.lines);
    },
  }),
);

builder.mutationField('completeJob', (t) =>
  t.field({
    type: WorkerJobRef,
    description: 'Reports the outcome of a job this worker holds (an EVALUATE job: SUCCEEDED with its derivation, or FAILED with the error)',
    authScopes: { worker: true },
    args: { jobId: t.arg.id({ required: true }), attempt: t.arg.int({ required: true }), outcome: t.arg({ type: BuildOutcomeInput, required: true }) },
    resolve: (_root, args, ctx) => {
      const input = parseInput(z.object({ jobId, outcome: outcomeInput }), { jobId: String(args.jobId), outcome: args.outcome });
      return jobs.completeJob(ctx.app, agentOf(ctx), input.jobId, args.attempt, input.outcome as BuildOutcome);
    },
  }),
);

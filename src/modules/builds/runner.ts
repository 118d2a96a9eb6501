// The controller side of builds: fetch the source, build it with Nix, turn the closure into an image,
// load (and push) it, then queue the deploy. A failed or cancelled build never touches what runs.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { Db } from '../../platform/db/client.js';
import type { Build, Service } from '../../generated/prisma/client.js';
import { BuildStatus, DeploymentKind, ServiceStatus, SourceType } from '../../generated/prisma/enums.js';
import type { ConvoyBus } from '../../events.js';
import type { Config } from '../../config.js';
import type { Logger } from '../../platform/logging/logger.js';
import type { Redis } from '../../platform/redis/connection.js';
import type { Builder } from '../../platform/builder/index.js';
import { gitTokenOf, transitionServiceStatus } from '../services/service.js';
import { mainComponent } from '../templates/service.js';
import { queueDeployment, snapshotConfig, type DeployDeps } from '../deployments/service.js';
import type { PortSpec } from '../services/validation.js';
import { builtImageTag } from '../services/image-ownership.js';
import { cancelFlagKey, FINISHED_BUILD_STATUSES, publishBuildStatus } from './service.js';
import { executeBuild, redactor, type BuildOutcome, type BuildSpec, type BuildSpecSource } from './execute.js';
import { runOnAgent } from './agent-jobs.js';
import { LineBatcher } from '../../shared/line-batcher.js';

export type BuildRunnerDeps = DeployDeps & { db: Db; bus: ConvoyBus; config: Config; log: Logger; redis: Redis; builder: Builder; docker: Docker };

const LOG_FLUSH_MS = 250;
const LOG_FLUSH_LINES = 200;
const CANCEL_POLL_MS = 300;
const MAX_LOG_LINE = 8192;

/** Appends lines to the build's stored log and publishes them numbered (the count comes from the row). */
export async function appendBuildLog(deps: Pick<BuildRunnerDeps, 'db' | 'bus'>, buildId: string, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  const [row] = await deps.db.$queryRaw<{ logLineCount: number }[]>`
    UPDATE "Build" SET logs = logs || ${lines.join('\n') + '\n'}, "logLineCount" = "logLineCount" + ${lines.length}, "updatedAt" = now()
    WHERE id = ${buildId} RETURNING "logLineCount"`;
  if (row) await deps.bus.publish('buildLog', buildId, { buildId, firstSeq: row.logLineCount - lines.length, lines });
}

/** Aborts when a cancel flag appears for this build. */
export function watchCancellation(deps: Pick<BuildRunnerDeps, 'redis' | 'config'>, buildId: string, onCancel: () => void) {
  const timer = setInterval(() => {
    void deps.redis.exists(cancelFlagKey(deps.config, buildId)).then((n) => n && onCancel(), () => {});
  }, CANCEL_POLL_MS);
  return () => clearInterval(timer);
}

/** Under the organization's part of Convoy's namespace: deploys check that the caller's org built it. */
function imageTag(service: Service, build: Build) {
  return builtImageTag(service.organizationId, service.id, build.id);
}

/** Everything a build needs but the Git token, resolved here so an agent needs no database. */
async function buildSpecOf(deps: BuildRunnerDeps, service: Service, build: Build): Promise<BuildSpec> {
  let source: BuildSpecSource;
  switch (service.sourceType) {
    case SourceType.NIX:
      source = { kind: 'expression', expression: service.nixExpression! };
      break;
    case SourceType.TEMPLATE: {
      const template = await deps.db.template.findUniqueOrThrow({ where: { id: service.templateId! } });
      if (template.builtIn) source = { kind: 'builtInTemplate', slug: template.slug };
      else {
        const main = mainComponent(template)!;
        source = { kind: 'expression', expression: main.expression!, start: main.start ?? null, port: main.port ?? null };
      }
      break;
    }
    case SourceType.GIT:
      source = { kind: 'git', url: service.gitUrl!, ref: build.gitRef ?? service.gitBranch ?? 'main', allowFile: deps.config.build.allowFileGitUrls,
        network: { outbound: deps.config.outbound, timeoutMs: deps.config.build.gitCloneTimeoutSeconds * 1000, connectTimeoutMs: deps.config.build.gitConnectTimeoutSeconds * 1000 } };
      break;
    default:
      throw new Error('this service runs a ready image; there is nothing to build');
  }
  return {
    buildId: build.id,
    serviceId: service.id,
    source,
    ports: (service.ports as PortSpec[]).map((p) => p.target),
    imageTag: imageTag(service, build),
    registryUrl: deps.config.build.registryUrl,
    timeoutMs: deps.config.build.timeoutSeconds * 1000,
  };
}

/** The build in this process. */
async function executeHere(deps: BuildRunnerDeps, spec: BuildSpec, token: string | null): Promise<BuildOutcome> {
  // executeBuild redacts the token from every line it hands out.
  const log = new LineBatcher((lines) => appendBuildLog(deps, spec.buildId, lines), { flushMs: LOG_FLUSH_MS, maxLines: LOG_FLUSH_LINES, maxLineLength: MAX_LOG_LINE });
  const cancel = new AbortController();
  const stopWatching = watchCancellation(deps, spec.buildId, () => cancel.abort());
  const workDir = await mkdtemp(join(tmpdir(), 'convoy-build-'));
  try {
    return await executeBuild(deps, spec, { workDir, gitCredential: async () => token, onLog: (line) => log.line(line), signal: cancel.signal });
  } finally {
    stopWatching();
    await log.flush();
    await rm(workDir, { recursive: true, force: true }).catch(() => {});
  }
}

/** Idempotent: a finished build is left alone. */
export async function runBuild(deps: BuildRunnerDeps, buildId: string): Promise<void> {
  const build = await deps.db.build.findUnique({ where: { id: buildId }, include: { service: true } });
  if (!build || FINISHED_BUILD_STATUSES.includes(build.status)) return;
  const { service } = build;
  const organizationId = service.organizationId;
  const statusBefore = service.status;
  const token = gitTokenOf(deps.config, service);
  const redact = redactor([token]);
  const started = Date.now();

  const finish = async (status: BuildStatus, message: string, data: Record<string, unknown> = {}) => {
    await deps.db.build.update({ where: { id: build.id }, data: { status, finishedAt: new Date(), durationMs: Date.now() - started, ...data } });
    await publishBuildStatus(deps, build, organizationId, status, message);
    await deps.bus.publish('buildLog', build.id, { buildId: build.id, done: true, status });
  };

  try {
    await deps.db.build.update({ where: { id: build.id }, data: { status: BuildStatus.RUNNING, startedAt: build.startedAt ?? new Date() } });
    await publishBuildStatus(deps, build, organizationId, BuildStatus.RUNNING, 'started');
    await transitionServiceStatus(deps, service.id, ServiceStatus.BUILDING, `build ${build.id} started`);

    const spec = await buildSpecOf(deps, service, build);
    const outcome = deps.config.build.executor === 'agents' ? await runOnAgent(deps, spec, organizationId) : await executeHere(deps, spec, token);
    if (outcome.commitSha) await deps.db.build.update({ where: { id: build.id }, data: { commitSha: outcome.commitSha } });

    if (outcome.status !== 'SUCCEEDED') {
      const status = outcome.status === 'CANCELLED' ? BuildStatus.CANCELLED : BuildStatus.FAILED;
      const message = redact(outcome.error ?? status.toLowerCase());
      // The service first, the build last: whoever sees the build ended sees the service it left.
      await restoreServiceStatus(deps, service, statusBefore, `build ${build.id} ${status.toLowerCase()}: ${message.slice(0, 200)}`);
      await finish(status, message, { error: message.slice(0, 4000), derivation: outcome.derivation ?? null });
      return;
    }

    await finish(BuildStatus.SUCCEEDED, outcome.cacheHit ? 'cache hit' : 'built', {
      derivation: outcome.derivation,
      storePath: outcome.storePath,
      closureSizeBytes: BigInt(outcome.closureSizeBytes ?? 0),
      imageRef: outcome.imageRef,
      imageId: outcome.imageId,
      imageSizeBytes: BigInt(outcome.imageSizeBytes ?? 0),
      cacheHit: outcome.cacheHit ?? false,
    });

    const fresh = await deps.db.service.findUniqueOrThrow({ where: { id: service.id } });
    if (fresh.deletedAt) return;
    const triggeredBy = build.triggeredById ? { userId: build.triggeredById, organizationId, requestId: null as unknown as string } : null;
    await queueDeployment(deps, triggeredBy, fresh, { kind: DeploymentKind.DEPLOY, image: outcome.imageRef!, replicas: fresh.replicas, config: snapshotConfig(fresh), reason: `deploy build ${build.id}${outcome.commitSha ? ` (${outcome.commitSha.slice(0, 12)})` : ''}`, buildId: build.id });
  } catch (error) {
    const message = redact((error as Error).message);
    deps.log.error({ err: error, buildId }, 'build failed unexpectedly');
    await appendBuildLog(deps, build.id, [`error: ${message}`]).catch(() => {});
    await restoreServiceStatus(deps, service, statusBefore, `build ${build.id} failed`).catch(() => {});
    await finish(BuildStatus.FAILED, message, { error: message.slice(0, 4000) }).catch(() => {});
  }
}

/** Back to where the service was before the build; a never-deployed service is FAILED. */
async function restoreServiceStatus(deps: BuildRunnerDeps, service: Service, before: ServiceStatus, reason: string) {
  const current = await deps.db.service.findUniqueOrThrow({ where: { id: service.id } });
  const target = before !== ServiceStatus.BUILDING && before !== ServiceStatus.PENDING ? before : current.currentDeploymentId ? ServiceStatus.RUNNING : ServiceStatus.FAILED;
  await transitionServiceStatus(deps, service.id, target, reason, [ServiceStatus.BUILDING]);
}

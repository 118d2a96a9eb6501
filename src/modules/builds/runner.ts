// The controller side of builds: fetch the source, build it with Nix, turn the closure into an image,
// load (and push) it, then queue the deploy. A failed or cancelled build never touches what runs.
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
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
import type { Builder, BuildResult, BuildSource } from '../../platform/builder/index.js';
import { BUILT_IN_TEMPLATES_DIR, componentsInStartOrder, loadTemplate, startCommand, templateBuildSource } from '../../platform/builder/index.js';
import { loadImage, pushImage, writeImageArchive } from '../../platform/images/index.js';
import { detectSource, shallowClone, TEMPLATE_FOR_SOURCE } from '../../platform/git/index.js';
import { decrypt } from '../../platform/crypto/aead.js';
import { deriveKey } from '../../platform/crypto/tokens.js';
import { transitionServiceStatus } from '../services/service.js';
import { mainComponent } from '../templates/service.js';
import { queueDeployment, snapshotConfig, type DeployDeps } from '../deployments/service.js';
import type { PortSpec } from '../services/validation.js';
import { cancelFlagKey, FINISHED_BUILD_STATUSES, publishBuildStatus } from './service.js';

export type BuildRunnerDeps = DeployDeps & { db: Db; bus: ConvoyBus; config: Config; log: Logger; redis: Redis; builder: Builder; docker: Docker };

const LOG_FLUSH_MS = 250;
const LOG_FLUSH_LINES = 200;
const CANCEL_POLL_MS = 300;

/** Stores log lines in batches and publishes each batch, numbered, for live readers. */
class BuildLog {
  private pending: string[] = [];
  private written = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(private readonly deps: BuildRunnerDeps, private readonly buildId: string, private readonly redact: (line: string) => string) {}

  line(text: string) {
    for (const line of text.split('\n')) this.pending.push(this.redact(line).slice(0, 8192));
    if (this.pending.length >= LOG_FLUSH_LINES) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), LOG_FLUSH_MS);
  }

  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const lines = this.pending;
    this.pending = [];
    if (lines.length === 0) return this.flushing;
    const firstSeq = this.written;
    this.written += lines.length;
    this.flushing = this.flushing.then(async () => {
      await this.deps.db.$executeRaw`UPDATE "Build" SET logs = logs || ${lines.join('\n') + '\n'}, "updatedAt" = now() WHERE id = ${this.buildId}`;
      await this.deps.bus.publish('buildLog', this.buildId, { buildId: this.buildId, firstSeq, lines });
    });
    return this.flushing;
  }
}

function redactor(secrets: string[]): (line: string) => string {
  const present = secrets.filter((s) => s.length >= 4);
  return (line) => present.reduce((text, secret) => text.split(secret).join('***'), line);
}

/** Aborts when a cancel flag appears for this build. */
function watchCancellation(deps: BuildRunnerDeps, buildId: string, controller: AbortController) {
  const timer = setInterval(() => {
    void deps.redis.exists(cancelFlagKey(deps.config, buildId)).then((n) => n && controller.abort(), () => {});
  }, CANCEL_POLL_MS);
  return () => clearInterval(timer);
}

type PreparedSource = { source: BuildSource; entrypoint: (outPath: string) => Promise<string[]>; port: number | null; commitSha: string | null };

/** A user's build output runs `bin/convoy-start`, or its only program in bin/. */
async function defaultEntrypoint(outPath: string): Promise<string[]> {
  const preferred = join(outPath, 'bin', 'convoy-start');
  if (await stat(preferred).then(() => true, () => false)) return [preferred];
  const programs = await readdir(join(outPath, 'bin')).catch(() => [] as string[]);
  if (programs.length === 1) return [join(outPath, 'bin', programs[0])];
  throw new Error(`the build output has no bin/convoy-start${programs.length ? ` and several programs in bin/ (${programs.slice(0, 5).join(', ')})` : ''}: say which one starts the app`);
}

async function builtInTemplateSource(slug: string, repositoryDir?: string): Promise<Omit<PreparedSource, 'commitSha'>> {
  const template = await loadTemplate(join(BUILT_IN_TEMPLATES_DIR, slug));
  // The component that nothing else depends on is the app; multi-service groups deploy the others first.
  const component = componentsInStartOrder(template).at(-1)!;
  return {
    source: templateBuildSource(template, component.name, { repositoryDir }),
    entrypoint: async (outPath) => startCommand(component, outPath),
    port: component.port ?? null,
  };
}

async function prepareSource(deps: BuildRunnerDeps, service: Service, build: Build, workDir: string, log: BuildLog, signal: AbortSignal, token: string | null): Promise<PreparedSource> {
  switch (service.sourceType) {
    case SourceType.NIX:
      return { source: { kind: 'expression', expression: service.nixExpression! }, entrypoint: defaultEntrypoint, port: null, commitSha: null };
    case SourceType.TEMPLATE: {
      const template = await deps.db.template.findUniqueOrThrow({ where: { id: service.templateId! } });
      if (template.builtIn) return { ...(await builtInTemplateSource(template.slug)), commitSha: null };
      const main = mainComponent(template)!;
      return {
        source: { kind: 'expression', expression: main.expression! },
        entrypoint: async (outPath) => (main.start?.length ? startCommand({ start: main.start }, outPath) : defaultEntrypoint(outPath)),
        port: main.port ?? null,
        commitSha: null,
      };
    }
    case SourceType.GIT: {
      const repoDir = join(workDir, 'src');
      log.line(`cloning ${service.gitUrl} at ${build.gitRef}`);
      const { commitSha } = await shallowClone({
        url: service.gitUrl!,
        ref: build.gitRef ?? service.gitBranch ?? 'main',
        dir: repoDir,
        token: token ?? undefined,
        allowFile: deps.config.build.allowFileGitUrls,
        onLog: (line) => log.line(line),
        signal,
      });
      await deps.db.build.update({ where: { id: build.id }, data: { commitSha } });
      log.line(`checked out ${commitSha}`);
      const kind = await detectSource(repoDir);
      if (!kind) throw new Error('the repository has no default.nix or flake.nix, and no package.json, requirements.txt, pyproject.toml, go.mod or index.html to detect its language from');
      if (kind === 'nix') return { source: { kind: 'file', path: repoDir }, entrypoint: defaultEntrypoint, port: null, commitSha };
      log.line(`detected a ${kind} project: building it with the ${TEMPLATE_FOR_SOURCE[kind]} template`);
      return { ...(await builtInTemplateSource(TEMPLATE_FOR_SOURCE[kind], repoDir)), commitSha };
    }
    default:
      throw new Error('this service runs a ready image; there is nothing to build');
  }
}

function imageTag(service: Service, build: Build) {
  return `convoy/${service.id.toLowerCase()}:${build.id.toLowerCase()}`;
}

/** Idempotent: a finished build is left alone. */
export async function runBuild(deps: BuildRunnerDeps, buildId: string): Promise<void> {
  const build = await deps.db.build.findUnique({ where: { id: buildId }, include: { service: true } });
  if (!build || FINISHED_BUILD_STATUSES.includes(build.status)) return;
  const { service } = build;
  const organizationId = service.organizationId;
  const statusBefore = service.status;
  const token = service.gitTokenEnc ? decrypt(deriveKey(deps.config.secretKey, 'git-token'), service.gitTokenEnc) : null;
  const log = new BuildLog(deps, build.id, redactor(token ? [token] : []));
  const cancel = new AbortController();
  const stopWatching = watchCancellation(deps, build.id, cancel);
  const workDir = await mkdtemp(join(tmpdir(), 'convoy-build-'));
  const started = Date.now();

  const finish = async (status: BuildStatus, message: string, data: Record<string, unknown> = {}) => {
    await log.flush();
    await deps.db.build.update({ where: { id: build.id }, data: { status, finishedAt: new Date(), durationMs: Date.now() - started, ...data } });
    await publishBuildStatus(deps, build, organizationId, status, message);
    await deps.bus.publish('buildLog', build.id, { buildId: build.id, done: true, status });
  };

  try {
    await deps.db.build.update({ where: { id: build.id }, data: { status: BuildStatus.RUNNING, startedAt: new Date() } });
    await publishBuildStatus(deps, build, organizationId, BuildStatus.RUNNING, 'started');
    await transitionServiceStatus(deps, service.id, ServiceStatus.BUILDING, `build ${build.id} started`);

    let result: BuildResult;
    let prepared: PreparedSource;
    try {
      prepared = await prepareSource(deps, service, build, workDir, log, cancel.signal, token);
      result = await deps.builder.build(prepared.source, {
        onLog: (line) => log.line(line),
        signal: cancel.signal,
        timeoutMs: deps.config.build.timeoutSeconds * 1000,
      });
    } catch (error) {
      const message = redactor(token ? [token] : [])((error as Error).message);
      const status = cancel.signal.aborted ? BuildStatus.CANCELLED : BuildStatus.FAILED;
      log.line(status === BuildStatus.CANCELLED ? 'build cancelled' : `error: ${message}`);
      // The service first, the build last: whoever sees the build ended sees the service it left.
      await restoreServiceStatus(deps, service, statusBefore, `build ${build.id} ${status.toLowerCase()}`);
      await finish(status, message, { error: message.slice(0, 4000) });
      return;
    }

    if (result.status !== 'SUCCEEDED') {
      const status = result.status === 'CANCELLED' ? BuildStatus.CANCELLED : BuildStatus.FAILED;
      const message = result.status === 'TIMED_OUT' ? `time limit reached: ${result.error ?? ''}` : (result.error ?? result.status.toLowerCase());
      if (status === BuildStatus.FAILED) log.line(`error: ${message}`);
      await restoreServiceStatus(deps, service, statusBefore, `build ${build.id} ${status.toLowerCase()}: ${message.slice(0, 200)}`);
      await finish(status, message, { error: message.slice(0, 4000), derivation: result.drvPath });
      return;
    }

    log.line(result.cacheHit ? `cache hit: ${result.outPath} is already in the store` : `built ${result.outPath} in ${result.durationMs} ms`);
    const ports = (service.ports as PortSpec[]).map((p) => p.target);
    const archive = await writeImageArchive(result.closure, {
      entrypoint: await prepared.entrypoint(result.outPath!),
      exposedPorts: ports.length ? ports : prepared.port ? [prepared.port] : [],
      primaryPath: result.outPath!,
      // Nothing build-specific here: identical inputs must give identical image ids.
      labels: { 'convoy.service-id': service.id, ...(prepared.commitSha ? { 'convoy.commit': prepared.commitSha } : {}) },
    }, join(workDir, 'image.tar'));
    const loaded = await loadImage(deps.docker, archive.archivePath, imageTag(service, build));
    let imageRef = loaded.tag;
    if (deps.config.build.registryUrl) {
      const pushed = await pushImage(deps.docker, loaded.tag, deps.config.build.registryUrl);
      imageRef = pushed.reference;
      log.line(`pushed ${pushed.reference}${pushed.digest ? ` (${pushed.digest})` : ''}`);
    }
    log.line(`image ${imageRef} (${loaded.imageId}, ${archive.archiveSizeBytes} bytes)`);
    await finish(BuildStatus.SUCCEEDED, result.cacheHit ? 'cache hit' : 'built', {
      derivation: result.drvPath,
      storePath: result.outPath,
      closureSizeBytes: BigInt(result.closureSizeBytes),
      imageRef,
      imageId: loaded.imageId,
      imageSizeBytes: BigInt(archive.archiveSizeBytes),
      cacheHit: result.cacheHit,
    });

    const fresh = await deps.db.service.findUniqueOrThrow({ where: { id: service.id } });
    if (fresh.deletedAt) return;
    const triggeredBy = build.triggeredById ? { userId: build.triggeredById, organizationId, requestId: null as unknown as string } : null;
    await queueDeployment(deps, triggeredBy, fresh, { kind: DeploymentKind.DEPLOY, image: imageRef, replicas: fresh.replicas, config: snapshotConfig(fresh), reason: `deploy build ${build.id}${prepared.commitSha ? ` (${prepared.commitSha.slice(0, 12)})` : ''}`, buildId: build.id });
  } catch (error) {
    const message = redactor(token ? [token] : [])((error as Error).message);
    deps.log.error({ err: error, buildId }, 'build failed unexpectedly');
    log.line(`error: ${message}`);
    await restoreServiceStatus(deps, service, statusBefore, `build ${build.id} failed`).catch(() => {});
    await finish(BuildStatus.FAILED, message, { error: message.slice(0, 4000) }).catch(() => {});
  } finally {
    stopWatching();
    await rm(workDir, { recursive: true, force: true }).catch(() => {});
  }
}

/** Back to where the service was before the build; a never-deployed service is FAILED. */
async function restoreServiceStatus(deps: BuildRunnerDeps, service: Service, before: ServiceStatus, reason: string) {
  const current = await deps.db.service.findUniqueOrThrow({ where: { id: service.id } });
  const target = before !== ServiceStatus.BUILDING && before !== ServiceStatus.PENDING ? before : current.currentDeploymentId ? ServiceStatus.RUNNING : ServiceStatus.FAILED;
  await transitionServiceStatus(deps, service.id, target, reason, [ServiceStatus.BUILDING]);
}

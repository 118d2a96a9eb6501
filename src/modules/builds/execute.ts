// Running one build, wherever it runs (the controller, or a worker agent that claimed the job): fetch
// the source, build it with Nix, turn the closure into an image, load (and push) it. Everything it
// needs is in a serializable BuildSpec; the Git token is never part of it. The build asks for the token
// (`gitCredential`) only when it clones, and keeps it in memory for that alone (plus redaction).
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { Builder, BuildSource } from '../../platform/builder/index.js';
import { BUILT_IN_TEMPLATES_DIR, componentsInStartOrder, loadTemplate, startCommand, templateBuildSource } from '../../platform/builder/index.js';
import { loadImage, pushImage, writeImageArchive } from '../../platform/images/index.js';
import { detectSource, shallowClone, TEMPLATE_FOR_SOURCE } from '../../platform/git/index.js';
import type { OutboundPolicy } from '../../platform/net/index.js';

export type BuildSpecSource =
  /** A Nix expression; `start` names the start command when the output has no bin/convoy-start. */
  | { kind: 'expression'; expression: string; start?: string[] | null; port?: number | null }
  | { kind: 'builtInTemplate'; slug: string }
  /** `network`: the controller's outbound policy and clone timeouts (an agent applies the same rules). */
  | { kind: 'git'; url: string; ref: string; allowFile: boolean; network?: GitNetworkSettings };

export type GitNetworkSettings = { outbound: OutboundPolicy; timeoutMs: number; connectTimeoutMs: number };

export type BuildSpec = {
  buildId: string;
  serviceId: string;
  source: BuildSpecSource;
  /** The service's container ports; the image exposes them (or the template's port when empty). */
  ports: number[];
  imageTag: string;
  registryUrl: string | null;
  timeoutMs: number;
};

export type BuildOutcome = {
  status: 'SUCCEEDED' | 'FAILED' | 'CANCELLED';
  error?: string;
  commitSha?: string | null;
  derivation?: string | null;
  storePath?: string | null;
  closureSizeBytes?: number;
  imageRef?: string;
  imageId?: string;
  imageSizeBytes?: number;
  cacheHit?: boolean;
};

export type ExecuteDeps = { builder: Builder; docker: Docker };

type PreparedSource = { source: BuildSource; entrypoint: (outPath: string) => Promise<string[]>; port: number | null; commitSha: string | null; commitTime?: Date };

export function redactor(secrets: (string | null | undefined)[]): (line: string) => string {
  const present = secrets.filter((s): s is string => !!s && s.length >= 4);
  return (line) => present.reduce((text, secret) => text.split(secret).join('***'), line);
}

/** A redactor that learns secrets later (a token fetched mid-build), in raw and URL-encoded form. */
function growingRedactor() {
  const secrets: string[] = [];
  return {
    add(secret: string | null) {
      if (secret && secret.length >= 4) secrets.push(secret, encodeURIComponent(secret));
    },
    redact: (line: string) => secrets.reduce((text, secret) => text.split(secret).join('***'), line),
  };
}

/** Gives the repository's access token (null: none) for the clone about to start; called at most once. */
export type GitCredentialSource = () => Promise<string | null>;

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

async function prepareSource(spec: BuildSpec, workDir: string, onLog: (line: string) => void, signal: AbortSignal, gitCredential: GitCredentialSource): Promise<PreparedSource> {
  const { source } = spec;
  switch (source.kind) {
    case 'expression':
      return {
        source: { kind: 'expression', expression: source.expression },
        entrypoint: async (outPath) => (source.start?.length ? startCommand({ start: source.start }, outPath) : defaultEntrypoint(outPath)),
        port: source.port ?? null,
        commitSha: null,
      };
    case 'builtInTemplate':
      return { ...(await builtInTemplateSource(source.slug)), commitSha: null };
    case 'git': {
      const repoDir = join(workDir, 'src');
      onLog(`cloning ${source.url} at ${source.ref}`);
      // Fetched just now and dropped after the clone: nothing later in the build needs it.
      const token = await gitCredential();
      const { commitSha, commitTime } = await shallowClone({ url: source.url, ref: source.ref, dir: repoDir, token: token ?? undefined, allowFile: source.allowFile, ...source.network, onLog, signal });
      onLog(`checked out ${commitSha}`);
      const kind = await detectSource(repoDir);
      if (!kind) throw new Error('the repository has no default.nix or flake.nix, and no package.json, requirements.txt, pyproject.toml, go.mod or index.html to detect its language from');
      if (kind === 'nix') return { source: { kind: 'file', path: repoDir }, entrypoint: defaultEntrypoint, port: null, commitSha, commitTime };
      onLog(`detected a ${kind} project: building it with the ${TEMPLATE_FOR_SOURCE[kind]} template`);
      return { ...(await builtInTemplateSource(TEMPLATE_FOR_SOURCE[kind], repoDir)), commitSha, commitTime };
    }
  }
}

/**
 * Never throws for the build's own failures: they come back as FAILED (or CANCELLED when `signal`
 * aborted) with a redacted message. `workDir` is the caller's to create and remove.
 */
export async function executeBuild(deps: ExecuteDeps, spec: BuildSpec, options: { workDir: string; gitCredential: GitCredentialSource; onLog: (line: string) => void; signal: AbortSignal }): Promise<BuildOutcome> {
  const redaction = growingRedactor();
  const redact = redaction.redact;
  const onLog = (line: string) => options.onLog(redact(line));
  const gitCredential = async () => {
    const token = await options.gitCredential();
    redaction.add(token);
    return token;
  };
  let commitSha: string | null = null;
  try {
    const prepared = await prepareSource(spec, options.workDir, onLog, options.signal, gitCredential);
    commitSha = prepared.commitSha;
    const result = await deps.builder.build(prepared.source, { onLog: (line) => onLog(line), signal: options.signal, timeoutMs: spec.timeoutMs });
    if (result.status !== 'SUCCEEDED') {
      const status = result.status === 'CANCELLED' ? 'CANCELLED' : 'FAILED';
      const error = redact(result.status === 'TIMED_OUT' ? `time limit reached: ${result.error ?? ''}` : (result.error ?? result.status.toLowerCase()));
      if (status === 'FAILED') onLog(`error: ${error}`);
      return { status, error, commitSha, derivation: result.drvPath };
    }
    onLog(result.cacheHit ? `cache hit: ${result.outPath} is already in the store` : `built ${result.outPath} in ${result.durationMs} ms`);
    const archive = await writeImageArchive(result.closure, {
      entrypoint: await prepared.entrypoint(result.outPath!),
      exposedPorts: spec.ports.length ? spec.ports : prepared.port ? [prepared.port] : [],
      primaryPath: result.outPath!,
      // Nothing build-specific here: identical inputs must give identical image ids.
      labels: { 'convoy.service-id': spec.serviceId, ...(commitSha ? { 'convoy.commit': commitSha } : {}) },
      // The commit's time, not the build's: a rebuild of the same commit gives the same image id.
      created: prepared.commitTime,
    }, join(options.workDir, 'image.tar'));
    const loaded = await loadImage(deps.docker, archive.archivePath, spec.imageTag);
    let imageRef = loaded.tag;
    if (spec.registryUrl) {
      const pushed = await pushImage(deps.docker, loaded.tag, spec.registryUrl);
      imageRef = pushed.reference;
      onLog(`pushed ${pushed.reference}${pushed.digest ? ` (${pushed.digest})` : ''}`);
    }
    onLog(`image ${imageRef} (${loaded.imageId}, ${archive.archiveSizeBytes} bytes)`);
    return {
      status: 'SUCCEEDED',
      commitSha,
      derivation: result.drvPath,
      storePath: result.outPath,
      closureSizeBytes: result.closureSizeBytes,
      imageRef,
      imageId: loaded.imageId,
      imageSizeBytes: archive.archiveSizeBytes,
      cacheHit: result.cacheHit,
    };
  } catch (error) {
    const cancelled = options.signal.aborted;
    const message = redact((error as Error).message);
    onLog(cancelled ? 'build cancelled' : `error: ${message}`);
    return { status: cancelled ? 'CANCELLED' : 'FAILED', error: message, commitSha };
  }
}

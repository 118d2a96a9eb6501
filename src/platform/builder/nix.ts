// NixBuilder: the Builder on the node's Nix store (shared by every build on the node), driven through
// nix-instantiate / nix-store with argument arrays. A build is: instantiate -> if the output is
// already valid it is a cache hit -> otherwise realise -> query the closure and its size.
import { accessSync, constants as fsConstants, realpathSync, statSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { z } from 'zod';
import { isValidAllowlistEntry, parseHostList } from '../net/outbound-guard.js';
import type { BuildArgs, Builder, BuildOptions, BuildResult, BuildSandboxStatus, BuildSource, BuildStatus, EvaluateResult, LogStream } from './builder.js';
import { BuildEgressProxy, EGRESS_PROXY_PORT, FORWARDER_SCRIPT, egressProxyEnvironment, isValidBuildAllowedHost, type BuildEgressOptions } from './egress.js';
import { runProcessTree, type ProcessEnding, type TreeRunResult } from './process-tree.js';
import { BuildCgroup, DEFAULT_BUILD_LIMITS, probeSandbox, type BuildSandboxOptions, type SandboxProbe } from './sandbox.js';
import { CONVOY_NIX_DIR } from './templates.js';

export interface NixBuilderOptions {
  /** Binary caches to use instead of nix.conf's; [] uses none (offline nodes: avoids retry delays). */
  substituters?: string[];
  trustedPublicKeys?: string[];
  /** Any further `--option name value` pairs. */
  nixOptions?: Record<string, string>;
  /** NIX_PATH for `<nixpkgs>`; defaults to this process's NIX_PATH. */
  nixPath?: string;
  /** A static busybox handed to every expression that asks for `convoyBusybox` (offline templates). */
  staticBusybox?: string | null;
  defaultBuildTimeoutMs?: number;
  evaluationTimeoutMs?: number;
  /** Grace period between SIGTERM and SIGKILL when a build is stopped. */
  stopGraceMs?: number;
  /**
   * Restricted evaluation (default on): expressions cannot read the node's files (builtins.readFile
   * "/etc/...", ./.env), only Convoy's Nix library, their own source, NIX_PATH and `readablePaths`.
   */
  restrictEval?: boolean;
  readablePaths?: string[];
  /** Where to register built outputs as GC roots, so a garbage collection cannot take them. */
  gcRootDir?: string;
  /**
   * Isolation of tenant code (see sandbox.ts): by default every build and evaluation runs in Nix's
   * sandbox, in an empty network namespace and in a cgroup with these limits.
   */
  sandbox?: BuildSandboxOptions;
  /**
   * Egress for fixed-output builds (CONVOY_BUILD_ALLOWED_HOSTS), through a proxy of Convoy's own
   * (egress.ts). Without it, or with an empty list, they reach nothing. Needs the enforced sandbox.
   */
  egress?: BuildEgressOptions;
}

const DEFAULT_BUILD_TIMEOUT_MS = 60 * 60_000;
const DEFAULT_EVALUATION_TIMEOUT_MS = 60_000;
const MAX_ERROR_LENGTH = 4_000;
const ARG_NAME = /^[A-Za-z_][A-Za-z0-9_'-]*$/;
const ATTRIBUTE_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/**
 * The builder's settings from the environment: NIX_SUBSTITUTERS and NIX_TRUSTED_PUBLIC_KEYS (space
 * separated; an empty NIX_SUBSTITUTERS means no binary cache), NIX_PATH, NIX_GC_ROOT_DIR,
 * CONVOY_STATIC_BUSYBOX, BUILD_TIMEOUT_SECONDS, and the sandbox's CONVOY_BUILD_SANDBOX (on | off),
 * CONVOY_BUILD_MEMORY_MB, CONVOY_BUILD_CPUS, CONVOY_BUILD_PIDS (worker agents read them here; the API
 * through src/config.ts), and CONVOY_BUILD_ALLOWED_HOSTS (hosts fixed-output builds may reach through
 * Convoy's proxy) with the outbound guard's CONVOY_OUTBOUND_ALLOWED_HOSTS.
 */
export function nixBuilderOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): NixBuilderOptions {
  const list = z.string().transform((v) => v.split(/\s+/).filter(Boolean));
  const parsed = z
    .object({
      NIX_SUBSTITUTERS: list.optional(),
      NIX_TRUSTED_PUBLIC_KEYS: list.optional(),
      NIX_PATH: z.string().optional(),
      NIX_GC_ROOT_DIR: z.string().startsWith('/').optional(),
      CONVOY_STATIC_BUSYBOX: z.string().startsWith('/').optional(),
      BUILD_TIMEOUT_SECONDS: z.coerce.number().int().positive().optional(),
      CONVOY_BUILD_SANDBOX: z.enum(['on', 'off', '']).optional(),
      CONVOY_BUILD_ALLOWED_HOSTS: z.string().transform(parseHostList).refine((v) => v.every(isValidBuildAllowedHost), 'must list host names or host:port').optional(),
      CONVOY_OUTBOUND_ALLOWED_HOSTS: z.string().transform(parseHostList).refine((v) => v.every(isValidAllowlistEntry), 'must list host names, IP addresses or CIDRs').optional(),
      CONVOY_BUILD_MEMORY_MB: unsetIfEmpty(z.coerce.number().int().min(32).optional()),
      CONVOY_BUILD_CPUS: unsetIfEmpty(z.coerce.number().min(0.1).optional()),
      CONVOY_BUILD_PIDS: unsetIfEmpty(z.coerce.number().int().min(32).optional()),
    })
    .parse(env);
  return {
    substituters: parsed.NIX_SUBSTITUTERS,
    trustedPublicKeys: parsed.NIX_TRUSTED_PUBLIC_KEYS,
    nixPath: parsed.NIX_PATH,
    gcRootDir: parsed.NIX_GC_ROOT_DIR,
    staticBusybox: parsed.CONVOY_STATIC_BUSYBOX,
    defaultBuildTimeoutMs: parsed.BUILD_TIMEOUT_SECONDS === undefined ? undefined : parsed.BUILD_TIMEOUT_SECONDS * 1000,
    sandbox: {
      mode: parsed.CONVOY_BUILD_SANDBOX === 'off' ? 'off' : 'enforced',
      limits: {
        memoryMb: parsed.CONVOY_BUILD_MEMORY_MB ?? DEFAULT_BUILD_LIMITS.memoryMb,
        cpus: parsed.CONVOY_BUILD_CPUS ?? DEFAULT_BUILD_LIMITS.cpus,
        pids: parsed.CONVOY_BUILD_PIDS ?? DEFAULT_BUILD_LIMITS.pids,
      },
    },
    egress: parsed.CONVOY_BUILD_ALLOWED_HOSTS?.length ? { allowedHosts: parsed.CONVOY_BUILD_ALLOWED_HOSTS, outbound: { allowedHosts: parsed.CONVOY_OUTBOUND_ALLOWED_HOSTS ?? [] } } : undefined,
  };
}

/** An empty variable (as in a copied .env.example) means "not set". */
function unsetIfEmpty<T extends z.ZodTypeAny>(schema: T) {
  return z.preprocess((v) => (v === '' ? undefined : v), schema);
}

type StepFailure = { status: Exclude<BuildStatus, 'SUCCEEDED'>; error: string };
type Step<T> = { ok: true; value: T } | ({ ok: false } & StepFailure);
interface EvaluationTarget {
  args: string[];
  flake: boolean;
  cwd?: string;
  /** Paths this source's evaluation needs to read (restricted evaluation). */
  readablePaths: string[];
}
type BuildOutcome = { status: 'SUCCEEDED'; closure: string[]; closureSizeBytes: number } | StepFailure;
/** A finished step that ran tenant code: it may also have been stopped by its memory limit. */
type IsolatedRunResult = TreeRunResult & { memoryLimitMb?: number };
type Isolation = { kind: 'enforced'; probe: Extract<SandboxProbe, { available: true }> } | { kind: 'off' } | { kind: 'unavailable'; reason: string };

interface StepContext {
  signal: AbortSignal;
  /** Why `signal` was aborted, once it is. */
  stopReason: () => ProcessEnding;
  /** The limit behind `signal`, for messages. */
  timeoutMs: number;
  onLog?: (line: string, stream: LogStream) => void;
}

export class NixBuilder implements Builder {
  private readonly busybox: string | undefined;
  private readonly sandbox: BuildSandboxOptions;

  constructor(private readonly options: NixBuilderOptions = {}) {
    this.busybox = resolveStaticBusybox(options.staticBusybox === undefined ? '/bin/busybox' : options.staticBusybox);
    this.sandbox = options.sandbox ?? { mode: 'enforced', limits: DEFAULT_BUILD_LIMITS };
  }

  async sandboxStatus(): Promise<BuildSandboxStatus> {
    const isolation = await this.isolation();
    return isolation.kind === 'enforced' ? 'enforced' : isolation.kind === 'off' ? 'off (single-tenant)' : 'unavailable';
  }

  async evaluate(source: BuildSource, options: { timeoutMs?: number } = {}): Promise<EvaluateResult> {
    const timeoutMs = options.timeoutMs ?? this.options.evaluationTimeoutMs ?? DEFAULT_EVALUATION_TIMEOUT_MS;
    const refusal = await this.refusal();
    if (refusal) return { ok: false, error: refusal.error };
    const { controller, stopReason, dispose } = buildStopper(undefined, timeoutMs);
    try {
      const step = await this.instantiate(source, { signal: controller.signal, stopReason, timeoutMs });
      return step.ok ? { ok: true, drvPath: step.value } : { ok: false, error: step.error };
    } finally {
      dispose();
    }
  }

  async build(source: BuildSource, options: BuildOptions = {}): Promise<BuildResult> {
    const started = performance.now();
    const timeoutMs = options.timeoutMs ?? this.options.defaultBuildTimeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS;
    const { controller, stopReason, dispose } = buildStopper(options.signal, timeoutMs);
    const context: StepContext = { signal: controller.signal, stopReason, timeoutMs, onLog: options.onLog };
    const result: BuildResult = { status: 'FAILED', drvPath: null, outPath: null, closure: [], closureSizeBytes: 0, durationMs: 0, cacheHit: false };
    try {
      const outcome = (await this.refusal()) ?? (await this.runBuildSteps(source, context, result));
      if (outcome.status === 'SUCCEEDED') Object.assign(result, { status: outcome.status, closure: outcome.closure, closureSizeBytes: outcome.closureSizeBytes });
      else Object.assign(result, { status: outcome.status, error: outcome.error });
    } finally {
      dispose();
      result.durationMs = Math.round(performance.now() - started);
    }
    if (result.status !== 'SUCCEEDED') options.onLog?.(`build ${result.status.toLowerCase()}: ${result.error ?? ''}`.trim(), 'convoy');
    return result;
  }

  /** Fills `progress` as it goes, so a failed build still reports how far it got. */
  private async runBuildSteps(source: BuildSource, context: StepContext, progress: BuildResult): Promise<BuildOutcome> {
    const drv = await this.instantiate(source, context);
    if (!drv.ok) return drv;
    progress.drvPath = drv.value;

    const out = await this.mainOutput(drv.value, context);
    if (!out.ok) return out;
    progress.outPath = out.value;

    const valid = await this.isValid(out.value, context);
    if (!valid.ok) return valid;
    progress.cacheHit = valid.value;
    if (valid.value) {
      context.onLog?.(`${out.value} is already in the store: cache hit, nothing to build`, 'convoy');
    } else {
      const realised = await this.realise(drv.value, context);
      if (!realised.ok) return realised;
    }

    const rooted = await this.addGcRoot(out.value, context);
    if (!rooted.ok) return rooted;
    const closure = await this.closureWithSize(out.value, context);
    if (!closure.ok) return closure;
    return { status: 'SUCCEEDED', closure: closure.value.paths, closureSizeBytes: closure.value.sizeBytes };
  }

  /** Where the sandbox is wanted but cannot be had, tenant code is not run at all. */
  private async refusal(): Promise<StepFailure | undefined> {
    const isolation = await this.isolation();
    if (isolation.kind !== 'unavailable') return undefined;
    return {
      status: 'FAILED',
      error: `the build sandbox is unavailable on this node (${isolation.reason}): Convoy does not run tenant builds without it (CONVOY_BUILD_SANDBOX=off is for single-tenant installations only)`,
    };
  }

  private isolationProbe: Promise<Isolation> | undefined;

  private isolation(): Promise<Isolation> {
    this.isolationProbe ??= (async (): Promise<Isolation> => {
      if (this.sandbox.mode === 'off') return { kind: 'off' };
      const probe = await probeSandbox();
      return probe.available ? { kind: 'enforced', probe } : { kind: 'unavailable', reason: probe.reason };
    })();
    return this.isolationProbe;
  }

  private async instantiate(source: BuildSource, context: StepContext): Promise<Step<string>> {
    const target = await this.evaluationTarget(source);
    if (!target.ok) return target;
    const { flake, args, cwd, readablePaths } = target.value;
    const run = flake
      ? await this.runIsolated('nix', [...FLAKE_FEATURES, 'path-info', '--derivation', ...this.optionArgs(), ...args], context, cwd)
      : await this.runIsolated('nix-instantiate', [...this.optionArgs(), ...this.restrictionArgs(readablePaths), ...args], context, cwd);
    const failure = failureOf(run, context, 'evaluation failed');
    if (failure) return failure;
    const drvPaths = run.stdout.split('\n').map((l) => l.trim()).filter((l) => l.endsWith('.drv'));
    if (drvPaths.length !== 1) {
      const error = drvPaths.length === 0
        ? 'the expression does not evaluate to a derivation'
        : `the expression evaluates to ${drvPaths.length} derivations; it must give exactly one`;
      return { ok: false, status: 'FAILED', error };
    }
    return { ok: true, value: drvPaths[0] };
  }

  /**
   * Restricted evaluation: an expression (a tenant's) may only read Convoy's Nix library, its own
   * source, the busybox and NIX_PATH (nixpkgs), not the node's files. Flakes are pure already.
   */
  private restrictionArgs(readablePaths: string[]): string[] {
    if (this.options.restrictEval === false) return [];
    const paths = [CONVOY_NIX_DIR, ...(this.busybox ? [dirname(this.busybox)] : []), ...(this.options.readablePaths ?? []), ...readablePaths];
    // Named entries: readable, without making `<name>` lookups resolve into them.
    return ['--option', 'restrict-eval', 'true', ...[...new Set(paths)].flatMap((path, i) => ['-I', `convoy-readable-${i}=${path}`])];
  }

  private async evaluationTarget(source: BuildSource): Promise<Step<EvaluationTarget>> {
    const args = this.argstrArgs(source.args ?? {});
    if (!args.ok) return args;
    // A template's repository (its `src` argument) is the one path an argument may make readable.
    const srcArg = source.args?.src;
    const readablePaths = srcArg !== undefined && isAbsolute(srcArg) ? [srcArg] : [];
    switch (source.kind) {
      case 'expression':
        // Relative paths in a user expression resolve against an empty, harmless directory.
        return { ok: true, value: { args: [...args.value, '--expr', source.expression], flake: false, cwd: tmpdir(), readablePaths } };
      case 'template':
        if (!isAbsolute(source.templateDir)) return invalid('template directory must be an absolute path');
        if (!ATTRIBUTE_NAME.test(source.component)) return invalid(`invalid component name: ${JSON.stringify(source.component)}`);
        return {
          ok: true,
          value: { args: [...args.value, source.templateDir, '--attr', source.component], flake: false, readablePaths: [...readablePaths, source.templateDir] },
        };
      case 'file':
        return this.fileTarget(source.path, args.value, Object.keys(source.args ?? {}).length > 0, readablePaths);
    }
  }

  private async fileTarget(path: string, args: string[], userArgs: boolean, readablePaths: string[]): Promise<Step<EvaluationTarget>> {
    if (!isAbsolute(path)) return invalid('source path must be absolute');
    if (path.endsWith('.nix')) return { ok: true, value: { args: [...args, path], flake: false, readablePaths: [...readablePaths, dirname(path)] } };
    if (await exists(join(path, 'default.nix'))) return { ok: true, value: { args: [...args, path], flake: false, readablePaths: [...readablePaths, path] } };
    if (await exists(join(path, 'flake.nix'))) {
      if (userArgs) return invalid('a flake takes no arguments');
      // The path becomes a flake reference (a URL): '#' or '?' in it would change its meaning.
      if (!/^[A-Za-z0-9._/-]+$/.test(path)) return invalid(`unsupported characters in the flake path ${path}`);
      // Its default package: packages.<system>.default (or defaultPackage.<system>).
      return { ok: true, value: { args: [`path:${path}`], flake: true, readablePaths: [] } };
    }
    return invalid(`no default.nix or flake.nix in ${path}`);
  }

  private argstrArgs(args: BuildArgs): Step<string[]> {
    const all: BuildArgs = { ...(this.busybox ? { convoyBusybox: this.busybox } : {}), ...args };
    const result: string[] = [];
    for (const [name, value] of Object.entries(all).sort(([a], [b]) => a.localeCompare(b))) {
      if (!ARG_NAME.test(name)) return invalid(`invalid argument name: ${JSON.stringify(name)}`);
      result.push('--argstr', name, value);
    }
    return { ok: true, value: result };
  }

  private async mainOutput(drvPath: string, context: StepContext): Promise<Step<string>> {
    // The `out` binding is the main output; derivations without one fall back to their first output.
    const binding = await this.run('nix-store', ['--query', '--binding', 'out', drvPath], context);
    if (binding.ending === 'exited' && binding.exitCode === 0 && binding.stdout.trim()) return { ok: true, value: binding.stdout.trim() };
    const outputs = await this.run('nix-store', ['--query', '--outputs', drvPath], context);
    const failure = failureOf(outputs, context, 'could not read the derivation outputs');
    if (failure) return failure;
    const first = outputs.stdout.split('\n')[0]?.trim();
    return first ? { ok: true, value: first } : { ok: false, status: 'FAILED', error: `${drvPath} has no outputs` };
  }

  private async isValid(storePath: string, context: StepContext): Promise<Step<boolean>> {
    const run = await this.run('nix-store', ['--check-validity', '--print-invalid', storePath], context);
    const failure = failureOf(run, context, 'could not check the store');
    if (failure) return failure;
    return { ok: true, value: run.stdout.trim() === '' };
  }

  private async realise(drvPath: string, context: StepContext): Promise<Step<void>> {
    const isolated = (await this.isolation()).kind === 'enforced';
    if (isolated && this.usesBinaryCaches()) {
      const fetched = await this.substitute(drvPath, context);
      if (!fetched.ok) return fetched;
    }
    // In the empty network namespace there is no cache to reach: asking would only cost retries.
    const noCaches = isolated ? ['--option', 'substituters', ''] : [];
    // Only this step gets egress: evaluation never fetches (restricted, no import-from-derivation).
    const run = await this.runIsolated('nix-store', ['--realise', ...this.optionArgs(), ...noCaches, drvPath], context, undefined, { egress: true });
    const failure = failureOf(run, context, 'build failed');
    return failure ?? { ok: true, value: undefined };
  }

  private usesBinaryCaches(): boolean {
    return this.options.substituters === undefined || this.options.substituters.length > 0;
  }

  /**
   * Fetches from the binary caches, in the host's network namespace, whatever of the build's closure
   * they have. Only output paths are realised here, never a .drv: Nix can only substitute those, so
   * no builder (tenant code) runs with the host's network.
   */
  private async substitute(drvPath: string, context: StepContext): Promise<Step<void>> {
    // The plan is not build output: kept whole, and out of the build log.
    const plan = await this.run('nix-store', ['--realise', '--dry-run', ...this.optionArgs(), drvPath], context, undefined, { stderrTailLines: 1_000_000, log: false });
    const failure = failureOf(plan, context, 'could not query the binary caches');
    if (failure) return failure;
    const paths = pathsToFetch(plan.stderrTail);
    if (paths.length === 0) return { ok: true, value: undefined };
    const run = await this.run('nix-store', ['--realise', ...this.optionArgs(), ...paths], context);
    return failureOf(run, context, 'could not fetch from the binary caches') ?? { ok: true, value: undefined };
  }

  private async addGcRoot(outPath: string, context: StepContext): Promise<Step<void>> {
    if (!this.options.gcRootDir) return { ok: true, value: undefined };
    // Realising a valid path builds nothing; it only registers the root (a symlink named after it).
    const root = join(this.options.gcRootDir, basename(outPath));
    const run = await this.run('nix-store', ['--realise', '--add-root', root, outPath], context);
    return failureOf(run, context, 'could not register a GC root') ?? { ok: true, value: undefined };
  }

  private async closureWithSize(outPath: string, context: StepContext): Promise<Step<{ paths: string[]; sizeBytes: number }>> {
    const requisites = await this.run('nix-store', ['--query', '--requisites', outPath], context);
    const failure = failureOf(requisites, context, 'could not read the closure');
    if (failure) return failure;
    const paths = requisites.stdout.split('\n').map((l) => l.trim()).filter(Boolean).sort();
    const sizes = await this.run('nix-store', ['--query', '--size', ...paths], context);
    const sizeFailure = failureOf(sizes, context, 'could not read the closure size');
    if (sizeFailure) return sizeFailure;
    const sizeBytes = sizes.stdout.split('\n').filter(Boolean).reduce((sum, l) => sum + Number(l.trim()), 0);
    return { ok: true, value: { paths, sizeBytes } };
  }

  private optionArgs(): string[] {
    const options: Record<string, string> = {
      ...this.options.nixOptions,
      // Set explicitly, whatever nix.conf says: with it, evaluation would run builds wherever it runs.
      'allow-import-from-derivation': 'false',
      // No silent fallback to an unsandboxed build.
      ...(this.sandbox.mode === 'enforced' ? { sandbox: 'true', 'sandbox-fallback': 'false' } : { sandbox: 'false' }),
    };
    if (this.options.substituters) options.substituters = this.options.substituters.join(' ');
    if (this.options.trustedPublicKeys) options['trusted-public-keys'] = this.options.trustedPublicKeys.join(' ');
    return Object.entries(options).flatMap(([name, value]) => ['--option', name, value]);
  }

  /**
   * A step that runs tenant code (evaluation, the build): in its own cgroup and an empty network
   * namespace when the sandbox is enforced (see sandbox.ts).
   */
  private async runIsolated(tool: string, args: string[], context: StepContext, cwd?: string, network: { egress?: boolean } = {}): Promise<IsolatedRunResult> {
    const isolation = await this.isolation();
    if (isolation.kind !== 'enforced') return this.run(tool, args, context, cwd);
    const allowedHosts = network.egress ? (this.options.egress?.allowedHosts ?? []) : [];
    let cgroup: BuildCgroup;
    try {
      cgroup = await BuildCgroup.create(isolation.probe.hierarchies, this.sandbox.limits);
    } catch (error) {
      return { ending: 'exited', exitCode: undefined, stdout: '', stderrTail: [], spawnError: `could not create the build's cgroup: ${(error as Error).message}` };
    }
    let proxy: BuildEgressProxy | undefined;
    try {
      const { memoryMb, cpus, pids } = cgroup.limits;
      let argv = [tool, ...args];
      let reach = 'no network';
      if (allowedHosts.length > 0) {
        const ip = findExecutable('ip');
        if (!ip) return { ending: 'exited', exitCode: undefined, stdout: '', stderrTail: [], spawnError: 'CONVOY_BUILD_ALLOWED_HOSTS needs the `ip` command (iproute2) on this node' };
        try {
          proxy = await BuildEgressProxy.start({ ...this.options.egress!, allowedHosts }, (event) => {
            context.onLog?.(`egress ${event.kind}: ${event.target} (${event.reason})`, 'convoy');
          });
        } catch (error) {
          return { ending: 'exited', exitCode: undefined, stdout: '', stderrTail: [], spawnError: `could not start the build's egress proxy: ${(error as Error).message}` };
        }
        // The relay (egress.ts) runs in the build's namespace and cgroup and spawns nix-store from an argument array.
        argv = [process.execPath, '-e', FORWARDER_SCRIPT, ip, proxy.socketPath, String(EGRESS_PROXY_PORT), '--', ...argv];
        reach = `no network (fixed-output builds reach only ${allowedHosts.join(', ')} through Convoy's proxy)`;
      }
      context.onLog?.(`${tool} runs sandboxed: ${reach}, at most ${memoryMb} MB of memory, ${cpus} CPUs and ${pids} processes (cgroup ${cgroup.name})`, 'convoy');
      const wrapped = cgroup.wrap(['unshare', '--net', ...argv]);
      const run = await this.run(wrapped.file, wrapped.args, context, cwd, {}, proxy ? egressProxyEnvironment() : {});
      return (await cgroup.memoryLimitReached()) ? { ...run, memoryLimitMb: cgroup.limits.memoryMb } : run;
    } finally {
      await cgroup.destroy();
      await proxy?.close();
    }
  }

  private run(tool: string, args: string[], context: StepContext, cwd?: string, output: { stderrTailLines?: number; log?: boolean } = {}, extraEnv: Record<string, string> = {}): Promise<TreeRunResult> {
    return runProcessTree(tool, args, {
      env: { ...this.environment(), ...extraEnv },
      cwd,
      signal: context.signal,
      stopGraceMs: this.options.stopGraceMs,
      stderrTailLines: output.stderrTailLines,
      onLine: (line, stream) => {
        if (output.log !== false && !isNixNoise(line)) context.onLog?.(line, stream);
      },
    });
  }

  /** Only what Nix needs: evaluation can read the environment (builtins.getEnv), and ours holds secrets. */
  private environment(): Record<string, string> {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      TMPDIR: tmpdir(),
    };
    const nixPath = this.options.nixPath ?? process.env.NIX_PATH;
    if (nixPath) env.NIX_PATH = nixPath;
    return env;
  }
}

const FLAKE_FEATURES = ['--extra-experimental-features', 'nix-command flakes'];

function buildStopper(external: AbortSignal | undefined, timeoutMs: number) {
  const controller = new AbortController();
  let reason: ProcessEnding = 'cancelled';
  const onExternalAbort = () => controller.abort();
  if (external?.aborted) controller.abort();
  external?.addEventListener('abort', onExternalAbort, { once: true });
  const timer = setTimeout(() => {
    reason = 'timed_out';
    controller.abort();
  }, timeoutMs);
  return {
    controller,
    stopReason: () => reason,
    dispose: () => {
      clearTimeout(timer);
      external?.removeEventListener('abort', onExternalAbort);
    },
  };
}

/** Maps a finished nix command to a step failure, or undefined when it succeeded. */
function failureOf(run: IsolatedRunResult, context: StepContext, what: string): ({ ok: false } & StepFailure) | undefined {
  // Steps run under the build's signal only, which knows whether it was a cancel or the time limit.
  const ending = context.signal.aborted ? context.stopReason() : run.ending;
  if (ending === 'cancelled') return { ok: false, status: 'CANCELLED', error: 'build cancelled' };
  if (ending === 'timed_out') {
    return { ok: false, status: 'TIMED_OUT', error: `time limit reached: timed out after ${formatSeconds(context.timeoutMs)}` };
  }
  if (run.memoryLimitMb !== undefined) {
    const detail = cleanNixError(run.stderrTail);
    return { ok: false, status: 'FAILED', error: `memory limit of ${run.memoryLimitMb} MB reached${detail ? `\n${detail}` : ''}` };
  }
  if (run.spawnError) return { ok: false, status: 'FAILED', error: `${what}: ${run.spawnError}` };
  if (run.exitCode !== 0) return { ok: false, status: 'FAILED', error: cleanNixError(run.stderrTail) || `${what} (exit code ${run.exitCode})` };
  return undefined;
}

/** Nix's own error text without colours, warnings or the --show-trace hint. */
export function cleanNixError(stderrLines: string[]): string {
  const lines = stderrLines
    .map(stripAnsi)
    .filter((l) => !l.startsWith('warning: ') && !l.includes("use '--show-trace'"));
  // Builder output can precede Nix's error: keep from Nix's last `error:` block on.
  const lastError = lines.map((l) => l.startsWith('error:')).lastIndexOf(true);
  const text = (lastError >= 0 ? lines.slice(lastError) : lines).join('\n').trim();
  return text.length > MAX_ERROR_LENGTH ? `${text.slice(0, MAX_ERROR_LENGTH)}…` : text;
}

/**
 * The store paths in `nix-store --realise --dry-run`'s "will be fetched" list. Never a .drv: realising
 * one would build it, here with the host's network.
 */
function pathsToFetch(stderrLines: string[]): string[] {
  const paths: string[] = [];
  let inList = false;
  for (const line of stderrLines.map(stripAnsi)) {
    const path = line.trim();
    if (/will be fetched/.test(line)) inList = true;
    else if (!inList || !/^\s+\/nix\/store\//.test(line)) inList = false;
    else if (!path.endsWith('.drv')) paths.push(path);
  }
  return paths;
}

function formatSeconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

function stripAnsi(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;]*[A-Za-z]/g, '');
}

function isNixNoise(line: string): boolean {
  return line.startsWith("warning: you did not specify '--add-root'");
}

function invalid(error: string): { ok: false } & StepFailure {
  return { ok: false, status: 'FAILED', error };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** An executable on PATH or in the sbin directories (which a service's PATH may lack). */
function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  for (const dir of dirs) {
    const path = join(dir, name);
    try {
      accessSync(path, fsConstants.X_OK);
      return path;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/**
 * Busybox picks its applet from argv[0], so Nix needs the binary under its own name in a real
 * (non-symlinked) directory: Debian's /bin is a symlink to /usr/bin, hence the realpath.
 */
function resolveStaticBusybox(path: string | null): string | undefined {
  if (path === null) return undefined;
  try {
    const real = realpathSync(path);
    return basename(real) === 'busybox' && statSync(real).isFile() ? real : undefined;
  } catch {
    return undefined;
  }
}

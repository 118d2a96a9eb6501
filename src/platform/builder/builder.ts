// The Builder edge: turns a build source into a store path and its closure. Domain code depends on
// this interface only; `NixBuilder` (nix.ts) is the implementation.

/** What to build. Arguments are passed to the expression's function as strings (`--argstr`). */
export type BuildSource =
  | { kind: 'expression'; expression: string; args?: BuildArgs }
  /** A checked-out repository (or a .nix file) providing default.nix or flake.nix. */
  | { kind: 'file'; path: string; args?: BuildArgs }
  /** One component of a template directory (nix/templates/<name>), e.g. `app` or `db`. */
  | { kind: 'template'; templateDir: string; component: string; args?: BuildArgs };

export type BuildArgs = Record<string, string>;

export type EvaluateResult = { ok: true; drvPath: string } | { ok: false; error: string };

export type BuildStatus = 'SUCCEEDED' | 'FAILED' | 'CANCELLED' | 'TIMED_OUT';

/** 'convoy' lines are Convoy's own notes in the build log (cache hit, cancellation, ...). */
export type LogStream = 'stdout' | 'stderr' | 'convoy';

export interface BuildOptions {
  onLog?: (line: string, stream: LogStream) => void;
  /** Aborting cancels the build: the whole process tree is stopped and the build ends CANCELLED. */
  signal?: AbortSignal;
  /** Time limit for the whole build (evaluation included); the build then ends TIMED_OUT. */
  timeoutMs?: number;
}

export interface BuildResult {
  status: BuildStatus;
  /** Null when evaluation did not get as far as a derivation. */
  drvPath: string | null;
  /** The main (`out`) output; null unless known. */
  outPath: string | null;
  /** Every store path the output needs at run time, itself included; empty unless SUCCEEDED. */
  closure: string[];
  closureSizeBytes: number;
  durationMs: number;
  /** The output was already valid in the store, so nothing was built. */
  cacheHit: boolean;
  /** Clear error text for FAILED (and a short note for CANCELLED / TIMED_OUT). */
  error?: string;
}

export interface Builder {
  /** Parses, evaluates and instantiates the source (writes its .drv) without building it. */
  evaluate(source: BuildSource, options?: { timeoutMs?: number }): Promise<EvaluateResult>;
  build(source: BuildSource, options?: BuildOptions): Promise<BuildResult>;
  /** How tenant code is isolated (see sandbox.ts); builders that run no tenant code need not say. */
  sandboxStatus?(): Promise<BuildSandboxStatus>;
}

/** 'unavailable': the sandbox is wanted but this node cannot provide it, so builds are refused. */
export type BuildSandboxStatus = 'enforced' | 'off (single-tenant)' | 'unavailable';

// What evaluation jobs carry and answer, shared by the API, the controller and the worker agent (which
// must not pull in the API's code): see evaluations.ts.
import type { EvaluateResult } from '../../platform/builder/index.js';

/** Nix's own time limit for one evaluation on the executor: long enough for an `import <nixpkgs>`. */
export const EVALUATION_NIX_TIMEOUT_MS = 30_000;
/** Nix errors can be long; what a field error (and a job row) keeps of one. */
export const MAX_EVALUATION_ERROR = 4000;
/** Executors run this many evaluations at once, besides (not instead of) their builds. */
export const EVALUATION_CONCURRENCY = 4;

export type EvaluationJob = { expression: string };
/** What a controller's evaluation worker answers: the result and who evaluated it. */
export type EvaluationAnswer = EvaluateResult & { evaluatedBy: string };

export function noExecutorAnswered(seconds: number): string {
  return `the expression could not be evaluated: no build executor answered within ${seconds} s`;
}

/** Small and clean: a drv path, or Nix's error trimmed and cut to a bounded size. */
export function compactResult(result: EvaluateResult): EvaluateResult {
  return result.ok ? { ok: true, drvPath: result.drvPath } : { ok: false, error: result.error.trim().slice(0, MAX_EVALUATION_ERROR) || 'does not evaluate' };
}


// What template saves need from the build executor: templates depend on this interface, and the builds
// module implements it (ExecutorEvaluator), so the dependency runs one way (builds -> templates).
import type { EvaluateResult } from '../../platform/builder/index.js';

export interface Evaluator {
  /** Evaluates on the build executor; `ok: false` carries Nix's error, or says that no executor answered. */
  evaluate(organizationId: string, expression: string): Promise<EvaluateResult>;
  close(): Promise<void>;
}

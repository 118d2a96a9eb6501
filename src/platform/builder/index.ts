export type { Builder, BuildArgs, BuildOptions, BuildResult, BuildSandboxStatus, BuildSource, BuildStatus, EvaluateResult, LogStream } from './builder.js';
export { DEFAULT_BUILD_LIMITS, probeSandbox, type BuildLimits, type BuildSandboxMode, type BuildSandboxOptions } from './sandbox.js';
export { NixBuilder, cleanNixError, nixBuilderOptionsFromEnv, type NixBuilderOptions } from './nix.js';
export {
  BUILT_IN_TEMPLATES_DIR,
  CONVOY_NIX_DIR,
  TemplateError,
  componentsInStartOrder,
  loadTemplate,
  loadTemplates,
  startCommand,
  templateBuildSource,
  type Template,
  type TemplateComponent,
} from './templates.js';

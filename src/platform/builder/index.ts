export type { Builder, BuildArgs, BuildOptions, BuildResult, BuildSource, BuildStatus, EvaluateResult, LogStream } from './builder.js';
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

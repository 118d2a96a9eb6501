export { GitError, shallowClone, type CloneOptions, type CloneResult, type GitErrorCode } from './clone.js';
export { detectSource, STATIC_SITE_DIRS, TEMPLATE_FOR_SOURCE, type SourceKind } from './detect.js';
export { isCommitSha, validateGitRef, validateGitUrl, type GitUrlPolicy, type GitValidation } from './validate.js';

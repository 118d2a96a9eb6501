export { DEFAULT_CLONE_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS, GitError, shallowClone, type CloneOptions, type CloneResult, type GitErrorCode } from './clone.js';
export { detectSource, STATIC_SITE_DIRS, TEMPLATE_FOR_SOURCE, type SourceKind } from './detect.js';
export { gitRemoteOf, isCommitSha, validateGitRef, validateGitUrl, validateGitUrlShape, type GitRemote, type GitUrlPolicy, type GitValidation } from './validate.js';

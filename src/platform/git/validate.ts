// Validation of Git URLs and refs: the one definition shared by API input validation and the clone
// code. Deliberately stricter than Git: anything that could be read as an option (--upload-pack=,
// -oProxyCommand=), a transport helper (ext::), a shell fragment or a look-alike character is refused.
// The host must be a public host name (src/platform/net): no IP literals, no loopback, private,
// link-local or metadata hosts, unless the operator allowlisted them.
import { checkHostLiteral, type OutboundPolicy } from '../net/outbound-guard.js';

export type GitValidation = { ok: true } | { ok: false; reason: string };

export interface GitUrlPolicy {
  /** file:// URLs (local repositories; development and tests). Default false. */
  allowFile?: boolean;
  /** Plain http:// (a Git server on a trusted network). Default false. */
  allowHttp?: boolean;
  /** Which hosts may be contacted: the installation's allowlist and its own hosts. */
  outbound?: OutboundPolicy;
}

/** Where a validated Git URL points: what the clone resolves, checks and pins. */
export type GitRemote = { scheme: 'file' } | { scheme: 'https' | 'http' | 'ssh'; host: string; port: number };

const MAX_URL_LENGTH = 2048;
const MAX_REF_LENGTH = 255;
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;
const HOST = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const USER = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;
const PATH_SEGMENT = /^[A-Za-z0-9._~+-]+$/;

const ok: GitValidation = { ok: true };
const refuse = (reason: string): GitValidation => ({ ok: false, reason });

/** The whole rule: the URL's shape, then its host against the outbound policy. */
export function validateGitUrl(url: string, policy: GitUrlPolicy = {}): GitValidation {
  const shape = validateGitUrlShape(url, policy);
  if (!shape.ok) return shape;
  const remote = gitRemoteOf(url);
  if (!remote) return refuse('Git URL has an invalid host name');
  if (remote.scheme === 'file') return ok;
  const host = checkHostLiteral(remote.host, policy.outbound, { refuseIpLiterals: true });
  return host.ok ? ok : refuse(`Git URL host ${host.reason}`);
}

/**
 * The URL's shape alone, for checks that run without the installation's configuration (the API's
 * input schema); validateGitUrl runs the host rules on top.
 */
export function validateGitUrlShape(url: string, policy: GitUrlPolicy = {}): GitValidation {
  if (typeof url !== 'string' || url.length === 0) return refuse('Git URL is required');
  if (url.length > MAX_URL_LENGTH) return refuse(`Git URL is longer than ${MAX_URL_LENGTH} characters`);
  if (!PRINTABLE_ASCII.test(url)) return refuse('Git URL must be plain ASCII without spaces or control characters');
  if (url.startsWith('-')) return refuse('Git URL must not start with "-"');
  // IPv6 literals ([::1]) would otherwise read as a transport helper or forbidden characters.
  if (/^(?:[a-z][a-z0-9+.-]*:\/\/)?(?:[^@/[]*@)?\[/.test(url)) return refuse('Git URL must name a host, not an IPv6 address: use a host name');
  if (url.includes('::')) return refuse('Git transport helpers ("transport::address") are not allowed');
  if (/[;&|`$<>(){}\\'"*?!#,=[\]^%]/.test(url)) return refuse('Git URL contains characters that are not allowed');

  const schemeMatch = /^([a-z][a-z0-9+.-]*):\/\//.exec(url);
  if (!schemeMatch) return validateScpLike(url);
  const scheme = schemeMatch[1];
  const rest = url.slice(schemeMatch[0].length);
  switch (scheme) {
    case 'https':
      return validateNetworkUrl(rest, { userAllowed: false });
    case 'http':
      return policy.allowHttp ? validateNetworkUrl(rest, { userAllowed: false }) : refuse('Git URL must use https:// (plain http is not allowed)');
    case 'ssh':
      return validateNetworkUrl(rest, { userAllowed: true });
    case 'file':
      if (!policy.allowFile) return refuse('file:// Git URLs are not allowed here');
      return rest.startsWith('/') ? validatePath(rest.slice(1)) : refuse('file:// URL must name an absolute path (file:///...)');
    default:
      return refuse('Git URL must use https://, ssh:// or the user@host:path form');
  }
}

/** "[user@]host[:port]/path" after the scheme; credentials never belong in the URL. */
function validateNetworkUrl(rest: string, options: { userAllowed: boolean }): GitValidation {
  const slash = rest.indexOf('/');
  if (slash < 0) return refuse('Git URL must include a repository path');
  let authority = rest.slice(0, slash);
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    if (!options.userAllowed) return refuse('Git URL must not contain credentials; use the access token field');
    if (!USER.test(authority.slice(0, at))) return refuse('Git URL has an invalid user name');
    authority = authority.slice(at + 1);
  }
  const [host, port, ...extra] = authority.split(':');
  if (extra.length > 0 || !HOST.test(host ?? '')) return refuse('Git URL has an invalid host name');
  if (port !== undefined && !(/^[0-9]{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) return refuse('Git URL has an invalid port');
  return validatePath(rest.slice(slash + 1));
}

/** scp-like "user@host:path", as Git reads it when there is no scheme. */
function validateScpLike(url: string): GitValidation {
  const match = /^([^@:/]+)@([^:/]+):(.+)$/.exec(url);
  if (!match) return refuse('Git URL must use https://, ssh:// or the user@host:path form');
  const [, user, host, path] = match;
  if (!USER.test(user)) return refuse('Git URL has an invalid user name');
  if (!HOST.test(host)) return refuse('Git URL has an invalid host name');
  return validatePath(path.startsWith('/') ? path.slice(1) : path);
}

function validatePath(path: string): GitValidation {
  const segments = path.replace(/\/$/, '').split('/');
  for (const segment of segments) {
    if (!PATH_SEGMENT.test(segment)) return refuse('Git URL has an invalid repository path');
    if (segment === '.' || segment === '..' || segment.startsWith('-')) return refuse('Git URL has an invalid repository path');
  }
  return ok;
}

/** A branch name or a full commit SHA, as accepted for builds. */
export function validateGitRef(ref: string): GitValidation {
  if (typeof ref !== 'string' || ref.length === 0) return refuse('branch or commit is required');
  if (ref.length > MAX_REF_LENGTH) return refuse(`branch name is longer than ${MAX_REF_LENGTH} characters`);
  if (!/^[A-Za-z0-9._/-]+$/.test(ref)) return refuse('branch name may only contain letters, digits, ".", "_", "-" and "/"');
  if (ref.startsWith('-')) return refuse('branch name must not start with "-"');
  if (ref.startsWith('/') || ref.endsWith('/') || ref.includes('//')) return refuse('branch name has an empty path component');
  if (ref.includes('..')) return refuse('branch name must not contain ".."');
  if (ref.endsWith('.') || ref.endsWith('.lock')) return refuse('branch name must not end with "." or ".lock"');
  if (ref.split('/').some((part) => part.startsWith('.'))) return refuse('branch name components must not start with "."');
  return ok;
}

/** Scheme, host and port of a URL that passed validateGitUrlShape; null for anything else. */
export function gitRemoteOf(url: string): GitRemote | null {
  if (url.startsWith('file://')) return { scheme: 'file' };
  const network = /^(https|http|ssh):\/\/(?:[^@/]*@)?([^:/@]+)(?::([0-9]{1,5}))?\//.exec(url);
  if (network) {
    const scheme = network[1] as 'https' | 'http' | 'ssh';
    const port = network[3] ? Number(network[3]) : DEFAULT_PORTS[scheme];
    return port >= 1 && port <= 65535 ? { scheme, host: network[2].toLowerCase(), port } : null;
  }
  const scpLike = /^[^@:/]+@([^:/]+):/.exec(url);
  return scpLike ? { scheme: 'ssh', host: scpLike[1].toLowerCase(), port: 22 } : null;
}

const DEFAULT_PORTS = { https: 443, http: 80, ssh: 22 } as const;

export function isCommitSha(ref: string): boolean {
  return /^[0-9a-f]{40}$/.test(ref) || /^[0-9a-f]{64}$/.test(ref);
}

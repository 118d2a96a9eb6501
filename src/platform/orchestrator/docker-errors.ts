// Maps dockerode / Engine API failures onto OrchestratorError codes, so callers branch on a code
// rather than on Docker's wording. The Engine often wraps Swarm's gRPC status in a 500 or 400.
import { OrchestratorError, type OrchestratorErrorCode } from './orchestrator.js';

type DockerApiError = Error & { statusCode?: number; json?: { message?: string } | null; code?: string };

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH']);

const GRPC_CODES: Array<[string, OrchestratorErrorCode]> = [
  ['code = NotFound', 'NOT_FOUND'],
  ['code = AlreadyExists', 'CONFLICT'],
  ['name conflicts with an existing object', 'CONFLICT'], // a concurrent create, reported as code Unknown
  ['code = FailedPrecondition', 'CONFLICT'],
  ['update out of sequence', 'CONFLICT'],
  ['code = InvalidArgument', 'INVALID'],
  ['code = Unavailable', 'UNAVAILABLE'],
];

export function toOrchestratorError(error: unknown, action: string): Error {
  if (error instanceof OrchestratorError || isAbort(error)) return error as Error;
  const apiError = error as DockerApiError;
  const detail = dockerMessage(apiError);
  return new OrchestratorError(classify(apiError, detail), `${action}: ${detail}`, { cause: error });
}

export function isAbort(error: unknown): boolean {
  return (error as Error | undefined)?.name === 'AbortError';
}

function classify(error: DockerApiError, detail: string): OrchestratorErrorCode {
  if (error.code && UNREACHABLE_CODES.has(error.code)) return 'UNAVAILABLE';
  const fromGrpc = GRPC_CODES.find(([marker]) => detail.includes(marker));
  if (fromGrpc) return fromGrpc[1];
  switch (error.statusCode) {
    case 404:
      return 'NOT_FOUND';
    case 409:
    case 403: // a local network with active endpoints
      return 'CONFLICT';
    case 400:
      return 'INVALID';
    default:
      return 'UNAVAILABLE';
  }
}

function dockerMessage(error: DockerApiError): string {
  if (error.json?.message) return error.json.message.trim();
  if (error.code && UNREACHABLE_CODES.has(error.code)) return `cannot reach the Docker engine (${error.message})`;
  // dockerode prefixes "(HTTP code N) reason - "; the engine's own text follows.
  return (error.message ?? String(error)).replace(/^\(HTTP code \d+\) [^-]*- /, '').trim();
}

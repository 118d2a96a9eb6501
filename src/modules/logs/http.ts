// GET /api/services/:id/logs?format=text|json|csv&since=&until=&search=&limit= with the usual bearer token.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { App } from '../../app.js';
import { authenticate } from '../auth/service.js';
import { DomainError, NotFoundError, RETRY_AFTER_SECONDS, UnauthenticatedError, ValidationError } from '../common/errors.js';
import { asServiceUnavailable } from '../common/unavailable.js';
import { hasUnstorableCharacters, UNSTORABLE_MESSAGE } from '../common/parse.js';
import { formatLogs, readServiceLogs, type LogFormat } from './service.js';

export const LOG_DOWNLOAD_PATH = /^\/api\/services\/([A-Za-z0-9_-]{1,64})\/logs$/;

const CONTENT_TYPES: Record<LogFormat, string> = { text: 'text/plain; charset=utf-8', json: 'application/x-ndjson', csv: 'text/csv; charset=utf-8' };
const FILE_EXTENSIONS: Record<LogFormat, string> = { text: 'log', json: 'ndjson', csv: 'csv' };

// Query parameters are parsed strictly: `limit=abc` once became NaN (which passed the range check) and
// `format=constructor` a property of Object.prototype. An empty value (`since=`) means not given.
const FORMATS: readonly LogFormat[] = ['text', 'json', 'csv'];
const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?$/;
const WHOLE_NUMBER = /^\d{1,6}$/;
const KNOWN_PARAMETERS = new Set(['format', 'since', 'until', 'search', 'limit']);

function parseDate(value: string | null, field: string): Date | null {
  if (!value) return null;
  const date = new Date(value);
  if (!ISO_TIMESTAMP.test(value) || Number.isNaN(date.getTime())) throw ValidationError.single([field], 'must be an ISO-8601 timestamp such as 2026-01-31T12:00:00Z');
  return date;
}

function parseFormat(value: string | null): LogFormat {
  if (!value) return 'text';
  const format = FORMATS.find((f) => f === value);
  if (!format) throw ValidationError.single(['format'], 'must be text, json or csv');
  return format;
}

function parseLimit(value: string | null): number {
  if (!value) return 10_000;
  if (!WHOLE_NUMBER.test(value)) throw ValidationError.single(['limit'], 'must be a whole number between 1 and 10000');
  return Number(value);
}

/** Each parameter at most once, and none this endpoint does not know (a typo would be silently ignored). */
function checkParameters(params: URLSearchParams) {
  const seen = new Set<string>();
  for (const name of params.keys()) {
    if (!KNOWN_PARAMETERS.has(name)) throw ValidationError.single([name.slice(0, 64)], 'is not a parameter of log downloads (format, since, until, search, limit)');
    if (seen.has(name)) throw ValidationError.single([name], 'must be given once');
    seen.add(name);
  }
  const search = params.get('search');
  if (search !== null && hasUnstorableCharacters(search)) throw ValidationError.single(['search'], UNSTORABLE_MESSAGE);
}

function send(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

export async function handleLogDownload(app: App, req: IncomingMessage, res: ServerResponse, serviceId: string) {
  try {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const headers = { get: (name: string) => (req.headers[name.toLowerCase()] as string | undefined) ?? null };
    const caller = await authenticate(app, headers);
    if (caller.kind !== 'user') throw new UnauthenticatedError();
    if (!caller.organization) throw new NotFoundError('Service', serviceId);
    checkParameters(url.searchParams);
    const format = parseFormat(url.searchParams.get('format'));
    const actor = { userId: caller.userId, organizationId: caller.organization.organizationId, role: caller.organization.role, requestId: '' };
    // The client giving up cancels the Docker requests.
    const clientGone = new AbortController();
    res.once('close', () => clientGone.abort());
    const entries = await readServiceLogs(app, actor, serviceId, {
      since: parseDate(url.searchParams.get('since'), 'since'),
      until: parseDate(url.searchParams.get('until'), 'until'),
      search: url.searchParams.get('search'),
      limit: parseLimit(url.searchParams.get('limit')),
    }, clientGone.signal);
    res.writeHead(200, { 'content-type': CONTENT_TYPES[format], 'content-disposition': `attachment; filename="${serviceId}-logs.${FILE_EXTENSIONS[format]}"` });
    res.end(formatLogs(entries, format));
  } catch (error) {
    const outage = asServiceUnavailable(error);
    if (outage) {
      app.log.warn({ err: error, dependency: outage.dependency }, 'log download: dependency unavailable');
      res.setHeader('retry-after', String(RETRY_AFTER_SECONDS));
      return send(res, 503, { error: outage.message, code: 'SERVICE_UNAVAILABLE', dependency: outage.dependency, retryable: true });
    }
    if (error instanceof UnauthenticatedError) return send(res, 401, { error: error.message });
    if (error instanceof NotFoundError) return send(res, 404, { error: error.message });
    if (error instanceof ValidationError) return send(res, 400, { error: error.message, fieldErrors: error.fieldErrors });
    if (error instanceof DomainError) return send(res, 400, { error: error.message });
    app.log.error({ err: error }, 'log download failed');
    send(res, 500, { error: 'Unexpected error' });
  }
}

// GET /api/services/:id/logs?format=text|json|csv&since=&until=&search=&limit= with the usual bearer token.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { App } from '../../app.js';
import { authenticate } from '../auth/service.js';
import { DomainError, NotFoundError, UnauthenticatedError, ValidationError } from '../common/errors.js';
import { formatLogs, readServiceLogs, type LogFormat } from './service.js';

export const LOG_DOWNLOAD_PATH = /^\/api\/services\/([A-Za-z0-9_-]{1,64})\/logs$/;

const CONTENT_TYPES: Record<LogFormat, string> = { text: 'text/plain; charset=utf-8', json: 'application/x-ndjson', csv: 'text/csv; charset=utf-8' };

function parseDate(value: string | null, field: string): Date | null {
  if (!value) return null;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw ValidationError.single([field], 'must be an ISO-8601 timestamp');
  return date;
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
    const format = (url.searchParams.get('format') ?? 'text') as LogFormat;
    if (!(format in CONTENT_TYPES)) throw ValidationError.single(['format'], 'must be text, json or csv');
    const limit = url.searchParams.get('limit');
    const actor = { userId: caller.userId, organizationId: caller.organization.organizationId, role: caller.organization.role, requestId: '' };
    const entries = await readServiceLogs(app, actor, serviceId, {
      since: parseDate(url.searchParams.get('since'), 'since'),
      until: parseDate(url.searchParams.get('until'), 'until'),
      search: url.searchParams.get('search'),
      limit: limit ? Number(limit) : 10_000,
    });
    res.writeHead(200, { 'content-type': CONTENT_TYPES[format], 'content-disposition': `attachment; filename="${serviceId}-logs.${format === 'json' ? 'ndjson' : format}"` });
    res.end(formatLogs(entries, format));
  } catch (error) {
    if (error instanceof UnauthenticatedError) return send(res, 401, { error: error.message });
    if (error instanceof NotFoundError) return send(res, 404, { error: error.message });
    if (error instanceof DomainError) return send(res, 400, { error: error.message });
    app.log.error({ err: error }, 'log download failed');
    send(res, 500, { error: 'Unexpected error' });
  }
}

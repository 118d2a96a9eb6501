// The one place that tells "PostgreSQL cannot be reached" apart from every other database error. The
// signs come from pg (socket errors, server shutdown codes, the pool's own timeout) and from Prisma's
// driver adapter, which wraps them (error.cause.kind, meta.driverAdapterError) or renames them (P10xx).

const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH']);
// 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now (starting up or shutting down),
// 53300 too many connections, 08xxx connection exceptions.
const SERVER_CODES = /^(57P0[123]|53300|08\d{3})$/;
// Prisma: can't reach server, timed out, server closed the connection, pool timeout.
const PRISMA_CODES = new Set(['P1001', 'P1002', 'P1017', 'P2024']);
const ADAPTER_KINDS = new Set(['DatabaseNotReachable', 'ConnectionClosed', 'SocketTimeout', 'TooManyConnections']);
const MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Can't reach database server|the database system is (shutting down|starting up)|terminating connection due to administrator command/i;

// pg's own words for a lost or unobtainable connection (it gives these errors no code).
const PG_MESSAGES = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/;

export function isPostgresUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  // Socket codes alone say nothing about which server (Docker's socket refuses connections too): they
  // count only inside an error from Prisma or its adapter, which every query goes through.
  if (/^Prisma|^DriverAdapterError$/.test(error.name)) return visit(error, 0, new Set());
  const code = (error as { code?: unknown }).code;
  const fromServer = typeof (error as { severity?: unknown }).severity === 'string' && typeof code === 'string' && SERVER_CODES.test(code);
  return fromServer || PG_MESSAGES.test(error.message);
}

function visit(value: unknown, depth: number, seen: Set<unknown>): boolean {
  if (!value || typeof value !== 'object' || depth > 5 || seen.has(value)) return false;
  seen.add(value);
  const v = value as Record<string, unknown>;
  for (const key of ['code', 'originalCode']) {
    const code = v[key];
    if (typeof code === 'string' && (SOCKET_CODES.has(code) || SERVER_CODES.test(code) || PRISMA_CODES.has(code))) return true;
  }
  if (typeof v.kind === 'string' && ADAPTER_KINDS.has(v.kind)) return true;
  if (typeof v.message === 'string' && MESSAGES.test(v.message)) return true;
  const meta = v.meta as Record<string, unknown> | undefined;
  return [v.cause, meta, meta?.driverAdapterError, ...(Array.isArray(v.errors) ? v.errors : [])].some((next) => visit(next, depth + 1, seen));
}

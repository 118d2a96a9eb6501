import { z } from 'zod';
import type { GraphQLContext } from '../../graphql/context.js';
import type { Actor } from '../auth/caller.js';
import { UnauthenticatedError } from './errors.js';

/** The acting user inside their organization; `member` scope guarantees it exists. */
export function actorOf(ctx: GraphQLContext): Actor {
  if (!ctx.actor) throw new UnauthenticatedError();
  return ctx.actor;
}

export function userIdOf(ctx: GraphQLContext): string {
  if (ctx.caller.kind !== 'user') throw new UnauthenticatedError();
  return ctx.caller.userId;
}

/** The calling worker agent (a worker credential); `worker` scope guarantees it. */
export function workerIdOf(ctx: GraphQLContext): string {
  if (ctx.caller.kind !== 'worker') throw new UnauthenticatedError();
  return ctx.caller.workerId;
}

// Pagination arguments of every connection (set once, in the builder's relay options). Checked before the
// resolver, so a cursor Convoy never issued is BAD_USER_INPUT instead of an internal error inside Prisma.
// Cursors are plugin-prisma's: base64 of `GPC:S:<id>`, every connection paging by its id.
const CURSOR_CONTENT = /^GPC:S:[A-Za-z0-9_-]{1,64}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function isIssuedCursor(value: string): boolean {
  if (value.length % 4 !== 0 || !BASE64.test(value)) return false;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  return CURSOR_CONTENT.test(decoded) && Buffer.from(decoded).toString('base64') === value;
}

export const cursorArgument = z
  .string()
  .max(100, 'must be a cursor returned by this API')
  .refine(isIssuedCursor, 'must be a cursor returned by this API')
  .nullish();

export const pageSizeArgument = z.number().int().min(0, 'must not be negative').nullish();

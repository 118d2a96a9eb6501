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

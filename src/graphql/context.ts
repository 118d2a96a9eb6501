import type { App } from '../app.js';
import type { Actor, Caller } from '../modules/auth/caller.js';

/** Per-operation context, built the same way for HTTP, SSE and WebSocket operations. */
export type GraphQLContext = {
  requestId: string;
  app: App;
  caller: Caller;
  /** Set when the caller is a user acting inside an organization they belong to. */
  actor: Actor | null;
};

// The one SchemaBuilder; each domain module adds its types in src/modules/<domain>/schema.ts.
import SchemaBuilder from '@pothos/core';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import ErrorsPlugin from '@pothos/plugin-errors';
import ValidationPlugin from '@pothos/plugin-validation';
import PrismaPlugin from '@pothos/plugin-prisma';
import RelayPlugin from '@pothos/plugin-relay';
import SimpleObjectsPlugin from '@pothos/plugin-simple-objects';
import { GraphQLError } from 'graphql';
import type PrismaTypes from '../generated/pothos-types.js';
import { getDatamodel } from '../generated/pothos-types.js';
import type { GraphQLContext } from './context.js';
import { ValidationError } from '../modules/common/errors.js';
import type { Actor } from '../modules/auth/caller.js';
import { platformAdminLoader } from '../modules/auth/platform-admins.js';
import { cursorArgument, pageSizeArgument } from '../modules/common/graphql.js';

export const builder = new SchemaBuilder<{
  Context: GraphQLContext;
  PrismaTypes: PrismaTypes;
  AuthScopes: { authenticated: boolean; member: boolean; worker: boolean; platformAdmin: boolean };
  AuthContexts: {
    authenticated: GraphQLContext & { caller: { kind: 'user' } };
    member: GraphQLContext & { actor: Actor };
    worker: GraphQLContext & { caller: { kind: 'worker' } };
    platformAdmin: GraphQLContext & { caller: { kind: 'user' } };
  };
  Scalars: {
    DateTime: { Input: Date; Output: Date | string };
    JSON: { Input: unknown; Output: unknown };
    BigInt: { Input: bigint; Output: bigint | number | string };
  };
  DefaultFieldNullability: false;
}>({
  defaultFieldNullability: false,
  plugins: [ScopeAuthPlugin, ErrorsPlugin, ValidationPlugin, PrismaPlugin, RelayPlugin, SimpleObjectsPlugin],
  scopeAuth: {
    // Subscriptions are authorised once, when created, not for every event they deliver.
    authorizeOnSubscribe: true,
    authScopes: (ctx) => ({
      authenticated: ctx.caller.kind === 'user',
      member: ctx.caller.kind === 'user' && ctx.caller.organization !== null,
      worker: ctx.caller.kind === 'worker',
      // Looked up only by fields that need it, once per request (scope-auth caches loaders).
      platformAdmin: ctx.caller.kind === 'user' ? platformAdminLoader(ctx.app.db, ctx.caller.userId) : false,
    }),
    unauthorizedError: (_parent, context, _info, result) => {
      if (context.caller.kind === 'anonymous') return new GraphQLError('Authentication required', { extensions: { code: 'UNAUTHENTICATED' } });
      if (context.caller.kind === 'user' && context.caller.organizationDenied) {
        return new GraphQLError('You are not a member of the requested organization', { extensions: { code: 'FORBIDDEN' } });
      }
      return new GraphQLError(result.message || 'Not authorized', { extensions: { code: 'FORBIDDEN' } });
    },
  },
  // Argument validation runs before the resolver's auth wrappers, so it is only used on public
  // mutations (register, login); org-scoped mutations validate inside their services, after auth,
  // with the same shared schemas.
  errors: { defaultTypes: [], unsafelyHandleInputErrors: true },
  validation: {
    validationError: (failure) =>
      new ValidationError(
        failure.issues.map((issue) => {
          const path = (issue.path ?? []).map((p) => String(typeof p === 'object' && p !== null && 'key' in p ? p.key : p));
          // Paths are reported relative to the `input` argument, as services report them.
          return { path: path[0] === 'input' ? path.slice(1) : path, message: issue.message };
        }),
      ),
  },
  prisma: {
    client: (ctx) => ctx.app.db,
    dmmf: getDatamodel(),
    // Relations are loaded with the parent query where possible; this catches accidental N+1s.
    onUnusedQuery: process.env.NODE_ENV === 'production' ? null : 'warn',
    filterConnectionTotalCount: true,
  },
  relay: {
    clientMutationId: 'omit',
    cursorType: 'String',
    beforeArgOptions: { validate: cursorArgument },
    afterArgOptions: { validate: cursorArgument },
    firstArgOptions: { validate: pageSizeArgument },
    lastArgOptions: { validate: pageSizeArgument },
  },
});

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});

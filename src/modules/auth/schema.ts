import { builder } from '../../graphql/builder.js';
import { ConflictError, InvalidCredentialsError, NotFoundError, RateLimitedError, ValidationError } from '../common/errors.js';
import { actorOf, userIdOf } from '../common/graphql.js';
import * as auth from './service.js';
import { limitLogin, limitRefresh, limitRegistration, operationAddress } from './throttle.js';

const TokenPairRef = builder.simpleObject('TokenPair', {
  fields: (t) => ({
    accessToken: t.string(),
    accessTokenExpiresAt: t.field({ type: 'DateTime' }),
    refreshToken: t.string({ description: 'Single use: every refresh returns a new one' }),
    refreshTokenExpiresAt: t.field({ type: 'DateTime' }),
  }),
});

export const UserRef = builder.prismaObject('User', {
  fields: (t) => ({
    id: t.exposeID('id'),
    email: t.exposeString('email'),
    name: t.exposeString('name'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    memberships: t.relation('memberships'),
  }),
});

const AuthPayload = builder.objectRef<{ user: { id: string }; tokens: auth.TokenPair }>('AuthPayload').implement({
  fields: (t) => ({
    user: t.prismaField({ type: 'User', resolve: (query, p, _a, ctx) => ctx.app.db.user.findUniqueOrThrow({ ...query, where: { id: p.user.id } }) }),
    tokens: t.field({ type: TokenPairRef, resolve: (p) => p.tokens }),
  }),
});

const RegisterInput = builder.inputType('RegisterInput', {
  fields: (t) => ({ email: t.string({ required: true }), password: t.string({ required: true }), name: t.string({ required: true }) }),
  validate: auth.registerInput,
});
const LoginInput = builder.inputType('LoginInput', {
  fields: (t) => ({ email: t.string({ required: true }), password: t.string({ required: true }) }),
  validate: auth.loginInput,
});

builder.mutationField('register', (t) =>
  t.field({
    type: AuthPayload,
    description: 'Creates an account and a personal organization it owns',
    errors: { types: [ValidationError, ConflictError, RateLimitedError], directResult: true, union: { name: 'RegisterResult' } },
    args: { input: t.arg({ type: RegisterInput, required: true }) },
    resolve: (_root, { input }, ctx) => limitRegistration(ctx.app, operationAddress(ctx), () => auth.register(ctx.app, input, ctx.requestId)),
  }),
);

builder.mutationField('login', (t) =>
  t.field({
    type: AuthPayload,
    errors: { types: [ValidationError, InvalidCredentialsError, RateLimitedError], directResult: true, union: { name: 'LoginResult' } },
    args: { input: t.arg({ type: LoginInput, required: true }) },
    resolve: (_root, { input }, ctx) => limitLogin(ctx.app, operationAddress(ctx), input.email, () => auth.login(ctx.app, input, ctx.requestId)),
  }),
);

builder.mutationField('refreshToken', (t) =>
  t.field({
    type: AuthPayload,
    description: 'Exchanges a refresh token for a new pair. Reusing a spent refresh token ends that login: every refresh and access token of it.',
    errors: { types: [InvalidCredentialsError, RateLimitedError], directResult: true, union: { name: 'RefreshTokenResult' } },
    args: { refreshToken: t.arg.string({ required: true }) },
    resolve: (_root, args, ctx) => limitRefresh(ctx.app, operationAddress(ctx), () => auth.refresh(ctx.app, args.refreshToken)),
  }),
);

builder.mutationField('logout', (t) =>
  t.boolean({
    description: 'Ends the login the refresh token belongs to: its refresh tokens, and its access tokens at once',
    args: { refreshToken: t.arg.string({ required: true }) },
    resolve: async (_root, args, ctx) => {
      await auth.logout(ctx.app, args.refreshToken, ctx.requestId);
      return true;
    },
  }),
);

builder.queryField('me', (t) =>
  t.prismaField({
    type: 'User',
    authScopes: { authenticated: true },
    resolve: (query, _root, _args, ctx) => ctx.app.db.user.findUniqueOrThrow({ ...query, where: { id: userIdOf(ctx) } }),
  }),
);

export const ApiTokenRef = builder.prismaObject('ApiToken', {
  fields: (t) => ({
    id: t.exposeID('id'),
    name: t.exposeString('name'),
    prefix: t.exposeString('prefix', { description: 'The first characters of the token, to recognise it' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    lastUsedAt: t.expose('lastUsedAt', { type: 'DateTime', nullable: true }),
    expiresAt: t.expose('expiresAt', { type: 'DateTime', nullable: true }),
    revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
  }),
});

const CreateApiTokenPayload = builder.objectRef<{ apiToken: { id: string }; token: string }>('CreateApiTokenPayload').implement({
  fields: (t) => ({
    apiToken: t.prismaField({ type: 'ApiToken', resolve: (query, p, _a, ctx) => ctx.app.db.apiToken.findUniqueOrThrow({ ...query, where: { id: p.apiToken.id } }) }),
    token: t.exposeString('token', { description: 'Shown once; only a hash is stored' }),
  }),
});

const CreateApiTokenInput = builder.inputType('CreateApiTokenInput', {
  fields: (t) => ({ name: t.string({ required: true }), expiresInDays: t.int() }),
});

builder.mutationField('createApiToken', (t) =>
  t.field({
    type: CreateApiTokenPayload,
    authScopes: { member: true },
    errors: { types: [ValidationError], directResult: true, union: { name: 'CreateApiTokenResult' } },
    args: { input: t.arg({ type: CreateApiTokenInput, required: true }) },
    resolve: (_root, { input }, ctx) => auth.createApiToken(ctx.app, actorOf(ctx), input),
  }),
);

builder.mutationField('revokeApiToken', (t) =>
  t.prismaField({
    type: 'ApiToken',
    authScopes: { member: true },
    errors: { types: [NotFoundError], directResult: true, union: { name: 'RevokeApiTokenResult' } },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, args, ctx) => {
      const token = await auth.revokeApiToken(ctx.app, actorOf(ctx), String(args.id));
      return ctx.app.db.apiToken.findUniqueOrThrow({ ...query, where: { id: token.id } });
    },
  }),
);

builder.queryField('apiTokens', (t) =>
  t.prismaField({
    type: ['ApiToken'],
    description: "The caller's API tokens in the current organization",
    authScopes: { member: true },
    resolve: (query, _root, _args, ctx) => {
      const actor = actorOf(ctx);
      return ctx.app.db.apiToken.findMany({ ...query, where: { userId: actor.userId, organizationId: actor.organizationId }, orderBy: { createdAt: 'desc' } });
    },
  }),
);

// Limits on guessing credentials and on creating accounts, counted in Redis so every API process
// shares them. For credentials, failures are counted, not requests: a client that keeps getting it right
// is never slowed. Registrations are counted whatever their outcome: making accounts is what is limited.
//
// An attempt is counted before it runs and given back when it did not fail, so guesses sent in
// parallel cannot all get in before the first failure is recorded; a refused attempt costs no scrypt.
//
// Login has three counters:
// - per account and client address, strict and long: one client guessing one account. A successful
//   login clears it.
// - per client address: one client trying many accounts (password spraying).
// - per account, loose and short: many addresses guessing one account. Only failures reach it, and
//   attempts refused by the two above never do; an attacker with many addresses can keep it tripping,
//   but each block ends after a few minutes and it never blocks anyone for long: they cannot lock the
//   real user out for good.
import type { IncomingMessage } from 'node:http';
import type { Config } from '../../config.js';
import type { GraphQLContext } from '../../graphql/context.js';
import type { Redis } from '../../platform/redis/connection.js';
import { RateLimit, limitKeyOf, type LimitRule } from '../../platform/ratelimit/index.js';
import { addressLimitKey, clientAddress } from '../../platform/ratelimit/client-address.js';
import { InvalidCredentialsError, RateLimitedError } from '../common/errors.js';

export type ThrottleDeps = { redis: Redis; config: Pick<Config, 'redisPrefix' | 'trustedProxies' | 'registrationsPerHour'> };

const MINUTE = 60;

export const LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS: LimitRule = { name: 'login:account-address', allowed: 10, windowSeconds: 15 * MINUTE, blockSeconds: 15 * MINUTE };
export const LOGIN_FAILURES_PER_ACCOUNT: LimitRule = { name: 'login:account', allowed: 50, windowSeconds: 15 * MINUTE, blockSeconds: 5 * MINUTE };
export const LOGIN_FAILURES_PER_ADDRESS: LimitRule = { name: 'login:address', allowed: 100, windowSeconds: 15 * MINUTE, blockSeconds: 15 * MINUTE };
/** Refresh tokens cannot be guessed; this bounds the work (and noise) of anyone trying. */
export const REFRESH_FAILURES_PER_ADDRESS: LimitRule = { name: 'refresh:address', allowed: 30, windowSeconds: 15 * MINUTE, blockSeconds: 15 * MINUTE };

function registrationsPerAddress(config: ThrottleDeps['config']): LimitRule {
  return { name: 'register:address', allowed: config.registrationsPerHour, windowSeconds: 60 * MINUTE, blockSeconds: 60 * MINUTE };
}

// One limiter per rule and Redis client: each one registers a Lua command on the client.
const limiters = new WeakMap<Redis, Map<string, RateLimit>>();

export function rateLimit(deps: ThrottleDeps, rule: LimitRule): RateLimit {
  let byName = limiters.get(deps.redis);
  if (!byName) limiters.set(deps.redis, (byName = new Map()));
  const key = `${deps.config.redisPrefix}|${rule.name}|${rule.allowed}`;
  let limit = byName.get(key);
  if (!limit) byName.set(key, (limit = new RateLimit(deps.redis, deps.config.redisPrefix, rule)));
  return limit;
}

export type Counter = [RateLimit, string];

async function giveBack(counters: Counter[]): Promise<void> {
  await Promise.all(counters.map(([limit, key]) => limit.giveBack(key)));
}

/** Counts the attempt on each counter in order; refused (and the ones taken given back) at the first that is over. */
async function take(counters: Counter[]): Promise<void> {
  for (let i = 0; i < counters.length; i++) {
    const wait = await counters[i][0].take(counters[i][1]);
    if (wait > 0) {
      await giveBack(counters.slice(0, i));
      throw new RateLimitedError(wait);
    }
  }
}

/**
 * Runs the attempt unless a counter is over its limit; it stays counted only when it fails the way
 * `isFailure` says. Other outcomes (success, bad input, a database outage) are given back.
 */
export async function limitFailures<T>(counters: Counter[], attempt: () => Promise<T>, isFailure: (error: unknown) => boolean): Promise<T> {
  await take(counters);
  try {
    const result = await attempt();
    await giveBack(counters);
    return result;
  } catch (error) {
    if (!isFailure(error)) await giveBack(counters);
    throw error;
  }
}

/** The client's address for per-address limits: the peer, or what trusted proxies say it is. */
export function clientAddressOf(deps: Pick<ThrottleDeps, 'config'>, req: IncomingMessage | undefined): string {
  return clientAddress(req, deps.config.trustedProxies);
}

/** The address a GraphQL operation came from (Yoga puts the Node request in the context, WebSockets too). */
export function operationAddress(ctx: GraphQLContext): string {
  return clientAddressOf(ctx.app, (ctx as { req?: IncomingMessage }).req);
}

function accountKey(email: unknown): string {
  return limitKeyOf(typeof email === 'string' ? email.trim().toLowerCase() : '');
}

const isInvalidCredentials = (error: unknown) => error instanceof InvalidCredentialsError;

export async function limitLogin<T>(deps: ThrottleDeps, address: string, email: unknown, attempt: () => Promise<T>): Promise<T> {
  const account = accountKey(email);
  const [strict, strictKey]: Counter = [rateLimit(deps, LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS), `${account}:${addressLimitKey(address)}`];
  const [perAccount, accountWait] = [rateLimit(deps, LOGIN_FAILURES_PER_ACCOUNT), () => perAccount.retryAfterSeconds(account)];
  const result = await limitFailures(
    [[strict, strictKey], [rateLimit(deps, LOGIN_FAILURES_PER_ADDRESS), addressLimitKey(address)]],
    async () => {
      const wait = await accountWait();
      if (wait > 0) throw new RateLimitedError(wait);
      try {
        return await attempt();
      } catch (error) {
        if (isInvalidCredentials(error)) await perAccount.take(account);
        throw error;
      }
    },
    isInvalidCredentials,
  );
  await strict.reset(strictKey);
  return result;
}

export function limitRefresh<T>(deps: ThrottleDeps, address: string, attempt: () => Promise<T>): Promise<T> {
  return limitFailures([[rateLimit(deps, REFRESH_FAILURES_PER_ADDRESS), addressLimitKey(address)]], attempt, isInvalidCredentials);
}

/** Every registration counts, successful or not: creating accounts is what is limited. */
export async function limitRegistration<T>(deps: ThrottleDeps, address: string, attempt: () => Promise<T>): Promise<T> {
  const wait = await rateLimit(deps, registrationsPerAddress(deps.config)).take(addressLimitKey(address));
  if (wait > 0) throw new RateLimitedError(wait);
  return attempt();
}

// Join tokens are spent by anyone who holds one, with no other credential: registerWorker and the
// install script both count a client's failed tries on one counter, so neither is a way around the other.
import type { LimitRule } from '../../platform/ratelimit/index.js';
import { addressLimitKey } from '../../platform/ratelimit/client-address.js';
import { limitFailures, rateLimit, type Counter, type ThrottleDeps } from '../auth/throttle.js';
import { InvalidJoinTokenError } from './errors.js';

export const JOIN_TOKEN_FAILURES_PER_ADDRESS: LimitRule = { name: 'join-token:address', allowed: 20, windowSeconds: 15 * 60, blockSeconds: 15 * 60 };

export function joinTokenCounter(deps: ThrottleDeps, address: string): Counter {
  return [rateLimit(deps, JOIN_TOKEN_FAILURES_PER_ADDRESS), addressLimitKey(address)];
}

export function limitJoinTokenUse<T>(deps: ThrottleDeps, address: string, attempt: () => Promise<T>): Promise<T> {
  return limitFailures([joinTokenCounter(deps, address)], attempt, (error) => error instanceof InvalidJoinTokenError);
}

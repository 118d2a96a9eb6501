// Which dependency an unexpected error says is down, if any: the API answers those as SERVICE_UNAVAILABLE
// (retryable, HTTP 503) instead of a masked internal error.
import { isPostgresUnavailable } from '../../platform/db/unavailable.js';
import { isRedisUnavailable } from '../../platform/redis/connection.js';
import { ServiceUnavailableError } from './errors.js';

export function asServiceUnavailable(error: unknown): ServiceUnavailableError | null {
  if (error instanceof ServiceUnavailableError) return error;
  if (isRedisUnavailable(error)) return new ServiceUnavailableError('redis');
  if (isPostgresUnavailable(error)) return new ServiceUnavailableError('postgresql');
  return null;
}

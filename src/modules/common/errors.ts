// Errors the client must handle are values in mutation payloads (see graphql/errors.ts);
// these classes carry them from services to resolvers.

export type FieldError = { path: string[]; message: string };

export class DomainError extends Error {}

export class ValidationError extends DomainError {
  constructor(public readonly fieldErrors: FieldError[]) {
    super(fieldErrors.length === 1 ? `Invalid ${fieldErrors[0].path.join('.')}: ${fieldErrors[0].message}` : `Invalid input (${fieldErrors.length} problems)`);
  }
  static single(path: string[], message: string) {
    return new ValidationError([{ path, message }]);
  }
}

export class NotFoundError extends DomainError {
  constructor(public readonly resourceType: string, public readonly resourceId: string) {
    super(`${resourceType} ${resourceId} was not found`);
  }
}

export class ForbiddenError extends DomainError {}

export class ConflictError extends DomainError {
  constructor(message: string, public readonly field?: string) {
    super(message);
  }
}

export class QuotaExceededError extends DomainError {
  constructor(public readonly resource: string, public readonly limit: number, public readonly requested: number) {
    super(`Quota exceeded for ${resource}: limit ${limit}, requested ${requested}`);
  }
}

export class CapacityError extends DomainError {}

/** Not a payload error: the request carries no valid credentials. */
export class UnauthenticatedError extends DomainError {
  constructor(message = 'Authentication required') {
    super(message);
  }
}

/** Wrong credentials for login and refresh: deliberately vague. */
export class InvalidCredentialsError extends DomainError {
  constructor() {
    super('Invalid credentials');
  }
}

/** Too many attempts from this client (or at this account): try again after retryAfterSeconds. */
export class RateLimitedError extends DomainError {
  constructor(public readonly retryAfterSeconds: number) {
    super(`Too many attempts; try again in ${retryAfterSeconds} s`);
  }
}

export type Dependency = 'postgresql' | 'redis';

/** What HTTP endpoints tell a client to wait before retrying while a dependency is down. */
export const RETRY_AFTER_SECONDS = 2;

/**
 * A dependency (the database, Redis) cannot be reached right now: nothing was changed by the failed step,
 * and the same request can be retried as it is. Not a payload error: any operation may meet it.
 */
export class ServiceUnavailableError extends DomainError {
  readonly retryable = true;
  constructor(public readonly dependency: Dependency) {
    super(`Temporarily unavailable: ${dependency} cannot be reached; retry shortly`);
  }
}

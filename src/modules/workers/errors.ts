import { DomainError } from '../common/errors.js';

/** Unknown, malformed, used, revoked or expired: deliberately one error, so tokens cannot be probed. */
export class InvalidJoinTokenError extends DomainError {
  constructor() {
    super('The join token is invalid, already used, revoked or expired');
  }
}

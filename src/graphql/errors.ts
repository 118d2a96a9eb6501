// Typed errors that mutations return as values, each implementing the `Error` interface.
import { builder } from './builder.js';
import {
  CapacityError,
  ConflictError,
  ForbiddenError,
  InvalidCredentialsError,
  NotFoundError,
  QuotaExceededError,
  RateLimitedError,
  ValidationError,
  type FieldError,
} from '../modules/common/errors.js';

export const ErrorInterface = builder.interfaceRef<Error>('Error').implement({
  fields: (t) => ({ message: t.exposeString('message') }),
});

const FieldErrorRef = builder.objectRef<FieldError>('FieldError').implement({
  description: 'One problem with one input field; path is the field path inside the input',
  fields: (t) => ({ path: t.exposeStringList('path'), message: t.exposeString('message') }),
});

builder.objectType(ValidationError, {
  name: 'ValidationError',
  interfaces: [ErrorInterface],
  fields: (t) => ({ fieldErrors: t.field({ type: [FieldErrorRef], resolve: (e) => e.fieldErrors }) }),
});

builder.objectType(NotFoundError, {
  name: 'NotFoundError',
  interfaces: [ErrorInterface],
  fields: (t) => ({ resourceType: t.exposeString('resourceType'), resourceId: t.exposeString('resourceId') }),
});

builder.objectType(ForbiddenError, { name: 'ForbiddenError', interfaces: [ErrorInterface], fields: () => ({}) });

builder.objectType(ConflictError, {
  name: 'ConflictError',
  interfaces: [ErrorInterface],
  fields: (t) => ({ field: t.exposeString('field', { nullable: true }) }),
});

builder.objectType(QuotaExceededError, {
  name: 'QuotaExceededError',
  interfaces: [ErrorInterface],
  fields: (t) => ({ resource: t.exposeString('resource'), limit: t.exposeFloat('limit'), requested: t.exposeFloat('requested') }),
});

builder.objectType(CapacityError, { name: 'CapacityError', interfaces: [ErrorInterface], fields: () => ({}) });

builder.objectType(InvalidCredentialsError, { name: 'InvalidCredentialsError', interfaces: [ErrorInterface], fields: () => ({}) });

builder.objectType(RateLimitedError, {
  name: 'RateLimitedError',
  interfaces: [ErrorInterface],
  fields: (t) => ({ retryAfterSeconds: t.exposeInt('retryAfterSeconds', { description: 'Seconds until this client may try again' }) }),
});

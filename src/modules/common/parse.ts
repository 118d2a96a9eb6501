import type { z } from 'zod';
import { ValidationError } from './errors.js';

/** Parses input with a shared schema, turning every issue into a per-field message. */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw new ValidationError(
    result.error.issues.map((issue) => ({ path: issue.path.map(String), message: issue.message })),
  );
}

// PostgreSQL text cannot hold NUL, and UTF-8 cannot encode an unpaired UTF-16 surrogate: either made a
// query fail deep inside Prisma as an internal error. Input carrying them is refused where it arrives.
const UNSTORABLE = /\u0000|\p{Cs}/u;
export const UNSTORABLE_MESSAGE = 'contains a NUL character or an unpaired UTF-16 surrogate';

export function hasUnstorableCharacters(value: string): boolean {
  return UNSTORABLE.test(value);
}

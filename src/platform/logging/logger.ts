import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

// A log line never carries a tenant's payload in full: a 100 KB cursor once wrote two 201 KB lines.
export const MAX_LOGGED_STRING = 2000;
const MAX_LOGGED_STACK = 8000;
const MAX_LOGGED_ITEMS = 50;
const MAX_LOGGED_DEPTH = 6;

function truncate(value: string, max = MAX_LOGGED_STRING): string {
  return value.length <= max ? value : `${value.slice(0, max)}…[${value.length - max} more characters]`;
}

/** Strings cut to size, long arrays and deep objects cut short, errors serialised (stack kept, capped). */
export function capLoggedValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return truncate(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_LOGGED_DEPTH) return '[nested too deep]';
  if (value instanceof Error) {
    const serialised = pino.stdSerializers.err(value) as unknown as Record<string, unknown>;
    const { stack, ...rest } = serialised;
    const capped = capLoggedValue(rest, depth) as Record<string, unknown>;
    return typeof stack === 'string' ? { ...capped, stack: truncate(stack, MAX_LOGGED_STACK) } : capped;
  }
  if (Array.isArray(value)) {
    const items = value.slice(0, MAX_LOGGED_ITEMS).map((item) => capLoggedValue(item, depth + 1));
    if (value.length > MAX_LOGGED_ITEMS) items.push(`[${value.length - MAX_LOGGED_ITEMS} more items]`);
    return items;
  }
  if (value instanceof Date || Buffer.isBuffer(value)) return value;
  const out: Record<string, unknown> = {};
  let kept = 0;
  for (const key of Object.keys(value)) {
    if (kept++ === MAX_LOGGED_ITEMS) {
      out['…'] = 'more keys left out';
      break;
    }
    out[truncate(key, 200)] = capLoggedValue((value as Record<string, unknown>)[key], depth + 1);
  }
  return out;
}

// Structured JSON logs; secrets are redacted by path as a second line of defence.
export function createLogger(level: string, bindings: Record<string, unknown> = {}, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'convoy', ...bindings },
      redact: {
        paths: ['password', '*.password', 'token', '*.token', 'refreshToken', '*.refreshToken', 'authorization', '*.authorization', 'headers.authorization', 'value', '*.secretValue'],
        censor: '[redacted]',
      },
      // Every field's strings are capped, errors included (pino's own err serializer keeps them whole).
      serializers: { err: (error: unknown) => capLoggedValue(error) },
      formatters: { log: (object) => capLoggedValue(object) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          // The message itself (and printf-style arguments) are capped too.
          method.apply(this, args.map((arg) => (typeof arg === 'string' ? truncate(arg) : arg)) as Parameters<typeof method>);
        },
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

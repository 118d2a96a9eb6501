import { pino, type Logger } from 'pino';

export type { Logger };

// Structured JSON logs; secrets are redacted by path as a second line of defence.
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { service: 'convoy', ...bindings },
    redact: {
      paths: ['password', '*.password', 'token', '*.token', 'refreshToken', '*.refreshToken', 'authorization', '*.authorization', 'headers.authorization', 'value', '*.secretValue'],
      censor: '[redacted]',
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

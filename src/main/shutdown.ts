import type { Logger } from '../platform/logging/logger.js';

/** Runs the clean-up once on SIGINT/SIGTERM, then exits; a second signal exits at once. */
export function onShutdown(log: Logger, cleanup: () => Promise<void>) {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info({ signal }, 'shutting down');
    cleanup().then(
      () => process.exit(0),
      (error) => {
        log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stdout (or the given destination fd), one per RPC plus lifecycle lines. */
export function createLogger(level: string, destination = 1): Logger {
  return pino({ level, base: { service: 'turboci' } }, pino.destination({ dest: destination, sync: true }));
}

import { pino, type Logger } from 'pino';
import { capText, MAX_LOG_FIELD_BYTES } from './domain/limits.js';

export type { Logger };

/** Stacks are worth more room than other fields, but not unbounded room either. */
const MAX_STACK_BYTES = 8 * 1024;
const MAX_LOG_ITEMS = 50;

/**
 * Every field of a log line, capped: strings at MAX_LOG_FIELD_BYTES (2 KiB) of UTF-8, arrays at 50 items, nesting at
 * 5 levels. A field may quote a request (an id, an error message about it): a 1.7 MB line once came from one.
 */
export function capFields(value: unknown, depth = 0, key = ''): unknown {
  if (typeof value === 'string') return capText(value, key === 'stack' ? MAX_STACK_BYTES : MAX_LOG_FIELD_BYTES);
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return capFields(pino.stdSerializers.err(value), depth, key);
  if (depth >= 5) return '[nested too deep to log]';
  if (Array.isArray(value)) {
    const items = value.slice(0, MAX_LOG_ITEMS).map((v) => capFields(v, depth + 1));
    return value.length > MAX_LOG_ITEMS ? [...items, `… and ${value.length - MAX_LOG_ITEMS} more`] : items;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[capText(k, 256)] = capFields(v, depth + 1, k);
  return out;
}

/**
 * JSON lines on stdout (or the given destination fd), one per RPC plus lifecycle lines. Written asynchronously: a
 * line per dispatched stage written synchronously was ~5% of the server's CPU under load, and lines that pile up
 * during one write go out together in the next. Nothing waits for a buffer to fill (a supervisor reads the ready
 * line at once), and pino flushes what is queued when the process exits, a fatal error included.
 */
export function createLogger(level: string, destination = 1): Logger {
  return pino(
    { level, base: { service: 'turboci' }, formatters: { log: (obj) => capFields(obj) as Record<string, unknown> } },
    pino.destination({ dest: destination, sync: false }),
  );
}

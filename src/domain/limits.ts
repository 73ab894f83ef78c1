// Input limits, in bytes of UTF-8, and the helpers that keep anything echoed back (status messages, log fields)
// short. The configurable limits are set once at start (`turboci serve --max-…`, see docs/configuration.md); the
// fixed ones are protocol facts (a status message must fit in HTTP/2 headers, a default client takes 4 MiB).

/** Limits an operator may raise or lower. */
export interface InputLimits {
  /** One Struct value (args, options, result data, attempt details, progress details) as JSON. */
  readonly maxValueBytes: number;
  /** One metadata map (workplan metadata, runner metadata, lease labels): keys plus values. */
  readonly maxMetadataBytes: number;
  /** Every progress entry of one attempt together (message + details as JSON); past it appends are refused. */
  readonly maxProgressBytes: number;
  /** The longest runner registration TTL (ttl_seconds). */
  readonly maxTtlSeconds: number;
}

export const DEFAULT_LIMITS: InputLimits = {
  maxValueBytes: 256 * 1024,
  maxMetadataBytes: 64 * 1024,
  maxProgressBytes: 1024 * 1024,
  maxTtlSeconds: 24 * 3600,
};

let current: InputLimits = DEFAULT_LIMITS;

/** The limits in force (DEFAULT_LIMITS unless the server was started with others). */
export const limits = (): InputLimits => current;

/** Sets the limits for this process (the server does it once at start). */
export function configureLimits(l: Partial<InputLimits>): InputLimits {
  current = { ...DEFAULT_LIMITS, ...Object.fromEntries(Object.entries(l).filter(([, v]) => v !== undefined)) };
  return current;
}

/** Fixed limits. */
export const MAX_KEY_BYTES = 256;
export const MAX_METADATA_VALUE_BYTES = 4096;
/** Struct nesting: an object or list inside another counts one level; the Struct itself is level 1. */
export const MAX_STRUCT_DEPTH = 32;
/** Messages: progress, failure. */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** A status message: it travels in an HTTP/2 header (grpc-message), which peers limit to a few KiB. */
export const MAX_STATUS_BYTES = 1024;
/** One string field of a log line. */
export const MAX_LOG_FIELD_BYTES = 2048;

export const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

/** `s` cut to at most `maxBytes` bytes of UTF-8 on a character boundary, saying how much was left out. */
export function capText(s: string, maxBytes: number): string {
  if (s.length <= maxBytes / 3 || utf8Bytes(s) <= maxBytes) return s;
  const total = utf8Bytes(s);
  const room = Math.max(0, maxBytes - 40);
  let cut = Buffer.from(s.slice(0, room), 'utf8').subarray(0, room).toString('utf8');
  if (cut.endsWith('\uFFFD')) cut = cut.slice(0, -1); // a character split by the byte cut
  return `${cut}… (${total - utf8Bytes(cut)} more bytes)`;
}

/** The first `n` items, then "… and N more": for messages that would otherwise list unbounded input. */
export function listSome(items: readonly string[], n = 5, separator = ', '): string {
  const shown = items.slice(0, n).map((s) => capText(s, 64));
  return items.length > n ? `${shown.join(separator)}${separator}… and ${items.length - n} more` : shown.join(separator);
}

/** A byte count for messages: 1536 → "1.5 KiB". */
export function bytesText(n: number): string {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${+(n / 1024).toFixed(1)} KiB`;
  return `${+(n / (1024 * 1024)).toFixed(1)} MiB`;
}

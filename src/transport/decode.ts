// Requests grpc-js cannot decode become INVALID_ARGUMENT, not INTERNAL "Error deserializing request".
//
// grpc-js decodes a request before any handler runs, and answers INTERNAL when the deserializer throws. Every
// service we serve gets deserializers that never throw: a request that does not decode (a Struct nested past the
// decoder's recursion limit, a Timestamp out of range) arrives as an Undecodable marker, and `undecodable()` turns
// it into an INVALID_ARGUMENT the client can act on.
import { invalidArgument } from '../domain/errors.js';
import { MAX_STRUCT_DEPTH } from '../domain/limits.js';
import { Timestamp } from '../gen/google/protobuf/timestamp.js';

const UNDECODABLE = Symbol('undecodable');
interface Undecodable {
  readonly [UNDECODABLE]: string;
}

/** The request, or INVALID_ARGUMENT when grpc-js could not decode it. */
export function undecodable<T>(req: T): T {
  const reason = (req as Partial<Undecodable> | null)?.[UNDECODABLE];
  if (reason !== undefined) throw invalidArgument(`the request cannot be decoded: ${reason}`);
  return req;
}

/** A request that decoded, or its reason not to (for handlers that log the request before validating it). */
export const isUndecodable = (req: unknown): boolean => (req as Partial<Undecodable> | null)?.[UNDECODABLE] !== undefined;

function why(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (/recursion limit/.test(message)) return `values nest too deep (a Struct may nest at most ${MAX_STRUCT_DEPTH} levels)`;
  if (err instanceof RangeError && /call stack/i.test(message)) return `values nest too deep (a Struct may nest at most ${MAX_STRUCT_DEPTH} levels)`;
  return message.slice(0, 300);
}

interface MethodDefinition {
  readonly requestDeserialize: (bytes: Buffer) => unknown;
}

/** The service definition with deserializers that return an Undecodable marker instead of throwing. */
export function tolerant<D extends object>(definition: D): D {
  const out: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition as Record<string, MethodDefinition>)) {
    const decode = method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return decode(bytes);
        } catch (err) {
          return { [UNDECODABLE]: why(err) } satisfies Undecodable;
        }
      },
    };
  }
  return out as D;
}

/** 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range google.protobuf.Timestamp allows. */
const MIN_SECONDS = -62_135_596_800n;
const MAX_SECONDS = 253_402_300_799n;

let installed = false;
/**
 * Makes decoding refuse Timestamps the well-known type does not allow: nanos outside 0-999,999,999 (ts-proto would
 * silently carry them into the seconds) and seconds outside years 1-9999 (which became an Invalid Date).
 */
export function installTimestampCheck(): void {
  if (installed) return;
  installed = true;
  const decode = Timestamp.decode.bind(Timestamp);
  Timestamp.decode = (input, length) => {
    const t = decode(input, length);
    if (t.nanos < 0 || t.nanos > 999_999_999) {
      throw new Error(`a Timestamp has nanos ${t.nanos}; nanos must be from 0 to 999999999 (put whole seconds in seconds)`);
    }
    if (t.seconds < MIN_SECONDS || t.seconds > MAX_SECONDS) {
      throw new Error(`a Timestamp has seconds ${t.seconds}; it must be from ${MIN_SECONDS} (year 1) to ${MAX_SECONDS} (year 9999)`);
    }
    return t;
  };
}

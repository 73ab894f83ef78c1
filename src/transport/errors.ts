// The one place where errors become gRPC statuses. Clients never see a stack trace; the log has it.
import { status, type ServiceError } from '@grpc/grpc-js';
import { DomainError, type DomainErrorKind } from '../domain/errors.js';
import { capText, MAX_STATUS_BYTES } from '../domain/limits.js';

const CODE: Record<DomainErrorKind, status> = {
  NOT_FOUND: status.NOT_FOUND,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  ABORTED: status.ABORTED,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  UNAVAILABLE: status.UNAVAILABLE,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
};

export interface MappedError {
  readonly error: Partial<ServiceError> & { code: status; details: string };
  /** Set for errors we did not expect: they are logged with their stack. */
  readonly internal: unknown;
}

export function toServiceError(err: unknown): MappedError {
  if (err instanceof DomainError) {
    // Messages may quote input (a field path, an id): capped, so the status always fits in HTTP/2 headers.
    const details = statusText(err.message);
    return { error: { code: CODE[err.kind], details, message: details }, internal: null };
  }
  return { error: { code: status.INTERNAL, details: 'internal error; see the server log', message: 'internal error' }, internal: err };
}

/** Every status message we send goes through this: at most MAX_STATUS_BYTES (1 KiB) of UTF-8, on one line. */
export const statusText = (message: string): string => capText(message.replace(/[\r\n]+/g, ' '), MAX_STATUS_BYTES);

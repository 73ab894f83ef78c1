// The one place where errors become gRPC statuses. Clients never see a stack trace; the log has it.
import { status, type ServiceError } from '@grpc/grpc-js';
import { DomainError, type DomainErrorKind } from '../domain/errors.js';

const CODE: Record<DomainErrorKind, status> = {
  NOT_FOUND: status.NOT_FOUND,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  ABORTED: status.ABORTED,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
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
    return { error: { code: CODE[err.kind], details: err.message, message: err.message }, internal: null };
  }
  return { error: { code: status.INTERNAL, details: 'internal error; see the server log', message: 'internal error' }, internal: err };
}

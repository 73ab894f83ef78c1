// Typed domain errors; the transport maps each kind to one gRPC status code.
export type DomainErrorKind =
  | 'NOT_FOUND'
  | 'INVALID_ARGUMENT'
  | 'FAILED_PRECONDITION'
  | 'ABORTED'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAVAILABLE'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED';

export class DomainError extends Error {
  constructor(
    readonly kind: DomainErrorKind,
    message: string,
    /** The request field the error is about, e.g. `stages[2].dependencies.dependencies[0].target_id`. */
    readonly field?: string,
  ) {
    super(field ? `${field}: ${message}` : message);
    this.name = 'DomainError';
  }
}

export const notFound = (message: string, field?: string) => new DomainError('NOT_FOUND', message, field);
export const invalidArgument = (message: string, field?: string) => new DomainError('INVALID_ARGUMENT', message, field);
export const failedPrecondition = (message: string, field?: string) =>
  new DomainError('FAILED_PRECONDITION', message, field);
export const permissionDenied = (message: string, field?: string) => new DomainError('PERMISSION_DENIED', message, field);
export const unauthenticated = (message: string) => new DomainError('UNAUTHENTICATED', message);
export const aborted = (message: string, field?: string) => new DomainError('ABORTED', message, field);
export const resourceExhausted = (message: string, field?: string) => new DomainError('RESOURCE_EXHAUSTED', message, field);

// One typed way to call a generated gRPC client's unary method as a promise: used by the agent, the CLI and the
// tests, so none of them needs its own wrapper or a cast.
import { Metadata, type CallOptions, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';

/** The full form of every unary method ts-proto generates for grpc-js (its last overload). */
export type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

export interface UnaryOptions {
  /** Milliseconds until the call's deadline. */
  readonly timeoutMs: number;
  readonly metadata?: Metadata;
}

/** A call in flight: its answer, and a way to cancel it (the answer then rejects with CANCELLED). */
export interface PendingCall<Res> {
  readonly response: Promise<Res>;
  cancel(): void;
}

/** Starts `method` (a generated client's method, bound to it) with a deadline. */
export function startUnary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, options: UnaryOptions): PendingCall<Res> {
  let call: ClientUnaryCall | undefined;
  const response = new Promise<Res>((resolve, reject) => {
    call = method(request, options.metadata ?? new Metadata(), { deadline: Date.now() + options.timeoutMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  });
  return { response, cancel: () => call?.cancel() };
}

/** Calls `method` (a generated client's method, bound to it) and resolves with its answer. */
export function unary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, options: UnaryOptions): Promise<Res> {
  return startUnary(method, request, options).response;
}

// Who is calling, as far as the server knows. Until authentication lands every caller is 'anonymous'; the identity
// work fills this in from the call's credentials (and refuses callers without the approver role) in this one place.
import type { ServerUnaryCall } from '@grpc/grpc-js';
import { ANONYMOUS } from '../domain/decide-approval.js';

export function principalOf<Req, Res>(_call: ServerUnaryCall<Req, Res>): string {
  return ANONYMOUS;
}

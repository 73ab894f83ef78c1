// What identifies a runner's answer (a push callback or a pull completion): a repeat with the same fingerprint is
// acknowledged and appends nothing, a different one for an attempt that is over is refused. Both runner models must
// compute it the same way, so it is defined once.
import { hash } from 'node:crypto';
import type { ExecutionCompletion } from '../domain/decide-completion.js';

export function completionFingerprint(completion: Omit<ExecutionCompletion, 'fingerprint'>): string {
  return hash('sha256', JSON.stringify(completion), 'base64url');
}

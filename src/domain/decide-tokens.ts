// decide for API tokens (the `tokens` stream): create and revoke. Pure: the caller hashes the secret and gives
// the time; the secret itself never reaches the domain, the log or the logs.
import { failedPrecondition, invalidArgument, notFound } from './errors.js';
import { ANONYMOUS_PRINCIPAL, pending, SYSTEM_PRINCIPAL, type EventOf, type PendingEvent } from './events.js';
import { isValidId } from './ids.js';

export const ROLES = ['reader', 'writer', 'runner', 'approver', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** A token as the token stream folds it. */
export interface Token {
  readonly name: string;
  readonly role: Role;
  readonly realms: readonly string[];
  readonly runnerTypes: readonly string[];
  readonly expiresAt: number | null;
  readonly secretHash: string;
  readonly createdAt: number;
  readonly revokedAt: number | null;
}

/** What the token stream holds, as decisions need it. */
export interface TokenView {
  token(name: string): Token | undefined;
}

export interface CreateToken {
  readonly name: string;
  readonly role: string;
  readonly realms: readonly string[];
  readonly runnerTypes: readonly string[];
  readonly expiresAt: number | null;
  readonly secretHash: string;
}

/** Every realm / every runner type. */
export const ANY = '*';

export function decideCreateToken(view: TokenView, cmd: CreateToken, now: number): PendingEvent[] {
  if (!isValidId(cmd.name)) throw invalidArgument('1-256 printable characters, no spaces', 'name');
  // Principals the server records by itself: a token must not pass for them in the audit trail.
  if (cmd.name === ANONYMOUS_PRINCIPAL || cmd.name === SYSTEM_PRINCIPAL || cmd.name.startsWith('cli:')) {
    throw invalidArgument(`"${cmd.name}" is reserved (anonymous, system, cli:*)`, 'name');
  }
  if (!(ROLES as readonly string[]).includes(cmd.role)) throw invalidArgument(`"${cmd.role}" is not one of ${ROLES.join(', ')}`, 'role');
  const role = cmd.role as Role;
  const existing = view.token(cmd.name);
  if (existing && existing.revokedAt === null) throw failedPrecondition(`token "${cmd.name}" already exists (revoke it first)`, 'name');
  if (cmd.expiresAt !== null && cmd.expiresAt <= now) throw invalidArgument('must be in the future', 'expires');
  for (const r of [...cmd.realms, ...cmd.runnerTypes]) if (!isValidId(r)) throw invalidArgument(`"${r}" is not a valid name`, 'realm');
  let realms = [...new Set(cmd.realms)];
  let runnerTypes = [...new Set(cmd.runnerTypes)];
  if (role === 'admin') {
    realms = [ANY];
    runnerTypes = [ANY];
  } else if (role === 'runner') {
    if (runnerTypes.length === 0) throw invalidArgument('a runner token names the runner types it serves (--runner-type T, or "*")', 'runner_type');
    realms = [];
  } else {
    if (realms.length === 0) realms = ['default'];
    runnerTypes = [];
  }
  const data: EventOf<'TokenCreated'>['data'] = { name: cmd.name, role, realms, runnerTypes, expiresAt: cmd.expiresAt, secretHash: cmd.secretHash };
  return [pending({ type: 'TokenCreated', data })];
}

export function decideRevokeToken(view: TokenView, name: string): PendingEvent[] {
  const t = view.token(name);
  if (!t) throw notFound(`no token "${name}"`, 'name');
  if (t.revokedAt !== null) return [];
  return [pending({ type: 'TokenRevoked', data: { name } })];
}

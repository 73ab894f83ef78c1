// Who is calling: the bearer token of a call, checked against the token stream (caught up from the log on every
// call, so a token created or revoked by `turboci token` takes effect on the next call), and what it may do.
import type { Caller } from '../domain/commands.js';
import { ANY, type Role, type Token } from '../domain/decide-tokens.js';
import { permissionDenied, unauthenticated } from '../domain/errors.js';
import { ANONYMOUS_PRINCIPAL, TOKEN_STREAM, type Actor, type RecordedEvent } from '../domain/events.js';
import { TokenRegistry } from '../../projections/tokens.js';
import { hashesEqual, hashSecret } from './secrets.js';
import { METHOD_PERMISSIONS, ROLE_PERMISSIONS, type Permission } from './permissions.js';

export interface AuthConfig {
  /** Off: every call is `anonymous` and may do everything (allowed on loopback only, or with --insecure-no-auth). */
  readonly enabled: boolean;
  /** runner type → the realms whose workplans may have stages of that type (types not listed: any realm). */
  readonly runnerTypeRealms: ReadonlyMap<string, ReadonlySet<string>>;
}

/** The caller of one RPC and what it may do. */
export class Principal {
  constructor(
    readonly name: string,
    readonly role: Role | null,
    private readonly realms: ReadonlySet<string>,
    private readonly runnerTypes: ReadonlySet<string>,
    readonly authenticated: boolean,
  ) {}

  get admin(): boolean {
    return this.role === 'admin';
  }

  get caller(): Caller {
    return { principal: this.name, authenticated: this.authenticated, admin: this.admin };
  }

  actor(reason?: string | null): Actor {
    return { principal: this.name, reason: reason || null };
  }

  has(permission: Permission): boolean {
    return !this.authenticated || (this.role !== null && ROLE_PERMISSIONS[this.role].includes(permission));
  }

  require(permission: Permission | undefined, what: string): void {
    if (!this.authenticated) return;
    if (!permission) {
      if (this.admin) return;
      throw permissionDenied(`${what} is allowed to admin tokens only; token "${this.name}" has role ${this.role}`);
    }
    if (!this.has(permission)) throw permissionDenied(`token "${this.name}" (role ${this.role}) lacks permission ${permission}`);
  }

  mayUseRealm(realm: string): boolean {
    return !this.authenticated || this.realms.has(ANY) || this.realms.has(realm);
  }

  /**
   * A workplan-scoped call: `realm` is the workplan's realm, undefined when there is no such workplan. Outside the
   * token's realms and unknown workplans get the same answer, so a token never learns what exists elsewhere.
   */
  requireRealm(permission: Permission, realm: string | undefined, workPlanId: string): void {
    if (!this.authenticated) return;
    if (realm === undefined ? !this.realms.has(ANY) : !this.mayUseRealm(realm)) {
      throw permissionDenied(`token "${this.name}" lacks permission ${permission} on workplan "${workPlanId}" (not in a realm it may use)`, 'work_plan_id');
    }
  }

  requireNewRealm(permission: Permission, realm: string): void {
    if (!this.mayUseRealm(realm)) throw permissionDenied(`token "${this.name}" lacks permission ${permission} in realm "${realm}"`, 'realm');
  }

  mayServe(runnerType: string): boolean {
    return !this.authenticated || this.runnerTypes.has(ANY) || this.runnerTypes.has(runnerType);
  }

  requireRunnerType(permission: Permission, runnerType: string): void {
    if (!this.mayServe(runnerType)) {
      throw permissionDenied(`token "${this.name}" lacks permission ${permission} for runner type "${runnerType}"`, 'runner_type');
    }
  }
}

export const ANONYMOUS = new Principal(ANONYMOUS_PRINCIPAL, null, new Set(), new Set(), false);

/** Reads the metadata of a call: `authorization: Bearer <secret>`. */
export interface CallMetadata {
  get(key: string): (string | Buffer)[];
}

export class Authenticator {
  private readonly tokens = new TokenRegistry();
  /** One Principal per token record (the registry replaces a record when it changes, so a revocation is seen). */
  private readonly principals = new WeakMap<Token, Principal>();

  constructor(
    readonly config: AuthConfig,
    /** The token stream's events after a version (the server's event log). */
    private readonly readTokens: (afterVersion: number) => Iterable<RecordedEvent>,
    private readonly clock: () => number = Date.now,
  ) {}

  get enabled(): boolean {
    return this.config.enabled;
  }

  /** The caller of an RPC, checked for the permission `method` needs; throws UNAUTHENTICATED / PERMISSION_DENIED. */
  authorize(metadata: CallMetadata, method: string): Principal {
    if (!this.config.enabled) return ANONYMOUS;
    const principal = this.identify(metadata);
    principal.require(METHOD_PERMISSIONS[method], method);
    return principal;
  }

  identify(metadata: CallMetadata): Principal {
    const header = metadata.get('authorization')[0];
    const m = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!m) throw unauthenticated('missing credentials: send "authorization: Bearer <token>"');
    const token = this.lookup(m[1]!);
    // One message for every way a secret can fail, so a caller learns nothing about which tokens exist.
    if (!token || token.revokedAt !== null || (token.expiresAt !== null && token.expiresAt <= this.clock())) {
      throw unauthenticated('invalid token: unknown, revoked or expired');
    }
    let principal = this.principals.get(token);
    if (!principal) this.principals.set(token, (principal = new Principal(token.name, token.role, new Set(token.realms), new Set(token.runnerTypes), true)));
    return principal;
  }

  /** A stage of `runnerType` in a workplan of `realm`: may that realm's writers target that type? */
  mayTarget(runnerType: string, realm: string): boolean {
    const allowed = this.config.runnerTypeRealms.get(runnerType);
    return !allowed || allowed.has(realm) || allowed.has(ANY);
  }

  private lookup(secret: string): Token | undefined {
    for (const rec of this.readTokens(this.tokens.version)) this.tokens.fold(rec);
    const hash = hashSecret(secret);
    const token = this.tokens.bySecretHash(hash);
    return token && hashesEqual(token.secretHash, hash) ? token : undefined;
  }
}

export { TOKEN_STREAM };

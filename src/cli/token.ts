// `turboci token create|list|revoke --db DB`: API tokens are events of the `tokens` stream in the same log (so they
// are audited and replayed like everything else); a running server reads new ones on its next call. DB is a SQLite
// file or a PostgreSQL URL: on PostgreSQL every replica folds the token events as it folds any other writer's.
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { TokenRegistry } from '../../projections/tokens.js';
import { hashSecret, newSecret } from '../auth/secrets.js';
import { decideCreateToken, decideRevokeToken, ROLES } from '../domain/decide-tokens.js';
import { DomainError } from '../domain/errors.js';
import { TOKEN_STREAM, type PendingEvent } from '../domain/events.js';
import { FatalError } from './fatal.js';
import { logError, openLog } from './open-log.js';
import { UsageError } from './usage-error.js';

export const TOKEN_HELP = `Usage: turboci token create --db DB --name NAME --role ROLE [--realm R]... [--runner-type T]... [--expires 30d]
       turboci token list --db DB [--json]
       turboci token revoke NAME --db DB

API tokens for a server started with --auth on. The secret is printed once, on stdout, by create; only its
SHA-256 is stored. Changes take effect on the server's next call (no restart).

Roles:
  reader    GetWorkPlan, QueryNodes, WatchWorkPlan, ListStageRunners and the event-log reads, in its realms
  writer    a reader that may also CreateWorkPlan and WriteNodes, in its realms
  runner    RegisterStageRunner/Unregister, Lease/Heartbeat/CompleteLease for its runner types, and the callbacks
            of executions dispatched to its runners
  approver  a reader that may approve (approval gates)
  admin     everything, every realm and runner type

Options:
  --db PATH|URL      the server's event log: a SQLite file or a PostgreSQL URL
                     (postgres://USER@HOST:5432/DBNAME)          TURBOCI_DB (default ./turboci.db)
  --name NAME        the token's name: the principal recorded on every event it causes
  --role ROLE        ${ROLES.join(', ')}
  --realm R          a realm a reader/writer/approver may use (repeatable; default "default"; "*" = every realm)
  --runner-type T    a runner type a runner token serves (repeatable, required for runners; "*" = every type)
  --expires D        lifetime: 30d, 12h, 90m or 3600s (default: never)
  --json             list as NDJSON

Examples:
  npx turboci token create --db ci.db --name root --role admin
  npx turboci token create --db ci.db --name ci-bot --role writer --realm default --expires 90d
  npx turboci token create --db ci.db --name agents --role runner --runner-type shell
  npx turboci token revoke ci-bot --db ci.db
  npx turboci token list --db postgres://turboci@db.internal:5432/turboci`;

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };

export function parseDuration(raw: string): number {
  const m = /^(\d+)([smhd])$/.exec(raw.trim());
  if (!m || Number(m[1]) <= 0) throw new UsageError(`--expires: "${raw}" is not a duration such as 30d, 12h, 90m or 3600s`);
  return Number(m[1]) * UNITS[m[2]!]!;
}

export async function token(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      db: { type: 'string' },
      name: { type: 'string' },
      role: { type: 'string' },
      realm: { type: 'string', multiple: true },
      'runner-type': { type: 'string', multiple: true },
      expires: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (!sub || sub === '--help' || sub === '-h' || values.help) {
    console.log(TOKEN_HELP);
    return sub ? 0 : 2;
  }
  const dbPath = values.db ?? process.env.TURBOCI_DB ?? './turboci.db';
  // list only reads: a read-only open works while a server runs, and on a role that may only SELECT.
  const log = openLog(dbPath, { readonly: sub === 'list', applicationName: 'turboci token' });
  const store = log.store;
  try {
    const tokens = new TokenRegistry();
    for (const rec of store.readStream(TOKEN_STREAM)) tokens.fold(rec);
    const now = Date.now();
    const append = (events: PendingEvent[]) =>
      store.append(TOKEN_STREAM, tokens.version, events, { requestId: null, recordedAt: now, principal: `cli:${userInfo().username}`, reason: null });
    switch (sub) {
      case 'create': {
        if (!values.name) throw new UsageError('--name NAME is required');
        if (!values.role) throw new UsageError(`--role is required (${ROLES.join(', ')})`);
        const secret = newSecret();
        const events = decideCreateToken(
          tokens,
          {
            name: values.name,
            role: values.role,
            realms: values.realm ?? [],
            runnerTypes: values['runner-type'] ?? [],
            expiresAt: values.expires ? now + parseDuration(values.expires) : null,
            secretHash: hashSecret(secret),
          },
          now,
        );
        append(events);
        console.log(secret);
        console.error(`token "${values.name}" created; the secret above is shown only now (send it as "authorization: Bearer <secret>", or --token / TURBOCI_TOKEN)`);
        return 0;
      }
      case 'revoke': {
        const name = positionals[0] ?? values.name;
        if (!name) throw new UsageError('which token? turboci token revoke NAME');
        const events = decideRevokeToken(tokens, name);
        if (events.length) append(events);
        console.error(events.length ? `token "${name}" revoked` : `token "${name}" was already revoked`);
        return 0;
      }
      case 'list': {
        const rows = [...tokens.tokens()].map((t) => ({
          name: t.name,
          role: t.role,
          realms: t.realms,
          runnerTypes: t.runnerTypes,
          createdAt: new Date(t.createdAt).toISOString(),
          expiresAt: t.expiresAt === null ? null : new Date(t.expiresAt).toISOString(),
          revokedAt: t.revokedAt === null ? null : new Date(t.revokedAt).toISOString(),
          status: t.revokedAt !== null ? 'revoked' : t.expiresAt !== null && t.expiresAt <= now ? 'expired' : 'active',
        }));
        if (values.json) for (const r of rows) console.log(JSON.stringify(r));
        else {
          console.log(['NAME', 'ROLE', 'STATUS', 'REALMS', 'RUNNER TYPES', 'EXPIRES'].join('\t'));
          for (const r of rows) console.log([r.name, r.role, r.status, r.realms.join(',') || '-', r.runnerTypes.join(',') || '-', r.expiresAt ?? 'never'].join('\t'));
        }
        return 0;
      }
      default:
        throw new UsageError(`unknown token command "${sub}" (create, list, revoke)`);
    }
  } catch (err) {
    if (err instanceof DomainError) {
      console.error(`turboci token: ${err.message}`);
      return 1;
    }
    const e = logError(log, err);
    if (e instanceof FatalError) throw e;
    throw err;
  } finally {
    store.close();
  }
}

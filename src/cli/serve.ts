import { randomUUID } from 'node:crypto';
import { readFileSync, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { logVerbosity, setLogVerbosity } from '@grpc/grpc-js';
import { ApprovalTimer } from '../app/approvals.js';
import { Authenticator } from '../auth/authenticator.js';
import { TOKEN_STREAM } from '../domain/events.js';
import { Dispatcher } from '../app/dispatcher.js';
import { Evictor } from '../app/evictor.js';
import { IdleCompactor } from '../app/idle-compactor.js';
import { Orchestrator } from '../app/orchestrator.js';
import { PullService } from '../app/pull-service.js';
import { Reaper } from '../app/reaper.js';
import { RunnerService } from '../app/runner-service.js';
import { loadReadModels, SnapshotScheduler } from '../app/snapshots.js';
import { GrpcRunnerTransport } from '../infra/grpc-runner-transport.js';
import { readCommitMarker, markerPath } from '../infra/commit-marker.js';
import { acquireOwnerLock } from '../infra/owner-lock.js';
import { SnapshotFile, snapshotPathFor } from '../infra/snapshot-file.js';
import { SqliteEventStore } from '../infra/sqlite-event-store.js';
import { createLogger } from '../logging.js';
import { startServer } from '../transport/server.js';
import { startHttpServer } from '../http/server.js';
import { MeteredEventStore, readModelRebuild } from '../metrics.js';
import { checkDatabaseDirectory, databaseError, FatalError, listenError, postgresError } from './fatal.js';
import type { EventStore } from '../app/event-store.js';
import { isPostgresUrl, PostgresEventStore, redactUrl } from '../infra/pg/postgres-event-store.js';
import type { Logger } from '../logging.js';
import { snapshotInWorker } from './snapshot.js';
import { UsageError } from './usage-error.js';

export const SERVE_HELP = `Usage: npx turboci serve [options]

Starts the TurboCI-Lite gRPC server (TurboCIOrchestrator, grpc.health.v1.Health, server reflection) on an
append-only SQLite event log. On start it rebuilds every read model from the log (from the read-model snapshot
PATH.snapshot and the events after it, when there is a usable one); on SIGTERM or SIGINT it stops taking calls,
lets running ones finish and closes the database.

Options (each has an environment variable; the flag wins):
  --port N           port to listen on; 0 picks a free one            TURBOCI_PORT       (default 50051)
  --host ADDR        address to bind                                   TURBOCI_HOST       (default 127.0.0.1)
  --http-port N      HTTP port on the same host: web UI, JSON API, SSE,
                     /metrics, /healthz, /readyz; 0 picks a free one   TURBOCI_HTTP_PORT  (default 8080)
  --db PATH|URL      SQLite event log file, created if missing         TURBOCI_DB         (default ./turboci.db)
                     (one server per file: a second one refuses to start; next to it the server keeps
                     PATH.lock, its lock, and PATH.position, the last position it committed),
                     or a PostgreSQL URL, postgres://USER@HOST:5432/DBNAME, that several replicas share
                     (the schema is created if missing; --sync, snapshots and the lock are SQLite's)
  --accept-data-loss serve a log that ends before the position the last server committed (PATH.position):
                     without it such a log is refused, naming how many events are missing
  --log-level LEVEL  trace, debug, info, warn, error or silent         TURBOCI_LOG_LEVEL  (default info)
  --max-attempts N   attempts a stage gets unless it sets max_attempts TURBOCI_MAX_ATTEMPTS (default 3)
  --sync MODE        FULL (fsync every commit; survives power loss) or
                     NORMAL (survives a killed process, faster)        TURBOCI_SYNC       (default FULL)
  --watch-buffer N   live events a WatchWorkPlan subscriber may have
                     waiting before RESOURCE_EXHAUSTED                 TURBOCI_WATCH_BUFFER (default 10000)
  --attempt-timeout S  seconds a dispatched attempt may run unless its
                     stage sets attempt_timeout_seconds             TURBOCI_ATTEMPT_TIMEOUT (default 600)
  --snapshot-every N  write the read-model snapshot (PATH.snapshot) in the
                     background every N events; 0 = no snapshots    TURBOCI_SNAPSHOT_EVERY (default 100000)
  --evict-after S    a complete workplan unused for S seconds leaves memory
                     (folded back from the log when asked for; a start keeps
                     complete ones as their header); 0 = never        TURBOCI_EVICT_AFTER (default 900)
  --compact-when-idle S  after S seconds without a write (once per busy period), give the JS heap's
                     fragmented pages back: one compacting GC (0.2-1.3 s at ~100 MB live, 4.6 s at 1.2 GB); 0 = never
                                                                 TURBOCI_COMPACT_WHEN_IDLE (default 30)
  --advertise-address HOST:PORT
                     address async runners call back (callback_address) TURBOCI_ADVERTISE_ADDRESS
                                                                       (default: the bound address)
Pull runners (turboci.v1.TurboCIRunnerPull, "npx turboci runner"); stages may override each in execution_policy:
  --runner-limit TYPE=N  at most N leased attempts of runner type TYPE at once (repeatable; "*=N" for
                     every other type)                           TURBOCI_RUNNER_LIMITS (e.g. "shell=4,*=16"; default none)
  --heartbeat-interval MS  how often pull runners heartbeat; two missed
                     make the attempt INCOMPLETE                 TURBOCI_HEARTBEAT_INTERVAL (default 10000)
  --pickup-timeout MS  how long an attempt may wait to be leased; 0 = forever  TURBOCI_PICKUP_TIMEOUT (default 0)
  --retry-backoff MS  delay before a retried attempt is offered  TURBOCI_RETRY_BACKOFF (default 0)
                     (the run timeout defaults to --attempt-timeout)
Input limits, in bytes of UTF-8 (docs/configuration.md lists the fixed ones):
  --max-value-bytes N  one Struct (args, options, result data, details)
                     as JSON                                     TURBOCI_MAX_VALUE_BYTES (default 262144)
  --max-metadata-bytes N  one metadata or labels map, keys + values  TURBOCI_MAX_METADATA_BYTES (default 65536)
  --max-progress-bytes N  progress one attempt keeps; appends past it
                     get RESOURCE_EXHAUSTED                      TURBOCI_MAX_PROGRESS_BYTES (default 1048576)
  --max-ttl S        longest runner registration ttl_seconds     TURBOCI_MAX_TTL (default 86400)
Identity and TLS (README "Security"):
  --auth on|off      require a bearer token on every call (turboci token create)  TURBOCI_AUTH (default off)
                     off is refused on a non-loopback --host unless --insecure-no-auth says so
  --insecure-no-auth serve without auth on a non-loopback address anyway (logs a warning)
  --runner-type-realms TYPE=REALM[|REALM...]  stages of runner type TYPE may be written only into workplans of
                     these realms (repeatable)                   TURBOCI_RUNNER_TYPE_REALMS (e.g. "shell=trusted")
  --tls-cert FILE    serve TLS with this certificate chain (PEM)  TURBOCI_TLS_CERT
  --tls-key FILE     ... and this private key (PEM)              TURBOCI_TLS_KEY
  --tls-client-ca FILE  require client certificates signed by this CA (mTLS)  TURBOCI_TLS_CLIENT_CA
  --runner-tls-ca FILE  CA to verify push runners registered with a tls:// address (default: system roots)
                                                                 TURBOCI_RUNNER_TLS_CA
  -h, --help         show this help

When ready it logs one JSON line: {"msg":"listening","address":"127.0.0.1:50051","httpAddress":"127.0.0.1:8080",...}.
The web UI is at http://HOST:HTTP_PORT/ (read-only; writes stay on gRPC). While the disk is full,
writes get RESOURCE_EXHAUSTED and health service "turboci.writes" says NOT_SERVING (reads and watches go on); it
takes writes again by itself once space returns. A fatal error at start (missing directory, port in use, read-only
file system, damaged database, database in use) is one line on stderr and exit status 1.
Operations (disk full, hash chain, commit marker, snapshots, backup and restore): docs/operations.md.

Examples:
  npx turboci serve
  npx turboci serve --port 0 --db /var/lib/turboci/ci.db --log-level warn
  TURBOCI_PORT=6000 npx turboci serve
  npx turboci serve --runner-limit shell=4 --heartbeat-interval 5000 --retry-backoff 2000`;

export async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      'http-port': { type: 'string' },
      host: { type: 'string' },
      db: { type: 'string' },
      'log-level': { type: 'string' },
      'max-attempts': { type: 'string' },
      sync: { type: 'string' },
      'watch-buffer': { type: 'string' },
      'attempt-timeout': { type: 'string' },
      'advertise-address': { type: 'string' },
      'runner-limit': { type: 'string', multiple: true },
      'heartbeat-interval': { type: 'string' },
      'pickup-timeout': { type: 'string' },
      'retry-backoff': { type: 'string' },
      'snapshot-every': { type: 'string' },
      'evict-after': { type: 'string' },
      'compact-when-idle': { type: 'string' },
      'accept-data-loss': { type: 'boolean' },
      'max-value-bytes': { type: 'string' },
      'max-metadata-bytes': { type: 'string' },
      'max-progress-bytes': { type: 'string' },
      'max-ttl': { type: 'string' },
      auth: { type: 'string' },
      'insecure-no-auth': { type: 'boolean' },
      'runner-type-realms': { type: 'string', multiple: true },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-client-ca': { type: 'string' },
      'runner-tls-ca': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(SERVE_HELP);
    return 0;
  }
  const env = process.env;
  const port = integer('--port', values.port ?? env.TURBOCI_PORT ?? '50051', 0, 65535);
  const httpPort = integer('--http-port', values['http-port'] ?? env.TURBOCI_HTTP_PORT ?? '8080', 0, 65535);
  const maxAttempts = integer('--max-attempts', values['max-attempts'] ?? env.TURBOCI_MAX_ATTEMPTS ?? '3', 1, 1000);
  const watchBuffer = integer('--watch-buffer', values['watch-buffer'] ?? env.TURBOCI_WATCH_BUFFER ?? '10000', 1, 10_000_000);
  const attemptTimeout = integer('--attempt-timeout', values['attempt-timeout'] ?? env.TURBOCI_ATTEMPT_TIMEOUT ?? '600', 1, 7 * 24 * 3600);
  const heartbeatInterval = integer('--heartbeat-interval', values['heartbeat-interval'] ?? env.TURBOCI_HEARTBEAT_INTERVAL ?? '10000', 100, 3600_000);
  const pickupTimeout = integer('--pickup-timeout', values['pickup-timeout'] ?? env.TURBOCI_PICKUP_TIMEOUT ?? '0', 0, 7 * 24 * 3600_000);
  const evictAfter = integer('--evict-after', values['evict-after'] ?? env.TURBOCI_EVICT_AFTER ?? '900', 0, 365 * 24 * 3600);
  const compactWhenIdle = integer('--compact-when-idle', values['compact-when-idle'] ?? env.TURBOCI_COMPACT_WHEN_IDLE ?? '30', 0, 365 * 24 * 3600);
  const snapshotEvery = integer('--snapshot-every', values['snapshot-every'] ?? env.TURBOCI_SNAPSHOT_EVERY ?? '100000', 0, 1_000_000_000);
  const retryBackoff = integer('--retry-backoff', values['retry-backoff'] ?? env.TURBOCI_RETRY_BACKOFF ?? '0', 0, 7 * 24 * 3600_000);
  const inputLimits = {
    maxValueBytes: integer('--max-value-bytes', values['max-value-bytes'] ?? env.TURBOCI_MAX_VALUE_BYTES ?? '262144', 1024, 64 * 1024 * 1024),
    maxMetadataBytes: integer('--max-metadata-bytes', values['max-metadata-bytes'] ?? env.TURBOCI_MAX_METADATA_BYTES ?? '65536', 1024, 64 * 1024 * 1024),
    maxProgressBytes: integer('--max-progress-bytes', values['max-progress-bytes'] ?? env.TURBOCI_MAX_PROGRESS_BYTES ?? '1048576', 1024, 1024 * 1024 * 1024),
    maxTtlSeconds: integer('--max-ttl', values['max-ttl'] ?? env.TURBOCI_MAX_TTL ?? '86400', 1, 365 * 24 * 3600),
  };
  const limitSpecs = values['runner-limit'] ?? (env.TURBOCI_RUNNER_LIMITS ? env.TURBOCI_RUNNER_LIMITS.split(',') : []);
  const limits = new Map<string, number>();
  let defaultLimit = 0;
  for (const spec of limitSpecs) {
    const m = /^([^=\s]+)=(\d+)$/.exec(spec.trim());
    if (!m) throw new UsageError(`--runner-limit: "${spec}" is not TYPE=N`);
    const n = integer('--runner-limit', m[2]!, 1, 1_000_000);
    if (m[1] === '*') defaultLimit = n;
    else limits.set(m[1]!, n);
  }
  const host = values.host ?? env.TURBOCI_HOST ?? '127.0.0.1';
  const dbPath = values.db ?? env.TURBOCI_DB ?? './turboci.db';
  const level = values['log-level'] ?? env.TURBOCI_LOG_LEVEL ?? 'info';
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(level)) {
    throw new UsageError(`--log-level: "${level}" is not one of trace, debug, info, warn, error, silent`);
  }
  const sync = (values.sync ?? env.TURBOCI_SYNC ?? 'FULL').toUpperCase() as 'FULL' | 'NORMAL';
  if (sync !== 'FULL' && sync !== 'NORMAL') throw new UsageError(`--sync: "${sync}" is not FULL or NORMAL`);

  const authMode = (values.auth ?? env.TURBOCI_AUTH ?? 'off').toLowerCase();
  if (authMode !== 'on' && authMode !== 'off') throw new UsageError(`--auth: "${authMode}" is not on or off`);
  const insecureNoAuth = values['insecure-no-auth'] === true;
  if (authMode === 'off' && !isLoopback(host) && !insecureNoAuth) {
    console.error(`turboci serve: refusing to listen on ${host} with --auth off: anyone who can reach the port could run commands on your runners; use --auth on (or --insecure-no-auth)`);
    return 2;
  }
  const runnerTypeRealms = new Map<string, Set<string>>();
  for (const spec of values['runner-type-realms'] ?? (env.TURBOCI_RUNNER_TYPE_REALMS ? env.TURBOCI_RUNNER_TYPE_REALMS.split(',') : [])) {
    const m = /^([^=\s]+)=([^=\s]+)$/.exec(spec.trim());
    if (!m) throw new UsageError(`--runner-type-realms: "${spec}" is not TYPE=REALM[|REALM...]`);
    const set = runnerTypeRealms.get(m[1]!) ?? new Set<string>();
    for (const r of m[2]!.split('|')) if (r) set.add(r);
    runnerTypeRealms.set(m[1]!, set);
  }
  const tlsCert = values['tls-cert'] ?? env.TURBOCI_TLS_CERT;
  const tlsKey = values['tls-key'] ?? env.TURBOCI_TLS_KEY;
  const tlsClientCa = values['tls-client-ca'] ?? env.TURBOCI_TLS_CLIENT_CA;
  if (!tlsCert !== !tlsKey) throw new UsageError('--tls-cert and --tls-key go together');
  if (tlsClientCa && !tlsCert) throw new UsageError('--tls-client-ca needs --tls-cert and --tls-key');
  const tls = tlsCert && tlsKey
    ? { cert: readFileSync(tlsCert), key: readFileSync(tlsKey), ...(tlsClientCa ? { clientCa: readFileSync(tlsClientCa) } : {}) }
    : undefined;
  const runnerTlsCaPath = values['runner-tls-ca'] ?? env.TURBOCI_RUNNER_TLS_CA;
  const runnerTlsCa = runnerTlsCaPath ? readFileSync(runnerTlsCaPath) : undefined;

  const log = createLogger(level);
  if (authMode === 'off' && !isLoopback(host)) {
    log.warn({ host }, 'auth is off on a non-loopback address (--insecure-no-auth): anyone who can reach the port can read, write and run commands on runners');
  }
  // A bug that escapes: the process state is unknown; the log holds only committed events, so a restart is safe.
  // (A failed group commit is not one of these: the orchestrator rolls its read models back and answers the
  // writers RESOURCE_EXHAUSTED or UNAVAILABLE; see Orchestrator.flush.)
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'fatal error; exiting');
    process.exit(1);
  });
  // Fatal at start: one line naming the path or port and the cause (main prints it and exits 1).
  const serverId = randomUUID();
  const opened = isPostgresUrl(dbPath) ? openPostgresLog(dbPath, serverId) : openSqliteLog(dbPath, sync, values['accept-data-loss'] === true, log);
  const store = new MeteredEventStore(opened.store);
  const lock = opened.lock;
  // HTTP before the rebuild: /healthz answers during it and /readyz says when it is done (the ready line names it).
  const http = await startHttpServer(log, host, httpPort).catch((err: NodeJS.ErrnoException) => {
    store.close();
    lock?.release();
    if (err.code === 'EADDRINUSE' || err.code === 'EACCES') throw new UsageError(`--http-port: cannot listen on ${host}:${httpPort} (${err.code})`);
    throw err;
  });
  log.debug({ httpAddress: http.address }, 'http listening; /readyz answers 200 once the read models are rebuilt');
  const startedAt = Date.now();
  let app: Orchestrator;
  let loaded: ReturnType<typeof loadReadModels>;
  try {
    loaded = loadReadModels(store, snapshotEvery > 0 && opened.snapshots ? new SnapshotFile(snapshotPathFor(dbPath)) : null, { evictComplete: evictAfter > 0 });
    app = Orchestrator.open(store, { defaultMaxAttempts: maxAttempts, storageProbe: opened.probe, serverId }, loaded.models);
  } catch (err) {
    void http.close();
    const e = opened.shared ? postgresError(opened.describe, err) : databaseError(dbPath, err);
    throw e instanceof FatalError ? e : new FatalError(`cannot rebuild the read models from ${opened.describe}: ${(err as Error).message}`);
  }
  readModelRebuild.set((Date.now() - startedAt) / 1000);
  if (loaded.ignored) log.warn({ why: loaded.ignored }, 'snapshot ignored; the whole log was replayed');
  log.info(
    {
      db: opened.describe,
      workplans: [...app.models.workplanIds()].length,
      rebuildMs: Date.now() - startedAt,
      fromSnapshotPosition: loaded.fromPosition,
      eventsReplayed: loaded.tailEvents,
    },
    'read models rebuilt from the log',
  );
  // Snapshots are files beside a SQLite log; on PostgreSQL every replica replays the log at start.
  const snapshots = new SnapshotScheduler(
    opened.snapshots ? snapshotEvery : 0,
    () => snapshotInWorker(dbPath).then((r) => log.info({ ...r, snapshot: snapshotPathFor(dbPath) }, 'snapshot written')),
    (err) => log.warn({ err }, 'snapshot failed; the next one will try again'),
    loaded.tailEvents,
  );
  snapshots.start(app.bus.durable$);
  const evictor = new Evictor(app, evictAfter * 1000, log);
  evictor.start();
  // Activity: an append moves the position, a fold-back of an evicted workplan allocates as much as a busy period.
  const compactor = new IdleCompactor(() => app.models.position + app.models.workplans.foldBacks, { idleMs: compactWhenIdle * 1000 }, log);
  compactor.start();
  const runners = new RunnerService(app);
  const pull = new PullService(app, log, {
    limits,
    defaultLimit,
    defaultHeartbeatIntervalMs: heartbeatInterval,
    defaultRunTimeoutMs: attemptTimeout * 1000,
    defaultPickupTimeoutMs: pickupTimeout,
    defaultRetryBackoffMs: retryBackoff,
  });
  pull.start();
  const reaper = new Reaper(app, pull, log);
  reaper.start();
  const approvals = new ApprovalTimer(app, log);
  approvals.start();
  setLogVerbosity(logVerbosity.NONE); // a failed bind is reported below in one line, not also by grpc-js
  const auth = new Authenticator({ enabled: authMode === 'on', runnerTypeRealms }, (after) => app.readStream(TOKEN_STREAM, { afterVersion: after }));
  const server = await startServer(app, log, host, port, { watchBuffer, runners, pull, limits: inputLimits, auth, ...(tls ? { tls } : {}) }).catch((err: unknown) => {
    pull.stop();
    reaper.stop();
    approvals.stop();
    snapshots.stop();
    evictor.stop();
    compactor.stop();
    app.close();
    store.close();
    lock?.release();
    void http.close();
    throw listenError(host, port, err);
  });
  setLogVerbosity(logVerbosity.ERROR);
  const dispatcher = new Dispatcher(app, runners, new GrpcRunnerTransport({ ...(runnerTlsCa ? { tlsCa: runnerTlsCa } : {}) }), log, {
    callbackAddress: values['advertise-address'] ?? env.TURBOCI_ADVERTISE_ADDRESS ?? server.address,
    defaultAttemptTimeoutMs: attemptTimeout * 1000,
  });
  dispatcher.start();
  http.attach(app, { watchBuffer, pull });
  // Signal handlers first: a supervisor (or a test) may send SIGTERM as soon as it reads the ready line.
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'shutting down');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  // The ready line is printed at any level but silent: with --port 0 it is the only way to learn the port.
  const ready = level === 'silent' ? log : log.child({}, { level: 'info' });
  ready.info(
    {
      address: server.address,
      port: server.port,
      httpAddress: http.address,
      httpPort: http.port,
      db: opened.describe,
      pid: process.pid,
      auth: authMode,
      tls: tls ? (tls.clientCa ? 'mtls' : 'tls') : 'off',
    },
    'listening',
  );
  await stopped;
  pull.stop(); // answers long-polling Lease calls now, so the server's grace period is not spent waiting for them
  http.drain(); // ends live streams, telling each browser where to resume
  await server.shutdown();
  reaper.stop();
  approvals.stop();
  dispatcher.stop();
  snapshots.stop();
  evictor.stop();
  compactor.stop();
  await http.close();
  app.close();
  store.close();
  lock?.release();
  log.info('stopped');
  return 0;
}

interface ServerLog {
  readonly store: EventStore;
  /** The owner lock beside a SQLite file (a PostgreSQL log is shared: no lock). */
  readonly lock: { release(): void } | null;
  /** While writes fail: true once they may be tried again. */
  readonly probe: () => boolean;
  readonly snapshots: boolean;
  readonly shared: boolean;
  /** The log, for messages (a URL without its password). */
  readonly describe: string;
}

/** A SQLite file this server owns: its lock, its commit marker (refusing a log that lost acknowledged events). */
function openSqliteLog(dbPath: string, sync: 'FULL' | 'NORMAL', acceptDataLoss: boolean, log: Logger): ServerLog {
  checkDatabaseDirectory(dbPath);
  let lock: ReturnType<typeof acquireOwnerLock>;
  let sqlite: SqliteEventStore;
  try {
    lock = acquireOwnerLock(dbPath);
    // Rows already in the current schema are the server's own: only upcast rows are validated again on start.
    sqlite = new SqliteEventStore(dbPath, { synchronous: sync, syncOffMainThread: true, groupCommit: true, commitMarker: true, validate: 'upcast' });
  } catch (err) {
    throw databaseError(dbPath, err);
  }
  const marker = readCommitMarker(dbPath);
  const last = sqlite.lastPosition();
  if (marker && last < marker.position) {
    const missing = marker.position - last;
    const what = `the event log ${dbPath} ends at position ${last}, but the server that last served it committed up to position ${marker.position} (${markerPath(dbPath)}): ${missing} acknowledged event${missing === 1 ? ' is' : 's are'} missing`;
    if (!acceptDataLoss) {
      sqlite.close();
      lock.release();
      throw new FatalError(`${what}. Restore the database from a backup, or start with --accept-data-loss to serve what is left`);
    }
    log.warn({ db: dbPath, lastPosition: last, committedPosition: marker.position, missing }, `${what}; serving what is left (--accept-data-loss)`);
  }
  sqlite.writeCommitMarker(); // this server owns the log now, from this position
  return { store: sqlite, lock, probe: () => freeBytes(dbPath) >= FREE_BYTES_TO_RESUME, snapshots: true, shared: false, describe: dbPath };
}

/** A PostgreSQL log, shared with any other replicas: the schema is created or migrated, nothing is owned. */
function openPostgresLog(url: string, serverId: string): ServerLog {
  const describe = redactUrl(url);
  let store: PostgresEventStore;
  try {
    store = new PostgresEventStore(url, { groupCommit: true, validate: 'upcast', serverId });
  } catch (err) {
    throw postgresError(describe, err);
  }
  return { store, lock: null, probe: () => true, snapshots: false, shared: true, describe };
}

/** While writes fail for lack of space, health turns SERVING again once the file system has this much free. */
const FREE_BYTES_TO_RESUME = 1024 * 1024;

function freeBytes(dbPath: string): number {
  const fs = statfsSync(dirname(resolve(dbPath)));
  return fs.bavail * fs.bsize;
}

/** 127.0.0.0/8, ::1 and localhost: only this machine can connect. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::ffff:127.0.0.1';
}

function integer(flag: string, raw: string, min: number, max: number): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag}: "${raw}" is not a whole number from ${min} to ${max}`);
  return n;
}

import { fileURLToPath } from 'node:url';
import { skip } from 'rxjs';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { Orchestrator } from '../app/orchestrator.js';
import { TurboCIEventLogService } from '../gen/turboci/v1/eventlog.js';
import { TurboCIRunnerPullService } from '../gen/turboci/v1/pull.js';
import type { PullService } from '../app/pull-service.js';
import { pullService } from './pull-service.js';
import type { Logger } from '../logging.js';
import { RunnerService } from '../app/runner-service.js';
import { eventLogService } from './eventlog-service.js';
import { ORCHESTRATOR_DEFINITION, orchestratorService } from './orchestrator-service.js';
import { WatchService } from './watch-service.js';
import { installTimestampCheck, tolerant } from './decode.js';
import { configureLimits, type InputLimits } from '../domain/limits.js';
import type { Authenticator } from '../auth/authenticator.js';
import { requireWorkPlan } from './auth.js';
import { addReflection } from './reflection.js';
import type { WatchCall } from './watch-service.js';

function serverCredentials(tls: ServerOptions['tls']): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(tls.clientCa ?? null, [{ cert_chain: tls.cert, private_key: tls.key }], tls.clientCa !== undefined);
}

const PROTO_ROOT = fileURLToPath(new URL('../../../proto', import.meta.url));
const PROTO_FILES = ['common', 'check', 'workplan', 'stage', 'stagerunner', 'service', 'eventlog', 'pull'].map((f) => `turboci/v1/${f}.proto`);

/** The health service name that says whether writes are taken (NOT_SERVING while the disk is full). */
export const WRITES_HEALTH_SERVICE = 'turboci.writes';

export interface RunningServer {
  readonly address: string;
  readonly port: number;
  /** Stops taking calls, lets running ones finish (up to graceMs), then closes. */
  shutdown(graceMs?: number): Promise<void>;
}

export interface ServerOptions {
  /** Live events a WatchWorkPlan subscriber may have waiting before it gets RESOURCE_EXHAUSTED. */
  readonly watchBuffer?: number;
  /** The runner protocol's application service (shared with the dispatcher). */
  readonly runners?: RunnerService;
  /** The pull protocol's scheduler (TurboCIRunnerPull is served when it is given). */
  readonly pull?: PullService;
  /** Input limits (any not given keeps its default). */
  readonly limits?: Partial<InputLimits>;
  /** Authenticates and authorizes every call (bearer tokens); without it every caller is `anonymous`. */
  readonly auth?: Authenticator;
  /** Serve TLS with this certificate and key; with clientCa, require client certificates it signed (mTLS). */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly clientCa?: Buffer };
}

export async function startServer(app: Orchestrator, log: Logger, host: string, port: number, options: ServerOptions = {}): Promise<RunningServer> {
  configureLimits(options.limits ?? {});
  installTimestampCheck();
  const server = new Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  const auth = options.auth;
  const authorize = auth
    ? (call: WatchCall) => requireWorkPlan(app, auth.authorize(call.metadata, 'WatchWorkPlan'), 'workplans.read', call.request.workPlanId)
    : undefined;
  const watch = new WatchService(app, log, { bufferSize: options.watchBuffer, authorize });
  server.addService(tolerant(ORCHESTRATOR_DEFINITION), orchestratorService(app, log, watch, options.runners ?? new RunnerService(app), auth));

  server.addService(tolerant(TurboCIEventLogService), eventLogService(app, log, auth));
  if (options.pull) server.addService(tolerant(TurboCIRunnerPullService), pullService(options.pull, log, () => app.durable(), auth));

  const health = new HealthImplementation({
    '': 'SERVING',
    [WRITES_HEALTH_SERVICE]: 'SERVING',
    'turboci.v1.TurboCIOrchestrator': 'SERVING',
    'turboci.v1.TurboCIEventLog': 'SERVING',
    ...(options.pull ? { 'turboci.v1.TurboCIRunnerPull': 'SERVING' } : {}),
  });
  health.addToServer(server);
  // While the log cannot take writes (disk full), the services that write say NOT_SERVING; the server itself ('')
  // and the read-only TurboCIEventLog stay SERVING: reads and watches work, and a supervisor has no reason to restart.
  const writers = [WRITES_HEALTH_SERVICE, 'turboci.v1.TurboCIOrchestrator', ...(options.pull ? ['turboci.v1.TurboCIRunnerPull'] : [])];
  const storage = app.storage.changes$.pipe(skip(1)).subscribe((failure) => {
    for (const name of writers) health.setStatus(name, failure ? 'NOT_SERVING' : 'SERVING');
    if (failure) log.error({ error: failure.message }, 'the event log cannot take writes; reads and watches go on');
    else log.info('the event log takes writes');
  });
  addReflection(server, PROTO_FILES, PROTO_ROOT);

  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, serverCredentials(options.tls), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const address = `${host.includes(':') ? `[${host}]` : host}:${bound}`;
  return {
    address,
    port: bound,
    shutdown: (graceMs = 10_000) =>
      new Promise<void>((resolve) => {
        storage.unsubscribe();
        health.setStatus('', 'NOT_SERVING');
        watch.shutdown(); // watch streams never end by themselves: end them, telling clients where to resume
        const force = setTimeout(() => {
          log.warn({ graceMs }, 'calls still running after the grace period; closing them');
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

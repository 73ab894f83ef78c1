import { hostname, tmpdir } from 'node:os';
import { ID_RULE, isValidId } from '../domain/ids.js';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent } from '../agent/agent.js';
import { CLIENT_ARG_HELP, CLIENT_ARG_OPTIONS, connectOptionsFrom } from '../client/connect.js';
import { createLogger } from '../logging.js';
import { UsageError } from './usage-error.js';

export const RUNNER_HELP = `Usage: npx turboci runner --server HOST:PORT --type TYPE [options]

A pull runner agent (turboci.v1.TurboCIRunnerPull): it asks the server for attempts of stages whose runner_type is
TYPE (it needs no open port: it only calls out), runs each stage's args.command in a fresh working directory, sends
the command's stdout/stderr lines as progress with its heartbeats, and completes the attempt:
  exit 0    → a result on every assigned check ({exit_code, duration_ms, output_tail, runner_id}), finalized,
              and the stage FINAL
  non-zero  → the attempt fails and is retried per the stage's max_attempts and execution_policy
A cancelled stage stops the command: SIGTERM to its process group, SIGKILL after --grace.

Stage args it understands:
  command   "make test" (run by /bin/sh -c) or ["npm", "run", "lint"] (argv)     required
  env       {"CI": "1"}: added to the command's environment
  cwd       directory to run in: relative to the fresh working directory, or absolute; it must be inside --workdir
            (a stage whose cwd leaves it fails without running)
  timeout   seconds the command may run (the stage's run timeout still applies)
  runner_labels {"os": "linux"}: only agents with all these --labels take the stage
The command runs other people's code with a scrubbed environment: only PATH, HOME, LANG, LC_ALL, TZ and TMPDIR
of the agent's, plus what --pass-env names, plus args.env, plus TURBOCI_WORK_PLAN_ID, TURBOCI_STAGE_ID,
TURBOCI_ATTEMPT, TURBOCI_RUNNER_ID and TURBOCI_WORKDIR. The agent's token never reaches it.

Options (each has an environment variable; the flag wins):
  --server HOST:PORT   the TurboCI-Lite server                    TURBOCI_SERVER (required)
  --type TYPE          the runner type to take work for           TURBOCI_RUNNER_TYPE (required)
  --labels k=v[,k=v]   labels of this agent (repeatable)          TURBOCI_RUNNER_LABELS
  --concurrency N      commands run at once                       TURBOCI_RUNNER_CONCURRENCY (default 1)
  --workdir DIR        where working directories are made         TURBOCI_RUNNER_WORKDIR (default $TMPDIR/turboci-runner)
  --id ID              process uid reported on attempts           TURBOCI_RUNNER_ID (default HOSTNAME-PID)
  --grace MS           SIGTERM → SIGKILL grace when stopping       TURBOCI_RUNNER_GRACE (default 10000)
  --wait MS            an idle Work stream is reopened (or a Lease long-poll renewed) after this long  (default 30000)
  --protocol P         stream: one Work stream carries leases and completions (an extension; against a server
                       without it the agent falls back to unary); unary: Lease and CompleteLease calls only
                                                                  TURBOCI_RUNNER_PROTOCOL (default stream)
  --log-level LEVEL    trace, debug, info, warn, error, silent    TURBOCI_LOG_LEVEL (default info)
  --pass-env NAME      pass this variable of the agent's environment to commands (repeatable)  TURBOCI_RUNNER_PASS_ENV
${CLIENT_ARG_HELP}
  -h, --help           show this help

It logs JSON lines on stdout (leased, started with the pid, finished, completed). If the server goes away it keeps
running its commands and their leases, retries with backoff and reports when the server is back (a lease that
expired meanwhile is refused and the attempt was retried elsewhere). SIGTERM or SIGINT drains: no new work,
running commands finish and are reported, then it exits 0; a second signal stops the commands and exits 1.

Examples:
  npx turboci runner --server 127.0.0.1:50051 --type shell
  npx turboci runner --server ci.example.com:50051 --type shell --labels os=linux,arch=x64 --concurrency 4 --workdir /var/tmp/ci`;

export async function runner(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      server: { type: 'string' },
      type: { type: 'string' },
      labels: { type: 'string', multiple: true },
      concurrency: { type: 'string' },
      workdir: { type: 'string' },
      id: { type: 'string' },
      grace: { type: 'string' },
      wait: { type: 'string' },
      protocol: { type: 'string' },
      'log-level': { type: 'string' },
      'pass-env': { type: 'string', multiple: true },
      ...CLIENT_ARG_OPTIONS,
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(RUNNER_HELP);
    return 0;
  }
  const env = process.env;
  const server = values.server ?? env.TURBOCI_SERVER;
  if (!server) throw new UsageError('--server HOST:PORT is required');
  const type = values.type ?? env.TURBOCI_RUNNER_TYPE;
  if (!type || !isValidId(type)) throw new UsageError(`--type TYPE is required (${ID_RULE.replace(/^must be /, '')})`);
  const labels: Record<string, string> = {};
  for (const spec of (values.labels ?? (env.TURBOCI_RUNNER_LABELS ? [env.TURBOCI_RUNNER_LABELS] : [])).flatMap((s) => s.split(','))) {
    if (!spec.trim()) continue;
    const eq = spec.indexOf('=');
    if (eq <= 0) throw new UsageError(`--labels: "${spec}" is not k=v`);
    labels[spec.slice(0, eq).trim()] = spec.slice(eq + 1).trim();
  }
  const concurrency = integer('--concurrency', values.concurrency ?? env.TURBOCI_RUNNER_CONCURRENCY ?? '1', 1, 1000);
  const graceMs = integer('--grace', values.grace ?? env.TURBOCI_RUNNER_GRACE ?? '10000', 0, 3600_000);
  const waitMs = integer('--wait', values.wait ?? '30000', 0, 60_000);
  const protocol = values.protocol ?? env.TURBOCI_RUNNER_PROTOCOL ?? 'stream';
  if (protocol !== 'stream' && protocol !== 'unary') throw new UsageError(`--protocol: "${protocol}" is not stream or unary`);
  const level = values['log-level'] ?? env.TURBOCI_LOG_LEVEL ?? 'info';
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(level)) {
    throw new UsageError(`--log-level: "${level}" is not one of trace, debug, info, warn, error, silent`);
  }
  const log = createLogger(level);
  const agent = new Agent({
    server,
    runnerType: type,
    runnerId: values.id ?? env.TURBOCI_RUNNER_ID ?? `${hostname()}-${process.pid}`,
    labels,
    concurrency,
    workdir: values.workdir ?? env.TURBOCI_RUNNER_WORKDIR ?? join(tmpdir(), 'turboci-runner'),
    graceMs,
    waitMs,
    completeRetryMs: 10 * 60_000,
    protocol,
    log,
    connect: connectOptionsFrom(values),
    passEnv: values['pass-env'] ?? (env.TURBOCI_RUNNER_PASS_ENV ? env.TURBOCI_RUNNER_PASS_ENV.split(',').filter(Boolean) : []),
  });
  agent.start();
  let signals = 0;
  let aborted = false;
  const drained = new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals === 1) {
        log.info({ signal }, 'draining: no new work; waiting for running commands');
        void agent.drain().then(resolve);
        return;
      }
      log.warn({ signal }, 'stopping running commands');
      aborted = true;
      agent.abort();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await drained;
  log.info('stopped');
  return aborted ? 1 : 0;
}

function integer(flag: string, raw: string, min: number, max: number): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag}: "${raw}" is not a whole number from ${min} to ${max}`);
  return n;
}

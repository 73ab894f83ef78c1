// A minimal stage runner: a StageRunner gRPC server that registers with the orchestrator (re-registering as its
// heartbeat), runs each stage it is sent, and reports a result for every check assigned to the stage. The
// orchestrator sends the stages on one RunStream (unary Run stays for servers that predate it); both call run().
//
//   node dist/examples/runner.js --server 127.0.0.1:50051 [--type echo] [--port 0] [--concurrency 2]
//
// Stages with runner_type "echo" are sent here; the runner answers with {echo: args.message} on each check.
import { Metadata, Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import { channel, CLIENT_ARG_OPTIONS, connectOptionsFrom } from '../src/client/connect.js';
import { CheckState, ExecutionMode, StageState } from '../src/gen/turboci/v1/common.js';
import { RegisterStageRunnerRequest, TurboCIOrchestratorClient } from '../src/gen/turboci/v1/service.js';
import { StageRunnerService, type RunRequest, type RunResponse } from '../src/gen/turboci/v1/stagerunner.js';
import { serveRunStream } from '../src/client/run-stream.js';
import { describeError, exampleArgs, reachable } from './support.js';

const USAGE = `usage: node dist/examples/runner.js [--server HOST:PORT] [--type TYPE] [--port N] [--concurrency N] [--id ID]

A StageRunner (push protocol): registers with the server (default 127.0.0.1:50051) as runner type TYPE (default
echo), answers Run (and RunStream) with {echo: args.message} on every check assigned to the stage, unregisters on SIGTERM.`;
const { values } = exampleArgs(USAGE, {
    server: { type: 'string', default: '127.0.0.1:50051' },
    type: { type: 'string', default: 'echo' },
    port: { type: 'string', default: '0' },
    concurrency: { type: 'string', default: '2' },
    id: { type: 'string', default: `echo-runner-${process.pid}` },
    ...CLIENT_ARG_OPTIONS, // --token (or TURBOCI_TOKEN: a runner token for --type), --tls-ca, --tls-cert, --tls-key
});

async function run(req: RunRequest, via: 'Run' | 'RunStream'): Promise<RunResponse> {
  console.log(`running stage ${req.stageId} attempt ${req.attemptIdx} of ${req.workPlanId} (${via})`);
  return {
    stageState: StageState.STAGE_STATE_FINAL,
    checkUpdates: req.assignedCheckIds.map((checkId) => ({
      checkId,
      state: CheckState.CHECK_STATE_FINAL,
      resultData: { echo: req.args?.message ?? null, runner: values.id },
      finalize: true,
      failure: undefined,
    })),
    failure: undefined,
    details: { runner: values.id },
  };
}

const server = new Server();
const runStream = serveRunStream((req) => run(req, 'RunStream'));
server.addService(StageRunnerService, {
  run: (call: ServerUnaryCall<RunRequest, RunResponse>, callback: sendUnaryData<RunResponse>) =>
    run(call.request, 'Run').then((res) => callback(null, res), (err: Error) => callback(err)),
  runStream: runStream.handler,
  runAsync: (_call: unknown, callback: sendUnaryData<unknown>) => callback(null, { accepted: false }),
  ping: (_call: unknown, callback: sendUnaryData<unknown>) =>
    callback(null, { runnerType: values.type, supportedModes: [ExecutionMode.EXECUTION_MODE_SYNC], availableCapacity: Number(values.concurrency) }),
});
const port = await new Promise<number>((resolve, reject) =>
  server.bindAsync(`127.0.0.1:${values.port}`, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
);

const ch = channel(connectOptionsFrom(values));
const orchestrator = new TurboCIOrchestratorClient(values.server!, ch.credentials, ch.options);
await reachable(orchestrator, values.server!);
const ttlSeconds = 30;
const register = () =>
  new Promise<string>((resolve, reject) =>
    orchestrator.registerStageRunner(
      RegisterStageRunnerRequest.fromPartial({
        runnerId: values.id,
        runnerType: values.type,
        address: `127.0.0.1:${port}`,
        supportedModes: [ExecutionMode.EXECUTION_MODE_SYNC],
        maxConcurrent: Number(values.concurrency),
        ttlSeconds,
      }),
      new Metadata(),
      (err, res) => (err ? reject(err) : resolve(res.registrationId)),
    ),
  );
const registrationId = await register().catch((err: unknown) => {
  console.error(`cannot register with ${values.server}: ${describeError(err)}`);
  process.exit(1);
});
console.log(`runner ${values.id} (type ${values.type}) listening on 127.0.0.1:${port}, registration ${registrationId}`);
// Existing runners heartbeat by registering again before the TTL runs out.
const heartbeat = setInterval(() => register().catch((err: unknown) => console.error(`heartbeat failed: ${describeError(err)}`)), (ttlSeconds * 1000) / 3);

const stop = () => {
  clearInterval(heartbeat);
  orchestrator.unregisterStageRunner({ registrationId }, () => {
    orchestrator.close();
    runStream.drain(); // streams end once their runs are answered; tryShutdown waits for them
    server.tryShutdown(() => process.exit(0));
  });
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

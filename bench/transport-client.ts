// The load generator of the transport and watch-fanout benchmarks, in its own process. It stays up for the whole
// benchmark, like a real client (warm JIT, connection kept), and takes jobs as JSON lines on stdin (ClientJob): each
// job is `calls` WriteNodes calls, each writing one new check (id PREFIX-N, PLANNED) to one workplan, `concurrency` of
// them in flight over one gRPC connection per address, after `warmup` untimed calls of the same shape. For each job
// it prints one JSON line (ClientResult). Errors are counted, not fatal: the caller reports them.
//
//   node dist/bench/transport-client.js     then, on stdin: {"address":"HOST:PORT","workPlanId":"…","calls":1000,…}
import { createInterface } from 'node:readline';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { CheckState } from '../src/gen/turboci/v1/common.js';
import { TurboCIOrchestratorClient, WriteNodesRequest, type WriteNodesResponse } from '../src/gen/turboci/v1/service.js';

export interface ClientJob {
  readonly address: string;
  readonly workPlanId: string;
  readonly calls: number;
  readonly warmup: number;
  readonly concurrency: number;
  /** Check ids are PREFIX-0, PREFIX-1, … (warm-up calls: PREFIX-warm-N): unique per job, so every check is new. */
  readonly prefix: string;
}

export interface ClientResult {
  readonly calls: number;
  readonly errors: number;
  readonly firstError: string | null;
  readonly seconds: number;
  readonly callsPerSec: number;
  /** The highest work_plan_version answered (0 from the no-op baseline). */
  readonly lastVersion: number;
}

const clients = new Map<string, TurboCIOrchestratorClient>();

async function clientFor(address: string): Promise<TurboCIOrchestratorClient> {
  let client = clients.get(address);
  if (!client) {
    client = new TurboCIOrchestratorClient(address, credentials.createInsecure());
    clients.set(address, client);
    const c = client;
    await new Promise<void>((resolve, reject) => c.waitForReady(Date.now() + 15_000, (err) => (err ? reject(err) : resolve())));
  }
  return client;
}

/** Counts what a run of calls answered. */
class Tally {
  errors = 0;
  firstError: string | null = null;
  lastVersion = 0;
}

function writeOne(client: TurboCIOrchestratorClient, workPlanId: string, id: string, tally: Tally): Promise<void> {
  const req = WriteNodesRequest.fromPartial({ workPlanId, checks: [{ id, state: CheckState.CHECK_STATE_PLANNED, kind: 'bench' }] });
  return new Promise((resolve) => {
    client.writeNodes(req, new Metadata(), { deadline: Date.now() + 60_000 }, (err: ServiceError | null, res?: WriteNodesResponse) => {
      if (err) {
        tally.errors++;
        tally.firstError ??= `${err.code}: ${err.details}`;
      } else if (res) tally.lastVersion = Math.max(tally.lastVersion, Number(res.workPlanVersion));
      resolve();
    });
  });
}

/** `calls` calls with ids prefix-0.., keeping `concurrency` in flight until all are answered. */
async function run(client: TurboCIOrchestratorClient, job: ClientJob, prefix: string, calls: number, tally: Tally): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < calls) await writeOne(client, job.workPlanId, `${prefix}-${next++}`, tally);
  };
  await Promise.all(Array.from({ length: Math.min(job.concurrency, calls) }, worker));
}

async function runJob(job: ClientJob): Promise<ClientResult> {
  const client = await clientFor(job.address);
  await run(client, job, `${job.prefix}-warm`, job.warmup, new Tally());
  const tally = new Tally();
  const t0 = process.hrtime.bigint();
  await run(client, job, job.prefix, job.calls, tally);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { calls: job.calls, errors: tally.errors, firstError: tally.firstError, seconds, callsPerSec: job.calls / seconds, lastVersion: tally.lastVersion };
}

// One job at a time, in order: the caller waits for each answer before sending the next.
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  console.log(JSON.stringify(await runJob(JSON.parse(line) as ClientJob)));
}
for (const c of clients.values()) c.close();

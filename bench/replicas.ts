// PostgreSQL replicas against the embedded SQLite default, side by side in one run.
//
//   calls/s   WriteNodes of one new check, 64 in flight per load client (bench/transport-client.ts, one process
//             per replica, each writing its own workplans): one server on SQLite (--sync FULL), then 1, 2 and 3
//             replicas on one PostgreSQL database (a fresh one per side, synchronous_commit as the server has it:
//             on, so every commit is fsynced). Rounds rotate the order; medians kept. Total calls/s over all
//             replicas is what is compared.
//   stages/s  The bullmq benchmark's shapes end to end (fan-in of N no-op stages + 1, chain of N), 4 push runners
//             of one slot, on one server on SQLite and on one replica on PostgreSQL.
//
// Without a PostgreSQL at TURBOCI_BENCH_PG (default postgres://postgres@127.0.0.1:5432/postgres) the PostgreSQL
// sides are skipped, and the note says so.
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { connect, tempDir } from '../test/support/server.js';
import { benchArgs, median, ratio, report, type Ratio } from './harness.js';
import { chain, fanIn, runStagesPush } from './stage-drivers.js';
import { cpuSeconds, startLoadClient, startQuietServer, type ChildServer, type LoadClient } from './transport-support.js';

const args = benchArgs();
const ADMIN_URL = process.env.TURBOCI_BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const SIZES = args.smoke
  ? { rounds: 1, calls: 64, warmup: 16, fanIn: 50, chain: 20 }
  : { rounds: 3, calls: 3000, warmup: 500, fanIn: 10_000, chain: 1_000 };
const CONCURRENCY = 64;
const RUNNERS = 4;
const TIMEOUT_MS = 300_000;

/** A fresh database on the PostgreSQL server, dropped by drop(). */
async function freshDatabase(): Promise<{ url: string; drop(): Promise<void> } | string> {
  const admin = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 3000 });
  try {
    await admin.connect();
  } catch (err) {
    return `no PostgreSQL at ${ADMIN_URL}: ${(err as Error).message}`;
  }
  const name = `turboci_bench_${randomBytes(6).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

interface Side {
  readonly label: string;
  readonly servers: ChildServer[];
  readonly clients: LoadClient[];
  readonly newWorkPlan: (() => Promise<string>)[];
  readonly rates: number[];
  readonly cpuPerCall: number[];
  errors: number;
  firstError: string | null;
}

let runs = 0;

/** One round on a side: every replica's load client at once; total calls over the slowest client's time. */
async function runSide(side: Side, calls: number, warmup: number): Promise<void> {
  const ids = await Promise.all(side.newWorkPlan.map((f) => f()));
  const cpu0 = side.servers.map((s) => cpuSeconds(s.pid));
  const results = await Promise.all(
    side.servers.map((s, i) => side.clients[i]!.run({ address: s.address, workPlanId: ids[i]!, calls, warmup, concurrency: CONCURRENCY, prefix: `r${runs++}` })),
  );
  const cpu1 = side.servers.map((s) => cpuSeconds(s.pid));
  const seconds = Math.max(...results.map((r) => r.seconds));
  side.rates.push((calls * side.servers.length) / seconds);
  for (const r of results) {
    side.errors += r.errors;
    side.firstError ??= r.firstError;
  }
  if (cpu0.every((c) => c !== undefined) && cpu1.every((c) => c !== undefined)) {
    const cpu = cpu1.reduce((a, c, i) => a + (c! - cpu0[i]!), 0);
    side.cpuPerCall.push((cpu / ((calls + warmup) * side.servers.length)) * 1e6);
  }
}

const figures: Record<string, number | string> = {};
const ratios: Ratio[] = [];
const notes: string[] = [];
const dir = tempDir('turboci-bench-replicas-');
const drops: (() => Promise<void>)[] = [];
const everyServer: ChildServer[] = [];
const everyClient: LoadClient[] = [];
const connections: ReturnType<typeof connect>[] = [];

async function makeSide(label: string, dbs: string[]): Promise<Side> {
  const side: Side = { label, servers: [], clients: [], newWorkPlan: [], rates: [], cpuPerCall: [], errors: 0, firstError: null };
  for (const db of dbs) {
    const server = await startQuietServer(db);
    everyServer.push(server);
    side.servers.push(server);
    const client = startLoadClient();
    everyClient.push(client);
    side.clients.push(client);
    const conn = connect(server.address);
    connections.push(conn);
    side.newWorkPlan.push(async () => (await conn.api.createWorkPlan({ metadata: { bench: 'replicas' } })).workPlan!.id);
  }
  return side;
}

try {
  const sides: Side[] = [await makeSide('SQLite, 1 server', [join(dir.path, 'sqlite.db')])];
  const probe = await freshDatabase();
  if (typeof probe === 'string') {
    notes.push(`PostgreSQL sides skipped: ${probe}`);
  } else {
    await probe.drop();
    for (const n of [1, 2, 3]) {
      const db = await freshDatabase();
      if (typeof db === 'string') throw new Error(db);
      drops.push(db.drop);
      sides.push(await makeSide(`PostgreSQL, ${n} replica${n > 1 ? 's' : ''}`, Array.from({ length: n }, () => db.url)));
    }
  }
  // Warm-up (JIT of servers and clients), not timed.
  for (const side of sides) await runSide(side, SIZES.warmup, SIZES.warmup);
  for (const side of sides) {
    side.rates.length = 0;
    side.cpuPerCall.length = 0;
  }
  for (let round = 0; round < SIZES.rounds; round++) {
    for (let k = 0; k < sides.length; k++) await runSide(sides[(round + k) % sides.length]!, SIZES.calls, 0);
  }
  const sqlite = sides[0]!;
  for (const side of sides) {
    figures[`*${side.label}: WriteNodes calls/s (total)`] = median(side.rates);
    if (side.cpuPerCall.length) figures[`${side.label}: server CPU per call (µs)`] = median(side.cpuPerCall);
    if (side.errors) notes.push(`${side.label}: ${side.errors} calls failed, first: ${side.firstError}`);
  }
  const pgSides = sides.slice(1);
  if (pgSides.length) {
    ratios.push(ratio('PostgreSQL 1 replica vs SQLite, WriteNodes', median(pgSides[0]!.rates), median(sqlite.rates), 'calls/s'));
    for (const side of pgSides.slice(1)) ratios.push(ratio(`PostgreSQL ${side.label.split(', ')[1]} vs 1 replica`, median(side.rates), median(pgSides[0]!.rates), 'calls/s'));
  }
  // Stages end to end: one server each, fresh databases, push runners.
  const shapes = [
    { label: `fan-in ${SIZES.fanIn}`, spec: fanIn(SIZES.fanIn, 'noop'), stages: SIZES.fanIn + 1 },
    { label: `chain ${SIZES.chain}`, spec: chain(SIZES.chain, 'noop'), stages: SIZES.chain },
  ];
  const stageSides: { label: string; db: () => Promise<string> }[] = [{ label: 'SQLite', db: async () => join(dir.path, `stages-${runs++}.db`) }];
  if (pgSides.length) {
    stageSides.push({
      label: 'PostgreSQL',
      db: async () => {
        const db = await freshDatabase();
        if (typeof db === 'string') throw new Error(db);
        drops.push(db.drop);
        return db.url;
      },
    });
  }
  for (const shape of shapes) {
    const perSecond = new Map<string, number>();
    for (const s of stageSides) {
      const server = await startQuietServer(await s.db());
      try {
        const r = await runStagesPush(server.address, shape.spec, { runners: RUNNERS, maxConcurrent: 1, timeoutMs: TIMEOUT_MS });
        perSecond.set(s.label, (shape.stages / r.elapsedMs) * 1000);
        figures[`*${shape.label}: ${s.label} push (stages/s)`] = (shape.stages / r.elapsedMs) * 1000;
      } finally {
        await server.stop();
      }
    }
    if (perSecond.has('PostgreSQL')) ratios.push(ratio(`${shape.label} PostgreSQL vs SQLite, push`, perSecond.get('PostgreSQL')!, perSecond.get('SQLite')!, 'stages/s'));
  }
} finally {
  for (const c of connections) c.close();
  await Promise.all(everyClient.map((c) => c.stop()));
  await Promise.all(everyServer.map((s) => s.stop()));
  for (const drop of drops) await drop().catch(() => undefined);
  dir.remove();
}
notes.push(
  `calls/s: ${CONCURRENCY} WriteNodes in flight per load client, one client process per replica, each on its own workplans; ${SIZES.rounds} round(s), order rotating, median of totals`,
  'replicas serialize their group commits on one advisory lock (positions gap-free in commit order), so on one machine more replicas add CPU for gRPC and folding, not for commits',
  `stages/s: ${RUNNERS} push runners × 1 slot, one server; SQLite at --sync FULL, PostgreSQL with synchronous_commit on (both fsync each commit)`,
  'all replicas, PostgreSQL, the load clients and this process share the machine’s cores',
);
report({ benchmark: 'replicas', figures, ratios, notes }, args);
process.exit(0);

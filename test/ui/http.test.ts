// The HTTP port of a real server: health and readiness, the JSON API's answers and errors, SSE streams that resume
// like WatchWorkPlan's after_version, and /metrics counters that move by exactly the calls made.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CheckState } from '../../src/gen/turboci/v1/common.js';
import { serverPerFile } from '../support/server.js';
import { startTestRunner } from '../support/runner.js';
import { openSse, type SseEvent } from './sse-client.js';

const file = serverPerFile('ui-http');
const url = (path: string) => `http://${file.server.httpAddress}${path}`;
const getJson = async (path: string, init?: RequestInit) => {
  const res = await fetch(url(path), init).catch((err: Error) => {
    // Say why: is the server still there, and what did it log last?
    const problems = file.server.logs.filter((l) => Number(l.level) >= 50).map((l) => JSON.stringify(l));
    throw new Error(`GET ${path}: ${err.message} (${String((err as { cause?: unknown }).cause)}); server exit code ${file.server.child.exitCode}, signal ${file.server.child.signalCode}; errors logged: ${problems.join(' | ') || 'none'}`);
  });
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: (await res.json()) as Record<string, unknown> };
};

test('the ready line names the HTTP address; /healthz and /readyz answer', async () => {
  const ready = await file.server.waitForLog((l) => l.msg === 'listening');
  assert.match(String(ready.httpAddress), /^127\.0\.0\.1:\d+$/);
  assert.equal(ready.httpAddress, `127.0.0.1:${ready.httpPort}`);
  assert.deepEqual((await getJson('/healthz')).body, { status: 'ok' });
  assert.deepEqual(await getJson('/readyz'), { status: 200, type: 'application/json; charset=utf-8', body: { status: 'ready' } });
});

test('bad input: a malformed id is a JSON 400 naming the field, an unknown one a 404, writes a 405', async () => {
  const malformed = await getJson(`/api/workplans/${encodeURIComponent('has space')}`);
  assert.equal(malformed.status, 400);
  assert.equal(malformed.type, 'application/json; charset=utf-8');
  assert.deepEqual(malformed.body.error, { code: 'INVALID_ARGUMENT', field: 'work_plan_id', message: 'work_plan_id: must be 1-256 printable characters without spaces' });
  for (const path of ['/events', '/explain?node=x', '/stream']) {
    const r = await getJson(`/api/workplans/${encodeURIComponent('a\tb')}${path}`);
    assert.equal(r.status, 400, path);
    assert.equal((r.body.error as { field: string }).field, 'work_plan_id', path);
  }
  const unknown = await getJson('/api/workplans/no-such-plan');
  assert.equal(unknown.status, 404);
  assert.deepEqual(unknown.body.error, { code: 'NOT_FOUND', field: 'work_plan_id', message: 'work_plan_id: no workplan "no-such-plan"' });
  assert.equal((await getJson('/api/workplans/no-such-plan/stream')).status, 404);

  const { workPlan } = await file.api.createWorkPlan({ metadata: { repo: 'http' } });
  const id = workPlan!.id;
  const badVersion = await getJson(`/api/workplans/${id}?version=abc`);
  assert.deepEqual([badVersion.status, (badVersion.body.error as { field: string }).field], [400, 'version']);
  const future = await getJson(`/api/workplans/${id}?version=99`);
  assert.deepEqual([future.status, (future.body.error as { field: string }).field], [400, 'version']);
  const badFilter = await getJson('/api/workplans?filter=repo');
  assert.deepEqual([badFilter.status, (badFilter.body.error as { field: string }).field], [400, 'filter']);
  const badAfter = await getJson(`/api/workplans/${id}/stream?after_version=-1`);
  assert.deepEqual([badAfter.status, (badAfter.body.error as { field: string }).field], [400, 'after_version']);
  const beyond = await getJson(`/api/workplans/${id}/stream?after_version=5`);
  assert.deepEqual([beyond.status, (beyond.body.error as { field: string }).field], [400, 'after_version']);
  const post = await getJson('/api/workplans', { method: 'POST', body: '{}' });
  assert.equal(post.status, 405);
  assert.equal((await getJson('/api/nothing-here')).status, 404);
});

test('the JSON API: list filtered by metadata, state now and as of a version, events, explain, runners', async () => {
  const { workPlan } = await file.api.createWorkPlan({ metadata: { repo: 'api-list', team: 'a' } });
  const id = workPlan!.id;
  const write = await file.api.writeNodes({ workPlanId: id, checks: [{ id: 'build', state: CheckState.CHECK_STATE_PLANNED }] });
  const list = await getJson('/api/workplans?filter=repo=api-list');
  assert.equal(list.status, 200);
  const plans = list.body.workPlans as { id: string; checks: Record<string, number>; complete: boolean; version: number }[];
  assert.deepEqual(plans.map((p) => [p.id, p.checks.WAITING, p.complete, p.version]), [[id, 1, false, Number(write.workPlanVersion)]]);
  assert.equal(((await getJson('/api/workplans?filter=repo=api-list,team=b')).body.workPlans as unknown[]).length, 0);

  const now = (await getJson(`/api/workplans/${id}`)).body as { version: number; checks: { id: string; state: string }[] };
  assert.deepEqual([now.version, now.checks.map((c) => [c.id, c.state])], [Number(write.workPlanVersion), [['build', 'WAITING']]]);
  const at2 = (await getJson(`/api/workplans/${id}?version=2`)).body as { version: number; checks: { state: string }[]; event: { version: number; type: string } };
  assert.deepEqual([at2.version, at2.checks[0]!.state, at2.event.version, at2.event.type], [2, 'PLANNED', 2, 'CheckCreated'], 'a check written PLANNED is created PLANNED');
  const at3 = (await getJson(`/api/workplans/${id}?version=3`)).body as { version: number; checks: { state: string }[]; event: { version: number; type: string; changes: string[] } };
  assert.deepEqual([at3.version, at3.checks[0]!.state, at3.event.version, at3.event.type], [3, 'WAITING', 3, 'CheckStateChanged']);
  assert.deepEqual(at3.event.changes, ['state: PLANNED → WAITING']);

  const events = (await getJson(`/api/workplans/${id}/events?after=1&limit=1`)).body as { events: { version: number }[]; next: number | null };
  assert.deepEqual([events.events.map((e) => e.version), events.next], [[2], 2]);
  const typed = (await getJson(`/api/workplans/${id}/events?type=CheckStateChanged`)).body as { events: { type: string }[] };
  assert.deepEqual(typed.events.map((e) => e.type), ['CheckStateChanged']);

  const why = (await getJson(`/api/workplans/${id}/explain?node=check:build`)).body as { history: { because: string }[] };
  assert.match(why.history.at(-1)!.because, /^check build went WAITING at v3 because check build was created at v2, written/);
  assert.equal((await getJson(`/api/workplans/${id}/explain?node=nope`)).status, 404);

  const runners = (await getJson('/api/runners')).body as { push: unknown[]; pull: unknown[] };
  assert.ok(Array.isArray(runners.push) && Array.isArray(runners.pull));
});

async function take(stream: Awaited<ReturnType<typeof openSse>>, until: (e: SseEvent) => boolean): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  for (;;) {
    const e = await stream.next();
    if (!e) throw new Error('stream ended');
    out.push(e);
    if (until(e)) return out;
  }
}

test('SSE: a workplan stream is WatchWorkPlan: a snapshot without ids, then changes with id = version; Last-Event-ID resumes with no gap', async () => {
  const { workPlan } = await file.api.createWorkPlan({ metadata: {} });
  const id = workPlan!.id;
  await file.api.writeNodes({ workPlanId: id, checks: [{ id: 'a', state: CheckState.CHECK_STATE_PLANNED }, { id: 'b', state: CheckState.CHECK_STATE_PLANNED }] });
  const v0 = Number((await file.api.getWorkPlan({ id })).workPlan!.version);

  const first = await openSse(url(`/api/workplans/${id}/stream`));
  assert.equal(first.status, 200);
  const snapshot = await take(first, (e) => e.event === 'synced');
  const items = snapshot.filter((e) => e.event === 'change').map((e) => ({ id: e.id, ...(JSON.parse(e.data) as { version: number; snapshot: boolean; change: { node: { id: string } } }) }));
  assert.deepEqual(items.map((i) => [i.change.node.id, i.version, i.snapshot]), [['a', v0, true], ['b', v0, true]]);
  // Only the last snapshot item carries the id: a snapshot cut half-way is taken again, not resumed.
  assert.deepEqual(items.map((i) => i.id), [undefined, String(v0)]);
  assert.deepEqual(JSON.parse(snapshot.at(-1)!.data), { version: v0 });

  await file.api.writeNodes({ workPlanId: id, checks: [{ id: 'a', state: CheckState.CHECK_STATE_FINAL }] });
  const live = await first.next();
  assert.equal(live!.id, String(v0 + 1));
  first.close();

  // Written while nobody watches; a browser reconnects with Last-Event-ID = the last id it got.
  await file.api.writeNodes({ workPlanId: id, checks: [{ id: 'b', state: CheckState.CHECK_STATE_FINAL }, { id: 'c', state: CheckState.CHECK_STATE_PLANNED }] });
  const current = Number((await file.api.getWorkPlan({ id })).workPlan!.version);
  const resumed = await openSse(url(`/api/workplans/${id}/stream`), { 'last-event-id': String(v0 + 1) });
  const got = await take(resumed, (e) => e.event === 'synced');
  const versions = got.filter((e) => e.event === 'change').map((e) => Number(e.id));
  assert.deepEqual(versions, Array.from({ length: current - v0 - 1 }, (_, i) => v0 + 2 + i));
  assert.deepEqual(JSON.parse(got.at(-1)!.data), { version: current });
  resumed.close();

  // The same filters as WatchWorkPlan: only check c, only when FINAL.
  const filtered = await openSse(url(`/api/workplans/${id}/stream?after_version=0&check_id=c&check_state=FINAL`));
  await file.api.writeNodes({ workPlanId: id, checks: [{ id: 'c', state: CheckState.CHECK_STATE_FINAL }] });
  const onlyC = await take(filtered, (e) => e.event === 'change');
  const item = JSON.parse(onlyC.find((e) => e.event === 'change')!.data) as { change: { node: { id: string; state: string } } };
  assert.deepEqual([item.change.node.id, item.change.node.state], ['c', 'FINAL']);
  filtered.close();
  const badState = await getJson(`/api/workplans/${id}/stream?check_state=DONE`);
  assert.deepEqual([badState.status, (badState.body.error as { field: string }).field], [400, 'check_state.0']);
});

/** Every sample of the Prometheus text, as "name{labels}" → value. */
async function scrape(): Promise<Map<string, number>> {
  const res = await fetch(url('/metrics'));
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}
const delta = (a: Map<string, number>, b: Map<string, number>, key: string) => (b.get(key) ?? 0) - (a.get(key) ?? 0);

test('/metrics: after a workload the counters moved by exactly the calls made', async () => {
  const before = await scrape();
  const { workPlan } = await file.api.createWorkPlan({ metadata: { repo: 'metrics' } });
  const id = workPlan!.id;
  for (let i = 0; i < 3; i++) await file.api.writeNodes({ workPlanId: id, checks: [{ id: `c${i}`, state: CheckState.CHECK_STATE_PLANNED }] });
  await file.api.queryNodes({ workPlanId: id });
  await file.api.queryNodes({ workPlanId: id });
  await assert.rejects(file.api.getWorkPlan({ id: 'not-there' }), /NOT_FOUND/);
  await assert.rejects(file.api.writeNodes({ workPlanId: id, checks: [{ id: 'bad id' }] }), /INVALID_ARGUMENT/);
  const version = Number((await file.api.getWorkPlan({ id })).workPlan!.version);
  const after = await scrape();

  const rpc = (method: string, code: string) => delta(before, after, `turboci_rpc_total{method="${method}",code="${code}"}`);
  assert.equal(rpc('CreateWorkPlan', 'OK'), 1);
  assert.equal(rpc('WriteNodes', 'OK'), 3);
  assert.equal(rpc('WriteNodes', 'INVALID_ARGUMENT'), 1);
  assert.equal(rpc('QueryNodes', 'OK'), 2);
  assert.equal(rpc('GetWorkPlan', 'NOT_FOUND'), 1);
  assert.equal(rpc('GetWorkPlan', 'OK'), 1);
  assert.equal(delta(before, after, 'turboci_rpc_duration_seconds_count{method="WriteNodes",code="OK"}'), 3);
  assert.equal(delta(before, after, 'turboci_rpc_duration_seconds_bucket{le="+Inf",method="WriteNodes",code="OK"}'), 3);
  // Every event this workload appended is this workplan's: its version is how many.
  assert.equal(delta(before, after, 'turboci_events_appended_total'), version);
  assert.equal(delta(before, after, 'turboci_group_commit_batch_events_sum'), version);
  assert.ok(delta(before, after, 'turboci_group_commit_duration_seconds_count') >= 1);
  assert.ok(delta(before, after, 'turboci_group_commit_duration_seconds_count') <= 4, 'one commit per write at most');
  assert.ok(after.has('turboci_read_model_rebuild_seconds'));
});

test('/metrics: runners, pending attempts, dispatches in flight and watch subscriptions are read from the server state', async () => {
  let release: () => void = () => {};
  const released = new Promise<void>((r) => (release = r));
  const runner = await startTestRunner({ run: async () => (await released, {}) });
  try {
    const { registrationId } = await file.api.registerStageRunner({ runnerId: 'm-1', runnerType: 'metrics-type', address: runner.address, maxConcurrent: 1 });
    const { workPlan } = await file.api.createWorkPlan({ metadata: {} });
    const id = workPlan!.id;
    await file.api.writeNodes({ workPlanId: id, stages: [{ id: 's1', runnerType: 'metrics-type' }, { id: 's2', runnerType: 'metrics-type' }] });
    const stream = await openSse(url(`/api/workplans/${id}/stream`));
    await take(stream, (e) => e.event === 'synced');
    const m = await scrape();
    assert.equal(m.get('turboci_registered_runners{runner_type="metrics-type"}'), 1);
    assert.equal(m.get('turboci_dispatches_in_flight'), 1, 'one slot: s1 runs');
    assert.equal(m.get('turboci_attempts_pending{runner_type="metrics-type"}'), 1, 's2 waits');
    assert.equal(m.get('turboci_watch_subscriptions{transport="sse"}'), 1);
    assert.equal(m.get('turboci_watch_queue_depth{transport="sse"}'), 0);
    stream.close();
    release();
    await file.api.unregisterStageRunner({ registrationId });
    for (let i = 0; i < 100; i++) {
      const later = await scrape();
      if (later.get('turboci_watch_subscriptions{transport="sse"}') === 0 && !later.has('turboci_registered_runners{runner_type="metrics-type"}')) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail('the stream or the runner is still counted');
  } finally {
    release();
    await runner.close();
  }
});

test('serve: a bad or busy --http-port is a usage error naming it', async () => {
  // Asynchronously: a blocked event loop would let the server drop this process's idle keep-alive connections
  // unnoticed, and the next fetch would fail on one of them.
  const { execFile } = await import('node:child_process');
  const { BIN } = await import('../support/server.js');
  const run = (...argv: string[]) =>
    new Promise<{ status: number | null; stderr: string }>((resolve) =>
      execFile(process.execPath, [BIN, ...argv], { encoding: 'utf8', timeout: 20_000 }, (err, _out, stderr) =>
        resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr }),
      ),
    );
  const bad = await run('serve', '--http-port', 'web');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--http-port: "web" is not a whole number/);
  const busyPort = file.server.httpAddress.split(':')[1]!;
  // A second server on the same log: SQLite's owner lock would refuse it first, so it gets a file of its own there;
  // a PostgreSQL log takes replicas, so the port is the only thing in its way.
  const { onPostgres } = await import('../support/store.js');
  const busy = await run('serve', '--port', '0', '--http-port', busyPort, '--db', onPostgres ? file.server.dbPath : `${file.server.dbPath}.other`);
  assert.equal(busy.status, 2);
  assert.match(busy.stderr, new RegExp(`--http-port: cannot listen on 127\\.0\\.0\\.1:${busyPort} \\(EADDRINUSE\\)`));
});

test('SSE follows the slow-consumer rule of WatchWorkPlan: more live events waiting than --watch-buffer ends the stream with where to resume', async () => {
  const { join } = await import('node:path');
  const { startServer, connect, tempDir } = await import('../support/server.js');
  const dir = tempDir();
  const server = await startServer(join(dir.path, 'slow.db'), ['--watch-buffer', '8']);
  const conn = connect(server.address);
  try {
    const id = (await conn.api.createWorkPlan({})).workPlan!.id;
    const stream = await openSse(`http://${server.httpAddress}/api/workplans/${id}/stream`);
    assert.deepEqual(JSON.parse((await take(stream, (e) => e.event === 'synced')).at(-1)!.data), { version: 1 });
    // One write of 5 checks is 10 live events at once (each created PLANNED, then WAITING): more than 8 waiting.
    await conn.api.writeNodes({ workPlanId: id, checks: Array.from({ length: 5 }, (_, i) => ({ id: `c${i}`, state: CheckState.CHECK_STATE_PLANNED })) });
    const ended = await take(stream, (e) => e.event === 'end');
    const end = JSON.parse(ended.at(-1)!.data) as { reason: string; message: string; lastVersion: number };
    assert.deepEqual([end.reason, end.lastVersion], ['overflow', 1]);
    assert.equal(end.message, 'subscriber too slow (more than 8 events waiting); last version sent: 1; resume with after_version=1');
    assert.equal(await stream.next(), undefined, 'the server closed the stream');
    // Resuming reads the rest from the log (catch-up is not bounded by the buffer): every change once, in order.
    const resumed = await openSse(`http://${server.httpAddress}/api/workplans/${id}/stream`, { 'last-event-id': String(end.lastVersion) });
    const rest = await take(resumed, (e) => e.event === 'synced');
    assert.deepEqual(rest.filter((e) => e.event === 'change').map((e) => Number(e.id)), Array.from({ length: 10 }, (_, i) => i + 2));
    resumed.close();
    const closed = await server.waitForLog((l) => l.msg === 'watch subscription closed' && l.transport === 'sse' && l.reason === 'overflow');
    assert.equal(closed.lastVersion, 1);
  } finally {
    conn.close();
    await server.stop();
    dir.remove();
  }
});

test('/api/runners: a pull agent (turboci runner) with its labels, and the lease it holds while it runs a stage', async () => {
  const { startAgent } = await import('../pull/support.js');
  type Pull = { runnerId: string; runnerType: string; labels: Record<string, string>; waiting: boolean; leases: { stageId: string; idx: number }[] };
  const agents = async () => ((await getJson('/api/runners')).body.pull as Pull[]).filter((a) => a.runnerType === 'ui-shell');
  const until = async (ok: (a: Pull[]) => boolean, what: string) => {
    for (let i = 0; i < 400; i++) {
      const a = await agents();
      if (ok(a)) return a;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`timed out waiting for ${what}: ${JSON.stringify(await agents())}`);
  };
  const agent = startAgent(file.server.address, ['--type', 'ui-shell', '--labels', 'os=linux,zone=a', '--concurrency', '1']);
  try {
    const [idle] = await until((a) => a.length === 1 && a[0]!.waiting, 'the agent waiting for work');
    assert.deepEqual([idle!.labels, idle!.leases], [{ os: 'linux', zone: 'a' }, []]);
    const id = (await file.api.createWorkPlan({})).workPlan!.id;
    await file.api.writeNodes({ workPlanId: id, stages: [{ id: 'sleepy', runnerType: 'ui-shell', args: { command: 'sleep 1' } }] });
    const [busy] = await until((a) => a[0]?.leases.length === 1, 'the lease');
    assert.deepEqual(busy!.leases.map((l) => [l.stageId, l.idx]), [['sleepy', 1]]);
    await until((a) => a[0]?.leases.length === 0, 'the lease to end');
  } finally {
    await agent.stop();
  }
});

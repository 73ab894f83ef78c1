// The event log tools, end to end: a real server writes a real database file over gRPC (QueryNodes answers are
// recorded after every write), then the real `turboci` binary reads that file (read-only, while the server still
// runs) and the server's TurboCIEventLog RPCs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { AttemptState, CheckState, NodeType, PredicateType, StageState } from '../../src/gen/turboci/v1/common.js';
import {
  GetWorkPlanAtRequest,
  GetWorkPlanAtResponse,
  ReadEventsRequest,
  TurboCIEventLogClient,
  type ReadEventsResponse,
} from '../../src/gen/turboci/v1/eventlog.js';
import { QueryNodesResponse } from '../../src/gen/turboci/v1/service.js';
import { BIN, connect, startServer, tempDir, type ServerProcess } from '../support/server.js';

const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 30_000 });
const ndjson = (text: string) => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>);

let dir: ReturnType<typeof tempDir>;
let server: ServerProcess;
let db: string;
let wp: string;
/** QueryNodes as the server answered right after each write, by workplan version. */
const seen = new Map<number, { checks: unknown[]; stages: unknown[] }>();
let finalVersion = 0;
/** The version of the event "check build went FINAL" (the client wrote it in request r-build-done). */
let buildFinalVersion = 0;

before(async () => {
  dir = tempDir('turboci-eventlog-');
  db = `${dir.path}/run.db`;
  server = await startServer(db);
  const { api, close } = connect(server.address);
  wp = (await api.createWorkPlan({ metadata: { repo: 'r' } })).workPlan!.id;
  const record = async () => {
    const res = await api.queryNodes({ workPlanId: wp });
    const json = QueryNodesResponse.toJSON(res) as { checks?: unknown[]; stages?: unknown[] };
    seen.set(Number(res.workPlanVersion), { checks: json.checks ?? [], stages: json.stages ?? [] });
    finalVersion = Number(res.workPlanVersion);
  };
  await record();
  const dep = (kind: NodeType, id: string) => ({ predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: kind, targetId: id }] });
  await api.writeNodes({
    workPlanId: wp,
    requestId: 'r-plan',
    checks: [{ id: 'build', kind: 'build', state: CheckState.CHECK_STATE_PLANNED }],
    stages: [
      { id: 'compile', assignments: [{ targetCheckId: 'build', goalState: CheckState.CHECK_STATE_FINAL }] },
      { id: 'deploy', maxAttempts: 2, dependencies: dep(NodeType.NODE_TYPE_CHECK, 'build') },
    ],
  });
  await record();
  await api.writeNodes({ workPlanId: wp, requestId: 'r-claim', stages: [{ id: 'compile', currentAttempt: { processUid: 'runner-1' } }] });
  await record();
  const done = await api.writeNodes({
    workPlanId: wp,
    requestId: 'r-build-done',
    checks: [{ id: 'build', state: CheckState.CHECK_STATE_FINAL, result: { ownerType: 'stage', ownerId: 'compile', data: { ok: true }, finalize: true } }],
    stages: [{ id: 'compile', state: StageState.STAGE_STATE_FINAL, currentAttempt: { state: AttemptState.ATTEMPT_STATE_COMPLETE } }],
  });
  assert.ok(done.workPlanVersion > 0);
  await record();
  await api.writeNodes({ workPlanId: wp, requestId: 'r-claim-deploy', stages: [{ id: 'deploy', currentAttempt: { processUid: 'runner-2' } }] });
  await record();
  await api.writeNodes({
    workPlanId: wp,
    requestId: 'r-deploy-flaky',
    stages: [{ id: 'deploy', currentAttempt: { state: AttemptState.ATTEMPT_STATE_INCOMPLETE, failure: { message: 'timeout' } } }],
  });
  await record();
  // A second workplan, so filters have something to leave out.
  const other = (await api.createWorkPlan({ metadata: {} })).workPlan!.id;
  await api.writeNodes({ workPlanId: other, requestId: 'r-other', checks: [{ id: 'build', state: CheckState.CHECK_STATE_PLANNED }] });
  close();
  const finals = ndjson(run('events', '--db', db, '-w', wp, '--node', 'check:build', '--type', 'CheckStateChanged', '--json').stdout);
  buildFinalVersion = finals.find((e) => e.data.to === 'FINAL')!.version as number;
});

after(async () => {
  await server?.stop();
  dir?.remove();
});

test('events lists the log, and each filter narrows it', () => {
  const all = run('events', '--db', db, '--json');
  assert.equal(all.status, 0, all.stderr);
  const events = ndjson(all.stdout);
  const mine = events.filter((e) => e.workPlanId === wp);
  assert.equal(mine.length, finalVersion);
  assert.deepEqual(events.map((e) => e.position), [...events.map((e) => e.position)].sort((a, b) => a - b));
  assert.deepEqual(mine.map((e) => e.version), Array.from({ length: finalVersion }, (_, i) => i + 1));
  assert.ok(events.some((e) => e.workPlanId !== wp));

  const byPlan = ndjson(run('events', '--db', db, '-w', wp, '--json').stdout);
  assert.deepEqual(byPlan, mine);

  const byNode = ndjson(run('events', '--db', db, '-w', wp, '--node', 'check:build', '--json').stdout);
  assert.ok(byNode.length >= 4);
  assert.ok(byNode.every((e) => e.data.checkId === 'build'));
  // A bare id matches checks and stages of that id; the other workplan's check "build" too without -w.
  assert.ok(ndjson(run('events', '--db', db, '--node', 'build', '--json').stdout).some((e) => e.workPlanId !== wp));

  const byType = ndjson(run('events', '--db', db, '-w', wp, '--type', 'StageAttemptStateChanged,StageAttemptCreated', '--json').stdout);
  assert.deepEqual([...new Set(byType.map((e) => e.type))].sort(), ['StageAttemptCreated', 'StageAttemptStateChanged']);
  assert.equal(byType.length, mine.filter((e) => e.type === 'StageAttemptStateChanged' || e.type === 'StageAttemptCreated').length);

  const range = ndjson(run('events', '--db', db, '-w', wp, '--from-version', '3', '--to-version', '6', '--json').stdout);
  assert.deepEqual(range.map((e) => e.version), [3, 4, 5, 6]);
  const p0 = mine[2]!.position as number;
  const byPosition = ndjson(run('events', '--db', db, '--from-position', String(p0), '--to-position', String(p0 + 1), '--json').stdout);
  assert.deepEqual(byPosition.map((e) => e.position), [p0, p0 + 1]);

  // Time range: the instants recorded in the log itself.
  const t = mine.find((e) => e.requestId === 'r-build-done')!.recordedAt as string;
  const atT = ndjson(run('events', '--db', db, '-w', wp, '--since', t, '--until', t, '--json').stdout);
  assert.ok(atT.length > 0 && atT.every((e) => e.recordedAt === t));
  assert.ok(atT.some((e) => e.requestId === 'r-build-done'));
  assert.equal(ndjson(run('events', '--db', db, '--until', '2000-01-01', '--json').stdout).length, 0);

  // Resolver events carry the version of the event they reacted to; client events carry none.
  const started = mine.find((e) => e.type === 'StageAttemptCreated' && e.data.stageId === 'deploy' && e.data.startsStage === true)!;
  assert.equal(started.causedByVersion, buildFinalVersion);
  assert.equal(started.requestId, 'r-build-done');
  assert.equal(mine.find((e) => e.version === buildFinalVersion)!.causedByVersion, null);

  const table = run('events', '--db', db, '-w', wp, '--limit', '3');
  assert.equal(table.status, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[0]!, /^POS\s+VER\s+RECORDED\s+TYPE\s+NODE\s+CAUSE\s+REQUEST\s+WHAT$/);
  const typeColumn = lines[0]!.indexOf('TYPE');
  assert.ok(lines.slice(1).every((l) => /^[A-Z]/.test(l.slice(typeColumn))), 'TYPE column aligned');
  assert.match(lines[2]!, /CheckCreated\s+check:build\s+r-plan\s+check build was created/);
  // An event without a request id has an empty REQUEST cell, not a literal "".
  assert.ok(lines.every((l) => !l.includes('""')), table.stdout);
});

test('events over gRPC (ReadEvents) match the file, and the RPC validates and maps errors like the rest', async () => {
  const fromFile = run('events', '--db', db, '-w', wp, '--json');
  const fromServer = run('events', '--server', server.address, '-w', wp, '--json');
  assert.equal(fromServer.status, 0, fromServer.stderr);
  assert.deepEqual(ndjson(fromServer.stdout), ndjson(fromFile.stdout));
  const filtered = run('events', '--server', server.address, '-w', wp, '--type', 'CheckStateChanged', '--node', 'build', '--json');
  assert.deepEqual(ndjson(filtered.stdout), ndjson(run('events', '--db', db, '-w', wp, '--type', 'CheckStateChanged', '--node', 'build', '--json').stdout));

  const client = new TurboCIEventLogClient(server.address, credentials.createInsecure());
  const read = (req: Partial<ReadEventsRequest>) =>
    new Promise<ReadEventsResponse>((resolve, reject) =>
      client.readEvents(ReadEventsRequest.fromPartial(req), new Metadata(), { deadline: Date.now() + 10_000 }, (e, r) => (e ? reject(e) : resolve(r))),
    );
  // Paging: three at a time, every event once, in order.
  const versions: number[] = [];
  let pageToken = '';
  for (let pages = 0; pages < 100; pages++) {
    const page = await read({ workPlanId: wp, pageSize: 3, pageToken });
    assert.ok(page.events.length <= 3);
    versions.push(...page.events.map((e) => Number(e.version)));
    pageToken = page.nextPageToken;
    if (!pageToken) break;
  }
  assert.deepEqual(versions, Array.from({ length: finalVersion }, (_, i) => i + 1));

  const code = async (req: Partial<ReadEventsRequest>) => {
    const err = (await read(req).then(() => null, (e: ServiceError) => e))!;
    assert.ok(err, 'expected an error');
    return { code: err.code, details: err.details };
  };
  assert.equal((await code({ workPlanId: 'nope' })).code, status.NOT_FOUND);
  assert.deepEqual(await code({ workPlanId: wp, pageToken: 'garbage' }), { code: status.INVALID_ARGUMENT, details: 'page_token: not a page token this server issued' });
  assert.deepEqual(await code({ workPlanId: wp, types: ['CheckExploded'] }), { code: status.INVALID_ARGUMENT, details: 'types[0]: not an event type' });
  assert.equal((await code({ workPlanId: wp, afterVersion: 5n, toVersion: 3n })).details, 'to_version: must be greater than after_version (5) or 0');
  assert.equal((await code({ workPlanId: '' })).code, status.INVALID_ARGUMENT);

  const at = (req: Partial<GetWorkPlanAtRequest>) =>
    new Promise<GetWorkPlanAtResponse>((resolve, reject) =>
      client.getWorkPlanAt(GetWorkPlanAtRequest.fromPartial(req), new Metadata(), { deadline: Date.now() + 10_000 }, (e, r) => (e ? reject(e) : resolve(r))),
    );
  const tooFar = await at({ workPlanId: wp, version: BigInt(finalVersion + 1) }).then(() => null, (e: ServiceError) => e);
  assert.equal(tooFar?.code, status.INVALID_ARGUMENT);
  assert.equal(tooFar?.details, `version: the workplan is at version ${finalVersion}`);
  const both = await at({ workPlanId: wp, version: 2n, at: new Date() }).then(() => null, (e: ServiceError) => e);
  assert.equal(both?.details, 'at: give a version or a time, not both');
  client.close();
});

test('replay at several versions equals what QueryNodes returned at that moment (file and server)', async () => {
  assert.ok(seen.size >= 6);
  for (const [version, answered] of seen) {
    const res = run('replay', '--db', db, '-w', wp, '--at-version', String(version), '--json');
    assert.equal(res.status, 0, res.stderr);
    // proto3 JSON: int64 fields are strings.
    const state = JSON.parse(res.stdout) as { workPlan: { version: string }; checks?: unknown[]; stages?: unknown[] };
    assert.equal(state.workPlan.version, String(version));
    assert.deepEqual({ checks: state.checks ?? [], stages: state.stages ?? [] }, answered, `file at v${version}`);

    const remote = run('replay', '--server', server.address, '-w', wp, '--at-version', String(version), '--json');
    assert.equal(remote.status, 0, remote.stderr);
    const r = JSON.parse(remote.stdout) as typeof state;
    assert.deepEqual({ checks: r.checks ?? [], stages: r.stages ?? [] }, answered, `server at v${version}`);
  }
  // --at-time: the time of the write that finalized build gives the state right after that write.
  const written = ndjson(run('events', '--db', db, '-w', wp, '--json').stdout).filter((e) => e.requestId === 'r-build-done');
  const byTime = JSON.parse(run('replay', '--db', db, '-w', wp, '--at-time', written[0]!.recordedAt, '--json').stdout) as {
    workPlan: { version: string };
    checks: unknown[];
    stages: unknown[];
  };
  const afterWrite = written.at(-1)!.version as number;
  assert.equal(byTime.workPlan.version, String(afterWrite));
  assert.deepEqual({ checks: byTime.checks, stages: byTime.stages }, seen.get(afterWrite));
  assert.deepEqual(run('replay', '--db', db, '-w', wp, '--at-time', '2000-01-01').status, 1);

  const human = run('replay', '--db', db, '-w', wp);
  assert.equal(human.status, 0, human.stderr);
  assert.match(human.stdout, new RegExp(`workplan ${wp} at v${finalVersion} of ${finalVersion}`));
  assert.match(human.stdout, /build\s+FINAL\s+build/);
  assert.match(human.stdout, /deploy\s+ATTEMPTING\s+1 INCOMPLETE \(runner-2\) "timeout"; 2 PENDING \[max 2\]\s+AND check:build/);

  const steps = run('replay', '--db', db, '-w', wp, '--step', '--from-version', String(buildFinalVersion), '--at-version', String(buildFinalVersion + 1));
  assert.equal(steps.status, 0, steps.stderr);
  assert.match(steps.stdout, new RegExp(`^v${buildFinalVersion} .*CheckStateChanged  check build went FINAL  \\(request r-build-done\\)\n {6}state: WAITING → FINAL\n`, 'm'));
  assert.match(steps.stdout, new RegExp(`^v${buildFinalVersion + 1} `, 'm'));
  assert.doesNotMatch(steps.stdout, new RegExp(`^v${buildFinalVersion - 1} `, 'm'));
  const jsonSteps = ndjson(run('replay', '--db', db, '-w', wp, '--step', '--json').stdout);
  assert.equal(jsonSteps.length, finalVersion + 1); // one line per event, then the state
  assert.deepEqual(jsonSteps.find((s) => s.type === 'StageAttemptCreated' && s.node === 'stage:deploy')!.changes.slice(0, 1), ['state: PLANNED → ATTEMPTING']);
});

test('explain names the causes of each transition, back to the client request', () => {
  const res = run('explain', '--db', db, '-w', wp, 'stage:deploy', '--json');
  assert.equal(res.status, 0, res.stderr);
  const x = JSON.parse(res.stdout) as {
    node: { kind: string; id: string };
    history: { version: number; type: string; summary: string; because: string; causedBy: { version: number; summary: string; requestId: string }[] }[];
  };
  assert.deepEqual(x.node, { kind: 'stage', id: 'deploy' });
  const started = x.history.find((h) => h.summary === 'attempt 1 of stage deploy was opened and stage deploy went ATTEMPTING')!;
  assert.deepEqual(
    started.causedBy.map((c) => [c.version, c.summary, c.requestId]),
    [[buildFinalVersion, 'check build went FINAL', 'r-build-done']],
  );
  assert.equal(started.because, `attempt 1 of stage deploy was opened and stage deploy went ATTEMPTING at v${started.version} because check build went FINAL at v${buildFinalVersion}, written by request r-build-done`);
  // The retry: attempt 2 was opened because attempt 1 went INCOMPLETE, which the client wrote in r-deploy-flaky.
  const retry = x.history.find((h) => h.summary === 'attempt 2 of stage deploy was opened')!;
  assert.equal(retry.causedBy.length, 1);
  assert.match(retry.causedBy[0]!.summary, /^attempt 1 of stage deploy went INCOMPLETE/);
  assert.equal(retry.causedBy[0]!.requestId, 'r-deploy-flaky');
  const created = x.history[0]!;
  assert.equal(created.causedBy.length, 0);
  assert.match(created.because, /stage deploy was created at v\d+, written by request r-plan \(a client write\)/);

  // compile went FINAL with its attempt's completion: one event, the client's own write (r-build-done).
  const compile = JSON.parse(run('explain', '--db', db, '-w', wp, '--node', 'compile', '--json').stdout) as typeof x;
  const final = compile.history.find((h) => h.summary === 'attempt 1 of stage compile went COMPLETE and stage compile went FINAL')!;
  assert.ok(final, compile.history.map((h) => h.summary).join('\n'));
  assert.equal(final.causedBy.length, 0);
  assert.match(final.because, /written by request r-build-done \(a client write\)$/);

  const human = run('explain', '--db', db, '-w', wp, 'deploy');
  assert.equal(human.status, 0, human.stderr);
  assert.match(human.stdout, /^stage deploy in workplan .*: ATTEMPTING$/m);
  assert.match(human.stdout, /because check build went FINAL at v\d+, written by request r-build-done/);
  const remote = run('explain', '--server', server.address, '-w', wp, 'stage:deploy', '--json');
  assert.deepEqual(JSON.parse(remote.stdout), x);

  const missing = run('explain', '--db', db, '-w', wp, 'check:nope');
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /no node "check:nope"/);
});

test('verify: a clean log matches the live server; a corrupted snapshot and a server kept in the dark do not', () => {
  const ok = run('verify', '--db', db, '--server', server.address, '--progress');
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /compared 2 read models\nOK: no differences/);
  assert.match(ok.stderr, /100% \d+\/\d+ events/);

  // A persisted projection: the snapshot "turboci replay --json" writes, with one field corrupted.
  const snapshot = `${dir.path}/snapshot.ndjson`;
  const snap = run('replay', '--db', db, '--all', '--json');
  assert.equal(snap.status, 0, snap.stderr);
  writeFileSync(snapshot, snap.stdout);
  assert.equal(run('verify', '--db', db, '--snapshot', snapshot).status, 0);
  writeFileSync(snapshot, snap.stdout.replace('"processUid":"runner-2"', '"processUid":"runner-X"'));
  assert.notEqual(readFileSync(snapshot, 'utf8'), snap.stdout);
  const bad = run('verify', '--db', db, '--snapshot', snapshot, '--json');
  assert.equal(bad.status, 1);
  const report = JSON.parse(bad.stdout) as { ok: boolean; differences: { workPlanId: string; details: string[] }[] };
  assert.equal(report.ok, false);
  assert.equal(report.differences.length, 1);
  assert.equal(report.differences[0]!.workPlanId, wp);
  assert.deepEqual(report.differences[0]!.details, ['stages[1].attempts[0].processUid: runner-2 → runner-X   (log → snapshot)']);

  // Events appended behind the running server's back: its read models no longer match the log.
  const exported = `${dir.path}/export.ndjson`;
  assert.equal(run('export', '--db', db, '-w', wp, '--out', exported).status, 0);
  const imported = run('import', '--db', db, '--as', 'behind-its-back', exported);
  assert.equal(imported.status, 0, imported.stderr);
  const diverged = run('verify', '--db', db, '--server', server.address);
  assert.equal(diverged.status, 1);
  assert.match(diverged.stdout, /DIFFERENCE workplan behind-its-back \(server .*\):\n\s+the log has this workplan \(v\d+\); the server's read models do not/);
});

test('export → import into another database gives identical QueryNodes output', async () => {
  const exported = run('export', '--db', db, '-w', wp);
  assert.equal(exported.status, 0, exported.stderr);
  const lines = ndjson(exported.stdout);
  assert.equal(lines.length, finalVersion);
  const file = `${dir.path}/moved.ndjson`;
  writeFileSync(file, exported.stdout);
  const target = `${dir.path}/other-server.db`;
  const imported = run('import', '--db', target, file);
  assert.equal(imported.status, 0, imported.stderr);
  assert.match(imported.stdout, new RegExp(`imported ${finalVersion} events: workplan ${wp} at v${finalVersion}`));
  const again = run('import', '--db', target, file);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already in/);

  // Invalid streams are refused whole: nothing is written.
  writeFileSync(`${dir.path}/gap.ndjson`, [lines[0], lines[2]].map((l) => JSON.stringify(l)).join('\n'));
  const gap = run('import', '--db', target, '--as', 'gap', `${dir.path}/gap.ndjson`);
  assert.equal(gap.status, 1);
  assert.match(gap.stderr, /version 3, expected 2/);
  assert.equal(run('events', '--db', target, '-w', 'gap').status, 1);

  const original = connect(server.address);
  const before = await original.api.queryNodes({ workPlanId: wp });
  const plan = await original.api.getWorkPlan({ id: wp });
  original.close();
  const other = await startServer(target);
  try {
    const moved = connect(other.address);
    assert.deepEqual(await moved.api.queryNodes({ workPlanId: wp }), before);
    assert.deepEqual(await moved.api.getWorkPlan({ id: wp }), plan);
    moved.close();
  } finally {
    await other.stop();
  }
  assert.equal(run('verify', '--db', target).status, 0);
});

test('every subcommand has --help with examples; usage errors exit 2', () => {
  for (const cmd of ['serve', 'runner', 'events', 'replay', 'explain', 'verify', 'export', 'import']) {
    const help = run(cmd, '--help');
    assert.equal(help.status, 0, cmd);
    // `turboci` is not on PATH after `npm ci`: every command shown is runnable as written, through npx.
    assert.match(help.stdout, new RegExp(`^Usage: npx turboci ${cmd} `), cmd);
    assert.match(help.stdout, /\nExamples:\n {2}(\S+=\S+ )?npx turboci /, cmd);
    assert.doesNotMatch(help.stdout, /(?<![\w./-])(?<!npx )turboci (serve|runner|events|replay|explain|verify|export|import)\b/, `${cmd}: a bare "turboci" command`);
  }
  const top = run('--help');
  for (const cmd of ['events', 'replay', 'explain', 'verify', 'export', 'import']) assert.match(top.stdout, new RegExp(`\\n  ${cmd} `));
  for (const args of [
    ['events', '--db', db, '--from-version', 'x'],
    ['events'],
    ['replay', '--db', db],
    ['replay', '--db', db, '-w', wp, '--at-version', '2', '--at-time', '2025-01-01'],
    ['explain', '--db', db, '-w', wp],
    ['verify'],
    ['events', '--db', db, '--server', server.address],
    ['events', '--db', db, '--colour'],
  ]) {
    const res = run(...args);
    assert.equal(res.status, 2, `${args.join(' ')}: ${res.stderr}`);
    assert.match(res.stderr, /Run "npx turboci \w+ --help" for usage/);
  }
  // --server without --workplan is a usage error before anything is printed (no table header).
  const noWorkplan = run('events', '--server', server.address);
  assert.equal(noWorkplan.status, 2);
  assert.equal(noWorkplan.stdout, '');
  assert.match(noWorkplan.stderr, /^turboci: --workplan is required with --server\n/);
  const missing = run('events', '--db', `${dir.path}/nope.db`);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /no such database file/);
});

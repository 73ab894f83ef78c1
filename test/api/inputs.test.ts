// Hardening, inputs (issue 12, items 1-4): every bad input is a short INVALID_ARGUMENT or RESOURCE_EXHAUSTED naming
// the field, nothing is half-written, and nothing a client sends can make a status or a log line unbounded.
// Real server process, real gRPC, real SQLite file.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { Timestamp } from '../../src/gen/google/protobuf/timestamp.js';
import { CheckState, ExecutionMode, NodeType, PredicateType, StageState } from '../../src/gen/turboci/v1/common.js';
import { HeartbeatRequest } from '../../src/gen/turboci/v1/pull.js';
import { GetWorkPlanAtRequest, TurboCIEventLogClient } from '../../src/gen/turboci/v1/eventlog.js';
import { WriteNodesRequest, WriteNodesResponse } from '../../src/gen/turboci/v1/service.js';
import { connectPull } from '../pull/support.js';
import { eventually, startTestRunner } from '../support/runner.js';
import { serverPerFile } from '../support/server.js';

// A small progress limit, so that filling an attempt takes a few writes.
const suite = serverPerFile('inputs', ['--max-progress-bytes', '4096']);

const newWorkPlan = async () => (await suite.api.createWorkPlan({})).workPlan!.id;
const version = async (id: string) => (await suite.api.getWorkPlan({ id })).workPlan!.version;

async function refused(p: Promise<unknown>, code: status, message: RegExp): Promise<ServiceError> {
  let caught: ServiceError | null = null;
  await p.then(
    () => assert.fail(`expected ${status[code]}`),
    (err: ServiceError) => (caught = err),
  );
  const err = caught! as ServiceError;
  assert.equal(err.code, code, `${status[err.code]}: ${err.details}`);
  assert.match(err.details, message);
  assert.ok(Buffer.byteLength(err.details) <= 1024, `status message of ${Buffer.byteLength(err.details)} bytes`);
  assert.doesNotMatch(err.details, /\n\s+at /, 'no stack trace reaches the client');
  return err;
}

/** Sends already-encoded bytes as a method's request (for what a well-behaved encoder never produces). */
function sendRaw(address: string, method: string, bytes: Uint8Array): Promise<Buffer> {
  const client = new Client(address, credentials.createInsecure());
  return new Promise<Buffer>((resolve, reject) =>
    client.makeUnaryRequest(
      `/turboci.v1.TurboCIOrchestrator/${method}`,
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => b,
      bytes,
      new Metadata(),
      { deadline: Date.now() + 30_000 },
      (err, res) => (err ? reject(err) : resolve(res!)),
    ),
  ).finally(() => client.close());
}


test('1. a 1 MB metadata key gets a short INVALID_ARGUMENT at once; another call on the same connection is unaffected', async () => {
  const key = 'k'.repeat(1024 * 1024);
  const [bad, ok] = await Promise.allSettled([
    suite.api.createWorkPlan({ metadata: { [key]: 'v' } }),
    suite.api.createWorkPlan({ metadata: { repo: 'x' } }),
  ]);
  assert.equal(ok.status, 'fulfilled');
  await refused(bad.status === 'rejected' ? Promise.reject(bad.reason) : Promise.resolve(), status.INVALID_ARGUMENT, /^metadata: key "k{24}… \(\d+ more bytes\)" is 1 MiB; keys must be at most 256 bytes of UTF-8$/);
  // A 1 MB id, too, is refused without being echoed.
  await refused(suite.api.getWorkPlan({ id: 'x'.repeat(1024 * 1024) }), status.INVALID_ARGUMENT, /^id: must be 1-256 printable characters/);
  // The log lines of those calls stay short (the 1 MB id is a field of the GetWorkPlan line).
  for (const method of ['CreateWorkPlan', 'GetWorkPlan']) {
    const l = await suite.server.waitForLog((x) => x.msg === 'rpc' && x.method === method && x.code === 'INVALID_ARGUMENT');
    assert.ok(JSON.stringify(l).length < 8 * 1024, `a ${method} log line of ${JSON.stringify(l).length} bytes`);
  }
});

test('1. a 10,000-node dependency cycle: INVALID_ARGUMENT naming a few nodes and the length; appends nothing', async () => {
  const id = await newWorkPlan();
  const before = await version(id);
  const n = 10_000;
  const on = (i: number) => ({
    predicate: PredicateType.PREDICATE_TYPE_AND,
    dependencies: [{ targetType: NodeType.NODE_TYPE_CHECK, targetId: `node-with-a-long-name-${(i + 1) % n}` }],
  });
  const checks = Array.from({ length: n }, (_, i) => ({ id: `node-with-a-long-name-${i}`, dependencies: on(i) }));
  const [cycle, other] = await Promise.allSettled([suite.api.writeNodes({ workPlanId: id, checks }), suite.api.getWorkPlan({ id })]);
  assert.equal(other.status, 'fulfilled', 'another call on the same connection is answered');
  const err = await refused(
    cycle.status === 'rejected' ? Promise.reject(cycle.reason) : Promise.resolve(),
    status.INVALID_ARGUMENT,
    /dependency cycle of 10000 nodes: check:node-with-a-long-name-\d+ -> .* … 9994 more … -> check:node-with-a-long-name-\d+$/,
  );
  assert.match(err.details, /^checks\[\d+\]\.dependencies: /);
  assert.equal(await version(id), before);
  // The server did not log the whole cycle either.
  const line = await suite.server.waitForLog((l) => l.msg === 'rpc' && l.method === 'WriteNodes' && String(l.error ?? '').includes('cycle of 10000 nodes'));
  assert.ok(JSON.stringify(line).length < 8 * 1024, `a log line of ${JSON.stringify(line).length} bytes`);
  // A short cycle is still spelled out whole.
  await refused(
    suite.api.writeNodes({
      workPlanId: id,
      checks: [
        { id: 'a', dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_CHECK, targetId: 'b' }] } },
        { id: 'b', dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_CHECK, targetId: 'a' }] } },
      ],
    }),
    status.INVALID_ARGUMENT,
    /dependency cycle: check:(a|b) -> check:(a|b) -> check:\1$/,
  );
});

test('2. int64 past 2^53 is decoded exactly and refused naming the field; TTLs are bounded', async () => {
  const id = await newWorkPlan();
  await refused(
    suite.api.writeNodes({ workPlanId: id, expectedVersion: 2n ** 53n + 1n, checks: [{ id: 'c' }] }),
    status.INVALID_ARGUMENT,
    /^expected_version: 9007199254740993 is out of range; must be from 0 to 9007199254740991/,
  );
  await refused(
    suite.api.writeNodes({ workPlanId: id, expectedVersion: -1n, checks: [{ id: 'c' }] }),
    status.INVALID_ARGUMENT,
    /^expected_version: must not be negative/,
  );
  assert.equal(await version(id), 1n);
  const register = (ttlSeconds: bigint) =>
    suite.api.registerStageRunner({ runnerId: 'r', runnerType: 't', address: '127.0.0.1:1', supportedModes: [ExecutionMode.EXECUTION_MODE_SYNC], ttlSeconds });
  await refused(register(2n ** 62n), status.INVALID_ARGUMENT, /^ttl_seconds: 4611686018427387904 is more than 86400 seconds/);
  await refused(register(10n ** 12n), status.INVALID_ARGUMENT, /^ttl_seconds: 1000000000000 is more than 86400 seconds \(--max-ttl\)/);
  const ok = await register(600n);
  assert.ok(ok.registrationId);
});

/** `depth` levels of objects: { a: { a: ... { leaf: 1 } } }; the outermost is level 1. */
const nested = (depth: number) => {
  let o: Record<string, unknown> = { leaf: 1 };
  for (let i = 1; i < depth; i++) o = { a: o };
  return o;
};
/** `depth` levels of lists around a number, inside an object (level 1). */
const nestedList = (depth: number) => {
  let v: unknown = 1;
  for (let i = 1; i < depth; i++) v = [v];
  return { l: v };
};

test('2. Struct depth is bounded at 32: deeper is INVALID_ARGUMENT (not INTERNAL), whether or not it decodes', async () => {
  const id = await newWorkPlan();
  const ok = await suite.api.writeNodes({ workPlanId: id, checks: [{ id: 'deep-32', options: nested(32) }] });
  assert.deepEqual(ok.checks[0]!.options, nested(32));
  // 50 levels of objects: past the decoder's recursion limit.
  await refused(
    suite.api.writeNodes({ workPlanId: id, checks: [{ id: 'deep-50', options: nested(50) }] }),
    status.INVALID_ARGUMENT,
    /^the request cannot be decoded: values nest too deep \(a Struct may nest at most 32 levels\)/,
  );
  // 40 levels of lists decode, and are refused by validation naming the field.
  await refused(
    suite.api.writeNodes({ workPlanId: id, stages: [{ id: 's', args: nestedList(40) }] }),
    status.INVALID_ARGUMENT,
    /^stages\[0\]\.args: l(\[0\])+: nests deeper than 32 levels/,
  );
  const q = await suite.api.queryNodes({ workPlanId: id });
  assert.deepEqual([q.checks.map((c) => c.id), q.stages.length], [['deep-32'], 0]);
});

test('3. values are bounded in bytes of UTF-8: args, options, result data, metadata, ids', async () => {
  const id = await newWorkPlan();
  const before = await version(id);
  await refused(
    suite.api.writeNodes({ workPlanId: id, stages: [{ id: 's', args: { blob: 'x'.repeat(300 * 1024) } }] }),
    status.INVALID_ARGUMENT,
    /^stages\[0\]\.args: is 300 KiB as JSON; at most 256 KiB \(--max-value-bytes\)/,
  );
  // 100,000 emoji: 200,000 UTF-16 units but 400,000 bytes.
  await refused(
    suite.api.writeNodes({ workPlanId: id, checks: [{ id: 'c', options: { e: '😀'.repeat(100_000) } }] }),
    status.INVALID_ARGUMENT,
    /^checks\[0\]\.options: is 390\.6 KiB as JSON/,
  );
  await refused(
    suite.api.writeNodes({ workPlanId: id, checks: [{ id: 'c', result: { ownerType: 'o', ownerId: 'x', data: { b: 'y'.repeat(300 * 1024) } } }] }),
    status.INVALID_ARGUMENT,
    /^checks\[0\]\.result\.data: is 300 KiB as JSON/,
  );
  // Ids count characters (semantics.md): 257 of them are too many, whatever their bytes.
  await refused(suite.api.writeNodes({ workPlanId: id, checks: [{ id: '😀'.repeat(257) }] }), status.INVALID_ARGUMENT, /^checks\[0\]\.id: must be 1-256 printable characters/);
  assert.equal(await version(id), before, 'nothing was written');
  // Runner metadata: each value at most 4 KiB, all of it at most 64 KiB.
  const metadata = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, 'v'.repeat(2000)]));
  await refused(
    suite.api.registerStageRunner({ runnerId: 'r', runnerType: 't', address: 'a:1', metadata }),
    status.INVALID_ARGUMENT,
    /^metadata: is 78\.2 KiB; at most 64 KiB of keys and values \(--max-metadata-bytes\)/,
  );
  await refused(
    suite.api.createWorkPlan({ metadata: { k: 'é'.repeat(3000) } }),
    status.INVALID_ARGUMENT,
    /^metadata: the value of "k" is 5\.9 KiB; values must be at most 4 KiB/,
  );
});

test('3. the 8 KiB log-line limit of Heartbeat counts bytes, not UTF-16 units', async () => {
  const pull = connectPull(suite.server.address);
  try {
    // 3,000 emoji: 6,000 UTF-16 units (under 8192) but 12,000 bytes.
    await refused(pull.heartbeat({ leaseToken: 'not-a-token', logLines: ['😀'.repeat(3000)] }), status.INVALID_ARGUMENT, /^log_lines\[0\]: is 11\.7 KiB; at most 8 KiB of UTF-8/);
    // 4,000 é: 8,000 bytes, within the limit: validation passes and the (made-up) token is what is refused.
    const err = await pull.heartbeat({ leaseToken: 'not-a-token', logLines: ['é'.repeat(4000)] }).then(
      () => null,
      (e: ServiceError) => e,
    );
    assert.ok(err);
    assert.doesNotMatch(err.details, /log_lines/);
  } finally {
    pull.close();
  }
  assert.ok(HeartbeatRequest); // the request type the limits are about
});

test('3. progress per attempt is bounded: the append past --max-progress-bytes is RESOURCE_EXHAUSTED and writes nothing', async () => {
  const id = await newWorkPlan();
  await suite.api.writeNodes({ workPlanId: id, stages: [{ id: 's' }] });
  await suite.api.writeNodes({ workPlanId: id, stages: [{ id: 's', currentAttempt: { processUid: 'p' } }] });
  const progress = (i: number) => ({ workPlanId: id, stages: [{ id: 's', currentAttempt: { processUid: 'p', progress: { message: `${i}:${'x'.repeat(1300)}` } } }] });
  let i = 0;
  for (; i < 3; i++) await suite.api.writeNodes(progress(i)); // 3 × 1304 bytes (message + details as JSON) of the 4 KiB
  const before = await version(id);
  await refused(
    suite.api.writeNodes(progress(i)),
    status.RESOURCE_EXHAUSTED,
    /^stages\[0\]\.current_attempt\.progress: attempt 1 of stage "s" holds 3\.8 KiB of progress; adding 1\.3 KiB would pass the 4 KiB an attempt may keep \(--max-progress-bytes\)/,
  );
  assert.equal(await version(id), before, 'the refused write appended nothing');
  const q = await suite.api.queryNodes({ workPlanId: id, stageIds: ['s'] });
  assert.equal(q.stages[0]!.attempts[0]!.progress.length, 3, 'nothing was dropped either');
});

test('3. pull runners: heartbeat lines count against the same per-attempt limit; the lease survives the refusal', async () => {
  const id = await newWorkPlan();
  await suite.api.writeNodes({
    workPlanId: id,
    checks: [{ id: 'build', state: CheckState.CHECK_STATE_PLANNED }],
    stages: [{ id: 'compile', runnerType: 'inputs-pull', args: { command: 'make' }, assignments: [{ targetCheckId: 'build' }] }],
  });
  const pull = connectPull(suite.server.address);
  try {
    const { attempt } = await pull.lease({ runnerId: 'r-1', runnerType: 'inputs-pull', waitMs: 0 });
    assert.ok(attempt);
    const lines = ['é'.repeat(1000)]; // 2000 bytes a heartbeat
    await pull.heartbeat({ leaseToken: attempt.leaseToken, logLines: lines });
    const before = await version(id);
    await refused(
      pull.heartbeat({ leaseToken: attempt.leaseToken, logLines: [...lines, ...lines] }),
      status.RESOURCE_EXHAUSTED,
      /^log_lines: attempt 1 of stage "compile" holds 2 KiB of progress; adding 3\.9 KiB would pass the 4 KiB an attempt may keep/,
    );
    assert.equal(await version(id), before, 'the refused heartbeat appended nothing');
    // The lease is still good: a heartbeat without lines extends it, and the runner can complete.
    await pull.heartbeat({ leaseToken: attempt.leaseToken });
    // A completion carrying a value JSON cannot hold is refused like a write.
    await refused(
      pull.completeLease({ leaseToken: attempt.leaseToken, checkUpdates: [{ checkId: 'build', resultData: { n: NaN }, finalize: true }] }),
      status.INVALID_ARGUMENT,
      /^check_updates\[0\]\.result_data: n: NaN is not a number JSON can hold/,
    );
    const done = await pull.completeLease({ leaseToken: attempt.leaseToken, stageState: StageState.STAGE_STATE_FINAL, checkUpdates: [{ checkId: 'build', resultData: { ok: true }, finalize: true, state: CheckState.CHECK_STATE_FINAL }] });
    assert.equal(done.acknowledged, true);
    const q = await suite.api.queryNodes({ workPlanId: id, stageIds: ['compile'], includeStages: true });
    assert.equal(q.stages[0]!.attempts[0]!.progress.length, 1);
  } finally {
    pull.close();
  }
});

test('3. QueryNodes answers stay under what a default client accepts (4 MiB): large workplans are paged', async () => {
  const id = await newWorkPlan();
  const blob = 'z'.repeat(200 * 1024);
  for (let i = 0; i < 30; i++) await suite.api.writeNodes({ workPlanId: id, checks: [{ id: `big-${i}`, options: { blob } }] }); // ~6 MB in all
  const seen: string[] = [];
  let pageToken = '';
  let pages = 0;
  do {
    // The test's client has grpc-js defaults: an answer over 4 MiB would fail with "Received message larger than max".
    const page = await suite.api.queryNodes({ workPlanId: id, pageToken });
    assert.ok(WriteNodesResponse && page.checks.length > 0);
    seen.push(...page.checks.map((c) => c.id));
    pageToken = page.nextPageToken;
    pages++;
  } while (pageToken && pages < 10);
  assert.ok(pages >= 2, `${pages} pages`);
  assert.deepEqual(seen, Array.from({ length: 30 }, (_, i) => `big-${i}`));
  // GetWorkPlanAt has no paging: an answer too large for a default client is refused, saying what to do instead.
  const eventLog = new TurboCIEventLogClient(suite.server.address, credentials.createInsecure());
  try {
    await refused(
      new Promise((resolve, reject) =>
        eventLog.getWorkPlanAt(GetWorkPlanAtRequest.fromPartial({ workPlanId: id }), new Metadata(), { deadline: Date.now() + 30_000 }, (e, r) => (e ? reject(e) : resolve(r))),
      ),
      status.RESOURCE_EXHAUSTED,
      /^the workplan at that version is 5\.9 MiB, more than one answer may carry \(3\.9 MiB\); read its events with ReadEvents/,
    );
  } finally {
    eventLog.close();
  }
});

test('4. NaN and ±Infinity in a Struct are refused at the edge (they would come back null after a restart)', async () => {
  const id = await newWorkPlan();
  await refused(suite.api.writeNodes({ workPlanId: id, checks: [{ id: 'c', options: { n: NaN } }] }), status.INVALID_ARGUMENT, /^checks\[0\]\.options: n: NaN is not a number JSON can hold/);
  await refused(
    suite.api.writeNodes({ workPlanId: id, stages: [{ id: 's', args: { list: [1, { x: -Infinity }] } }] }),
    status.INVALID_ARGUMENT,
    /^stages\[0\]\.args: list\[1\]\.x: -Infinity is not a number JSON can hold/,
  );
  await refused(
    suite.api.createWorkPlan({ metadata: {} }).then((r) => suite.api.writeNodes({ workPlanId: r.workPlan!.id, checks: [{ id: 'c', result: { ownerType: 'o', ownerId: 'x', data: { v: Infinity } } }] })),
    status.INVALID_ARGUMENT,
    /^checks\[0\]\.result\.data: v: Infinity/,
  );
  assert.equal(await version(id), 1n);
});

test('4. a synchronous runner answering NaN fails its attempt with the reason (nothing lossy is stored)', async () => {
  const runner = await startTestRunner({
    run: async (req) => ({ stageState: StageState.STAGE_STATE_FINAL, checkUpdates: req.assignedCheckIds.map((checkId) => ({ checkId, state: CheckState.CHECK_STATE_FINAL, resultData: { score: NaN }, finalize: true, failure: undefined })) }),
  });
  try {
    await suite.api.registerStageRunner({ runnerId: 'nan-runner', runnerType: 'inputs-nan', address: runner.address });
    const id = await newWorkPlan();
    await suite.api.writeNodes({
      workPlanId: id,
      checks: [{ id: 'score', state: CheckState.CHECK_STATE_PLANNED }],
      stages: [{ id: 'rate', runnerType: 'inputs-nan', maxAttempts: 1, assignments: [{ targetCheckId: 'score' }] }],
    });
    const stage = await eventually(async () => {
      const q = await suite.api.queryNodes({ workPlanId: id, stageIds: ['rate'], includeStages: true });
      return q.stages[0]!.attempts[0]?.failure ? q.stages[0] : undefined;
    }, 'the attempt to fail');
    assert.match(stage.attempts[0]!.failure!.message, /its answer was refused: check_updates\[0\]\.result_data: score: NaN is not a number JSON can hold/);
    const q = await suite.api.queryNodes({ workPlanId: id, checkIds: ['score'], includeChecks: true });
    // The check may carry the stage's failure, never the runner's lossy data.
    assert.ok(q.checks[0]!.results.every((r) => r.failure && !('score' in (r.data ?? {}))), q.checks[0]!.results.map((r) => `${JSON.stringify(r.data)} ${r.failure?.message}`).join('; '));
  } finally {
    runner.kill();
  }
});

test('4. an id with invalid UTF-8 (decoded as U+FFFD) is refused, as is a literal U+FFFD', async () => {
  const id = await newWorkPlan();
  // Encode a request with the id "Xbad", then make its first byte 0xFF: not UTF-8.
  const bytes = Buffer.from(WriteNodesRequest.encode(WriteNodesRequest.fromPartial({ workPlanId: id, checks: [{ id: 'Xbad' }] })).finish());
  const at = bytes.indexOf('Xbad');
  assert.ok(at > 0);
  bytes[at] = 0xff;
  await refused(sendRaw(suite.server.address, 'WriteNodes', bytes), status.INVALID_ARGUMENT, /^checks\[0\]\.id: .*U\+FFFD/);
  await refused(suite.api.writeNodes({ workPlanId: id, checks: [{ id: '\uFFFDbad' }] }), status.INVALID_ARGUMENT, /^checks\[0\]\.id: .*U\+FFFD/);
  assert.equal(await version(id), 1n);
});

test('4. Timestamps with nanos ≥ 1e9 or outside years 1-9999 are refused with a message a person can act on', async () => {
  const id = await newWorkPlan();
  await suite.api.writeNodes({ workPlanId: id, checks: [{ id: 'c', state: CheckState.CHECK_STATE_PLANNED }] });
  const failed = (occurredAt: Date) => ({
    workPlanId: id,
    checks: [{ id: 'c', result: { ownerType: 'o', ownerId: 'x', failure: { message: 'broke', occurredAt } } }],
  });
  // A well-behaved encoder never writes nanos ≥ 1e9: encode one by hand.
  const encode = Timestamp.encode;
  let bytes: Uint8Array;
  try {
    Timestamp.encode = (t, w) => encode({ seconds: t.seconds, nanos: 1_000_000_000 }, w);
    bytes = WriteNodesRequest.encode(WriteNodesRequest.fromPartial(failed(new Date('2026-01-01T00:00:00Z')))).finish();
  } finally {
    Timestamp.encode = encode;
  }
  await refused(
    sendRaw(suite.server.address, 'WriteNodes', bytes),
    status.INVALID_ARGUMENT,
    /^the request cannot be decoded: a Timestamp has nanos 1000000000; nanos must be from 0 to 999999999/,
  );
  // The year 275760, which JavaScript can hold, is past what a Timestamp allows.
  await refused(suite.api.writeNodes(failed(new Date(8.64e15))), status.INVALID_ARGUMENT, /a Timestamp has seconds 8640000000000; it must be from -62135596800 \(year 1\) to 253402300799 \(year 9999\)/);
  const q = await suite.api.queryNodes({ workPlanId: id });
  assert.equal(q.checks[0]!.results.length, 0, 'nothing was written');
  // A time within range is fine.
  const ok = await suite.api.writeNodes(failed(new Date('2026-01-01T00:00:00.123Z')));
  assert.equal(ok.checks[0]!.results[0]!.failure!.occurredAt!.toISOString(), '2026-01-01T00:00:00.123Z');
});

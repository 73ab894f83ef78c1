// Real agent processes (`turboci runner`) running real shell commands against the real server process.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { AttemptState, CheckState, StageState } from '../../src/gen/turboci/v1/common.js';
import type { RecordedEvent } from '../../src/domain/events.js';
import { connect, startServer, tempDir, type Api, type ServerProcess } from '../support/server.js';
import { eventually } from '../support/runner.js';
import { isAlive, readLog, startAgent, type AgentProcess } from './support.js';

/** Most leases in flight at once, per runner and in total, replayed from the log. */
function maxInFlight(log: readonly RecordedEvent[], runnerType: string): { perRunner: Map<string, number>; total: number; leasedTwice: string[] } {
  const holder = new Map<string, string>();
  const now = new Map<string, number>();
  const perRunner = new Map<string, number>();
  const seen = new Set<string>();
  const leasedTwice: string[] = [];
  let total = 0;
  let current = 0;
  for (const rec of log) {
    const e = rec.event;
    if (e.type === 'StageAttemptLeased' && e.data.runnerType === runnerType) {
      const k = `${rec.streamId}/${e.data.stageId}/${e.data.idx}`;
      if (seen.has(k)) leasedTwice.push(k);
      seen.add(k);
      holder.set(k, e.data.runnerId);
      now.set(e.data.runnerId, (now.get(e.data.runnerId) ?? 0) + 1);
      perRunner.set(e.data.runnerId, Math.max(perRunner.get(e.data.runnerId) ?? 0, now.get(e.data.runnerId)!));
      total = Math.max(total, ++current);
    } else if (e.type === 'StageAttemptStateChanged' && (e.data.to === 'COMPLETE' || e.data.to === 'INCOMPLETE')) {
      const k = `${rec.streamId}/${e.data.stageId}/${e.data.idx}`;
      const runner = holder.get(k);
      if (runner) {
        holder.delete(k);
        now.set(runner, now.get(runner)! - 1);
        current--;
      }
    }
  }
  return { perRunner, total, leasedTwice };
}

describe('turboci runner agents', () => {
  const dir = tempDir();
  let server: ServerProcess;
  let api: Api;
  let close: () => void;
  const agents: AgentProcess[] = [];
  const agent = (args: string[]) => {
    const a = startAgent(server.address, ['--workdir', `${dir.path}/work`, '--log-level', 'info', ...args]);
    agents.push(a);
    return a;
  };

  before(async () => {
    server = await startServer(`${dir.path}/agents.db`, ['--runner-limit', 'shell=3', '--heartbeat-interval', '1000']);
    ({ api, close } = connect(server.address));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop('SIGKILL')));
    close();
    await server.stop();
    dir.remove();
  });

  const finalStage = (workPlanId: string, id: string, timeoutMs = 30_000) =>
    eventually(async () => {
      const s = (await api.queryNodes({ workPlanId, stageIds: [id], includeStages: true })).stages[0]!;
      return s.state === StageState.STAGE_STATE_FINAL ? s : undefined;
    }, `stage ${id} FINAL`, timeoutMs);

  for (const protocol of ['stream', 'unary'] as const) test(`two agents (concurrency 2, --protocol ${protocol}) run 10 quick stages: all done, limits never exceeded, no attempt leased twice`, async () => {
    const out = `${dir.path}/ran-${protocol}.txt`;
    const workPlanId = (await api.createWorkPlan({})).workPlan!.id;
    const ids = Array.from({ length: 10 }, (_, i) => `s${i}`);
    await api.writeNodes({
      workPlanId,
      checks: ids.map((id) => ({ id: `c-${id}`, state: CheckState.CHECK_STATE_PLANNED })),
      stages: ids.map((id) => ({
        id,
        runnerType: 'shell',
        args: { command: `echo "started $TURBOCI_STAGE_ID in $PWD"; echo "$TURBOCI_STAGE_ID" >> ${out}; sleep 0.2; echo done` },
        assignments: [{ targetCheckId: `c-${id}` }],
      })),
    });
    const a = agent(['--type', 'shell', '--concurrency', '2', '--id', 'agent-a', '--protocol', protocol]);
    const b = agent(['--type', 'shell', '--concurrency', '2', '--id', 'agent-b', '--protocol', protocol]);
    for (const id of ids) await finalStage(workPlanId, id, 60_000);

    const { checks, stages } = await api.queryNodes({ workPlanId });
    for (const s of stages) {
      assert.equal(s.attempts.length, 1, `${s.id} took one attempt`);
      assert.equal(s.attempts[0]!.state, AttemptState.ATTEMPT_STATE_COMPLETE);
      assert.match(s.attempts[0]!.processUid, /^agent-[ab]$/);
      const lines = s.attempts[0]!.progress.flatMap((p) => (p.details?.lines as string[] | undefined) ?? []);
      assert.ok(lines.some((l) => l.startsWith(`started ${s.id} in `)), `${s.id}'s output was streamed as progress: ${JSON.stringify(lines)}`);
    }
    for (const c of checks) {
      assert.equal(c.state, CheckState.CHECK_STATE_FINAL);
      assert.equal(c.results.length, 1);
      assert.equal(c.results[0]!.data!.exit_code, 0);
      assert.match(String(c.results[0]!.data!.output_tail), /done$/);
      assert.equal(c.results[0]!.failure, undefined);
    }
    // Every command ran exactly once, each in its own fresh directory.
    assert.deepEqual(readFileSync(out, 'utf8').trim().split('\n').sort(), [...ids].sort());
    const dirs = stages.map((s) => {
      const lines = s.attempts[0]!.progress.flatMap((p) => (p.details?.lines as string[] | undefined) ?? []);
      return lines.find((l) => l.startsWith('started '))!.split(' in ')[1]!;
    });
    assert.equal(new Set(dirs).size, 10, 'ten distinct working directories');
    for (const d of dirs) assert.ok(d.startsWith(`${dir.path}/work/`) && !existsSync(d), `${d} was made under --workdir and removed`);

    const flight = maxInFlight(readLog(server.dbPath), 'shell');
    assert.deepEqual(flight.leasedTwice, []);
    for (const [runner, n] of flight.perRunner) assert.ok(n <= 2, `${runner} had ${n} in flight (concurrency 2)`);
    assert.ok(flight.total <= 3, `${flight.total} in flight (server limit shell=3)`);
    assert.equal(flight.perRunner.size, 2, 'both agents took work');
    // An agent logs a lease or a completion after the server has it, and its output reaches this process later
    // still: the lines are waited for (a stage is FINAL on the server before its agent's last line is read here).
    const logged = (msg: string) =>
      eventually(async () => {
        const lines = [...a.logs, ...b.logs].filter((l) => l.msg === msg);
        return lines.length >= 10 ? lines : undefined;
      }, `10 "${msg}" lines from the agents`);
    const via = (await logged('leased')).map((l) => String(l.via));
    assert.equal(via.length, 10);
    if (protocol === 'stream') {
      // By default every attempt comes over the Work stream, and every completion goes back on it.
      assert.deepEqual(new Set(via), new Set(['work stream']));
      assert.equal((await logged('completed')).length, 10);
    } else {
      // The one-round-trip paths of the unary protocol (extensions): a completion hands back the next attempt.
      assert.ok(via.includes('complete (lease_next)'), `no attempt came back in a CompleteLease answer: ${JSON.stringify(via)}`);
      assert.ok(via.some((v) => v.startsWith('lease')), 'the first attempts came from Lease');
    }

    // SIGTERM drains: an idle agent exits 0.
    assert.equal(await a.stop('SIGTERM'), 0);
    assert.equal(await b.stop('SIGTERM'), 0);
  });

  test('agent SIGKILLed mid-command: missed heartbeats → INCOMPLETE with the reason → retried by the other agent after backoff', async () => {
    const workPlanId = (await api.createWorkPlan({})).workPlan!.id;
    await api.writeNodes({
      workPlanId,
      checks: [{ id: 'built', state: CheckState.CHECK_STATE_PLANNED }],
      stages: [
        {
          id: 'flaky',
          runnerType: 'crashy',
          maxAttempts: 2,
          args: { command: 'if [ "$TURBOCI_ATTEMPT" = 1 ]; then exec sleep 60; fi; echo second try ok' },
          assignments: [{ targetCheckId: 'built' }],
          executionPolicy: { heartbeatIntervalMs: 400, retryBackoffMs: 600 },
        },
      ],
    });
    const doomed = agent(['--type', 'crashy', '--id', 'doomed']);
    const started = await doomed.waitForLog((l) => l.msg === 'started' && l.stageId === 'flaky');
    const survivor = agent(['--type', 'crashy', '--id', 'survivor']);
    await survivor.waitForLog((l) => l.msg === 'agent started');
    await doomed.stop('SIGKILL');
    try {
      process.kill(-Number(started.pid), 'SIGKILL'); // the orphaned command of the killed agent
    } catch {
      // already gone
    }

    const s = await finalStage(workPlanId, 'flaky');
    assert.equal(s.attempts.length, 2);
    assert.equal(s.attempts[0]!.state, AttemptState.ATTEMPT_STATE_INCOMPLETE);
    assert.equal(s.attempts[0]!.processUid, 'doomed');
    assert.match(s.attempts[0]!.failure!.message, /runner doomed missed 2 heartbeats/);
    assert.equal(s.attempts[1]!.state, AttemptState.ATTEMPT_STATE_COMPLETE);
    assert.equal(s.attempts[1]!.processUid, 'survivor');
    const check = (await api.queryNodes({ workPlanId, checkIds: ['built'], includeChecks: true })).checks[0]!;
    assert.match(String(check.results[0]!.data!.output_tail), /second try ok/);

    const log = readLog(server.dbPath).filter((e) => e.streamId === workPlanId);
    const expiry = log.find((e) => e.event.type === 'StageAttemptLeaseExpired')!;
    assert.deepEqual(expiry.event.data, { stageId: 'flaky', idx: 1, leaseId: s.attempts[0]!.lease!.leaseId, reason: 'HEARTBEATS_MISSED' });
    const created2 = log.find((e) => e.event.type === 'StageAttemptCreated' && e.event.data.idx === 2)!;
    const leased2 = log.find((e) => e.event.type === 'StageAttemptLeased' && e.event.data.idx === 2)!;
    assert.ok(leased2.recordedAt >= created2.recordedAt + 600, 'the retry was offered only after its backoff');
  });

  test('max attempts exhausted: the stage goes FINAL failed and its checks are finalized with a failure', async () => {
    const workPlanId = (await api.createWorkPlan({})).workPlan!.id;
    await api.writeNodes({
      workPlanId,
      checks: [{ id: 'lint', state: CheckState.CHECK_STATE_PLANNED }],
      stages: [
        {
          id: 'broken',
          runnerType: 'failing',
          maxAttempts: 2,
          args: { command: ['sh', '-c', 'echo "bad things" >&2; exit 3'] },
          assignments: [{ targetCheckId: 'lint' }],
          executionPolicy: { heartbeatIntervalMs: 400, retryBackoffMs: 100 },
        },
      ],
    });
    agent(['--type', 'failing', '--id', 'failer']);
    const s = await finalStage(workPlanId, 'broken');
    assert.equal(s.attempts.length, 2);
    for (const a of s.attempts) {
      assert.equal(a.state, AttemptState.ATTEMPT_STATE_INCOMPLETE);
      assert.equal(a.failure!.message, 'command exited with code 3');
      assert.equal(a.details!.exit_code, 3);
      assert.match(String(a.details!.output_tail), /\[stderr\] bad things/);
    }
    assert.match(s.failure!.message, /attempt 2 of 2 was INCOMPLETE: command exited with code 3; no attempts left/);
    const check = (await api.queryNodes({ workPlanId, checkIds: ['lint'], includeChecks: true })).checks[0]!;
    assert.equal(check.state, CheckState.CHECK_STATE_FINAL);
    assert.match(check.results.at(-1)!.failure!.message, /finished without finalizing this check/);
  });

  test('cancel during a long sleep: the agent kills the process group within the grace period; nothing is left running', async () => {
    const pidFile = `${dir.path}/sleep.pid`;
    const workPlanId = (await api.createWorkPlan({})).workPlan!.id;
    await api.writeNodes({
      workPlanId,
      stages: [
        {
          id: 'long',
          runnerType: 'sleepy',
          // The shell and its background sleep ignore SIGTERM: only the SIGKILL after the grace period stops them.
          args: { command: `trap "" TERM; sleep 60 & echo $! > ${pidFile}; wait` },
          executionPolicy: { heartbeatIntervalMs: 400 },
        },
      ],
    });
    const a = agent(['--type', 'sleepy', '--id', 'sleeper', '--grace', '1000']);
    const started = await a.waitForLog((l) => l.msg === 'started' && l.stageId === 'long');
    const shellPid = Number(started.pid);
    const sleepPid = await eventually(async () => {
      try {
        const n = Number(readFileSync(pidFile, 'utf8').trim());
        return n > 0 ? n : undefined;
      } catch {
        return undefined;
      }
    }, 'the sleep wrote its pid');
    assert.ok(isAlive(shellPid) && isAlive(sleepPid));

    await api.writeNodes({ workPlanId, stages: [{ id: 'long', state: StageState.STAGE_STATE_FINAL }] });
    await a.waitForLog((l) => l.msg === 'cancel requested; stopping the command');
    const finished = await a.waitForLog((l) => l.msg === 'finished' && l.stageId === 'long');
    assert.equal(finished.stopped, 'cancelled');
    assert.equal(finished.signal, 'SIGKILL', 'SIGTERM was ignored, so the grace period ended in SIGKILL');
    await eventually(async () => (!isAlive(shellPid) && !isAlive(sleepPid) ? true : undefined), 'the process group is gone', 10_000);

    const s = (await api.queryNodes({ workPlanId, stageIds: ['long'], includeStages: true })).stages[0]!;
    assert.equal(s.state, StageState.STAGE_STATE_FINAL);
    assert.equal(s.attempts.length, 1);
    assert.equal(s.attempts[0]!.state, AttemptState.ATTEMPT_STATE_INCOMPLETE);
    assert.match(s.attempts[0]!.failure!.message, /stage cancelled/);
    await a.waitForLog((l) => l.msg === 'not completing: the lease is over');
    const log = readLog(server.dbPath).filter((e) => e.streamId === workPlanId);
    assert.equal(log.filter((e) => e.event.type === 'StageAttemptStateChanged' && e.event.data.completion).length, 0, 'no completion was applied');
  });
});

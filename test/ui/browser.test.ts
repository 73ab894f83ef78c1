// The web UI in a real browser (Debian's chromium, headless, through playwright-core) against a real server: writes
// go over gRPC, the page must show them live, resume after a broken connection or a server restart with nothing
// missing and nothing twice, travel back to any version exactly as `turboci replay --at-version` does, explain a
// stage, and show a push runner's load while it runs a stage.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { CheckState, NodeType, PredicateType, StageState, AttemptState } from '../../src/gen/turboci/v1/common.js';
import { startTestRunner, type TestRunner } from '../support/runner.js';
import { BIN, connect, serverPerFile, startServer, tempDir } from '../support/server.js';
import { onPostgres } from '../support/store.js';
import { stablePort } from '../support/ports.js';
import { graphAttemptStates, graphStates, launchBrowser, skipBrowser, timelineVersions, type Browser } from './support.js';

const skip = skipBrowser;
if (skip) console.log(`# ${skip}`);

const file = serverPerFile('ui-browser');
let browser: Browser | undefined;
const web = () => `http://${file.server.httpAddress}`;

before(async () => {
  if (!skip) browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

async function newPage(): Promise<Page> {
  return browser!.newPage();
}

async function createWorkPlan(api = file.api, metadata: Record<string, string> = { repo: 'ui-test' }): Promise<string> {
  const { workPlan } = await api.createWorkPlan({ metadata });
  return workPlan!.id;
}

const PLAN = {
  checks: [
    { id: 'build', kind: 'build', state: CheckState.CHECK_STATE_PLANNED, options: { target: 'linux' } },
    { id: 'test', kind: 'test', state: CheckState.CHECK_STATE_PLANNED, dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_CHECK, targetId: 'build' }] } },
  ],
  stages: [
    { id: 'compile', args: { command: 'make' }, assignments: [{ targetCheckId: 'build', goalState: CheckState.CHECK_STATE_FINAL }] },
    {
      id: 'run-tests',
      args: { command: 'make test' },
      assignments: [{ targetCheckId: 'test', goalState: CheckState.CHECK_STATE_FINAL }],
      dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_CHECK, targetId: 'build' }] },
    },
  ],
};
/** The runner of compile claims its attempt, then reports build passed and compile complete. */
async function finishBuild(workPlanId: string, api = file.api): Promise<void> {
  await api.writeNodes({ workPlanId, stages: [{ id: 'compile', currentAttempt: { processUid: 'runner-1' } }] });
  await api.writeNodes({
    workPlanId,
    checks: [{ id: 'build', result: { ownerType: 'stage', ownerId: 'compile', data: { passed: true }, finalize: true }, state: CheckState.CHECK_STATE_FINAL }],
    stages: [{ id: 'compile', currentAttempt: { state: AttemptState.ATTEMPT_STATE_COMPLETE }, state: StageState.STAGE_STATE_FINAL }],
  });
}

test('1. a workplan created over gRPC appears on the workplans page without a reload; the metadata filter applies', { skip }, async () => {
  const page = await newPage();
  try {
    await page.goto(`${web()}/`);
    await page.waitForSelector('#feed-status.live');
    const id = await createWorkPlan(file.api, { repo: 'ui-one' });
    await page.waitForSelector(`tr[data-workplan-id="${id}"]`, { timeout: 2000 });
    const other = await createWorkPlan(file.api, { repo: 'ui-other' });
    await page.waitForSelector(`tr[data-workplan-id="${other}"]`, { timeout: 2000 });

    await page.fill('#filter', 'repo=ui-one');
    await page.press('#filter', 'Enter');
    await page.waitForSelector(`tr[data-workplan-id="${other}"]`, { state: 'detached' });
    assert.equal(await page.locator(`tr[data-workplan-id="${id}"]`).count(), 1);
    // Live within the filter too: a change to the matching workplan shows, a new non-matching one does not.
    await file.api.writeNodes({ workPlanId: id, checks: [{ id: 'c', state: CheckState.CHECK_STATE_PLANNED }] });
    await page.waitForFunction(`document.querySelector('tr[data-workplan-id="${id}"]')?.textContent?.includes('1 WAITING')`, undefined, { timeout: 2000 });
    const third = await createWorkPlan(file.api, { repo: 'ui-other' });
    await page.waitForTimeout(300);
    assert.equal(await page.locator(`tr[data-workplan-id="${third}"]`).count(), 0);
  } finally {
    await page.close();
  }
});

test('2. nodes written over gRPC show in the graph, and their state changes within 2 s', { skip }, async () => {
  const id = await createWorkPlan();
  const page = await newPage();
  try {
    await page.goto(`${web()}/workplans/${id}`);
    await page.waitForSelector('#stream-status.live');
    await file.api.writeNodes({ workPlanId: id, ...PLAN });
    await page.waitForSelector('#graph g.node[data-node="stage:run-tests"]', { timeout: 2000 });
    assert.deepEqual(await graphStates(page), {
      'check:build': 'WAITING',
      'check:test': 'PLANNED',
      'stage:compile': 'ATTEMPTING',
      'stage:run-tests': 'PLANNED',
    });
    // Edges: run-tests and test depend on build (solid), the stages are assigned to their checks (dashed).
    assert.equal(await page.locator('#graph path.edge.dependency').count(), 2);
    assert.equal(await page.locator('#graph path.edge.assignment').count(), 2);

    await finishBuild(id);
    await page.waitForSelector('#graph g.node[data-node="check:build"][data-state="FINAL"]', { timeout: 2000 });
    await page.waitForSelector('#graph g.node[data-node="stage:run-tests"][data-state="ATTEMPTING"]', { timeout: 2000 });
    await page.waitForSelector('#graph g.node[data-node="check:test"][data-state="WAITING"]', { timeout: 2000 });
  } finally {
    await page.close();
  }
});

test('3a. the stream is cut (the browser loses its connection): the page resumes and shows every change, none twice', { skip }, async () => {
  const id = await createWorkPlan();
  await file.api.writeNodes({ workPlanId: id, ...PLAN });
  const page = await newPage();
  try {
    await page.goto(`${web()}/workplans/${id}`);
    await page.waitForSelector('#graph g.node[data-node="stage:compile"]');
    // Cut every connection to the stream and refuse new ones while changes are written.
    await page.route('**/stream**', (route) => route.abort());
    await page.evaluate('window.stop()');
    await page.waitForSelector('#stream-status:not(.live)');
    for (let i = 0; i < 5; i++) await file.api.writeNodes({ workPlanId: id, stages: [{ id: 'compile', currentAttempt: { progress: { message: `step ${i}` } } }] });
    await finishBuild(id);
    const { workPlan } = await file.api.getWorkPlan({ id });
    await page.unroute('**/stream**');
    await page.waitForSelector('#graph g.node[data-node="check:build"][data-state="FINAL"]', { timeout: 10_000 });
    await page.waitForFunction(`window.__turboci?.version === ${workPlan!.version} && document.querySelectorAll('#timeline li').length >= ${workPlan!.version}`);
    const versions = await timelineVersions(page);
    assert.deepEqual(versions, Array.from({ length: Number(workPlan!.version) }, (_, i) => Number(workPlan!.version) - i), 'every event once, in order');
    // It resumed (after_version / Last-Event-ID), it did not start over with a snapshot.
    const resumed = await file.server.waitForLog((l) => l.msg === 'watch subscription opened' && l.transport === 'sse' && l.workPlanId === id && l.afterVersion !== null);
    assert.ok(Number(resumed.afterVersion) > 1);
  } finally {
    await page.close();
  }
});

test('3b. the server restarts: the page resumes from the last version it saw, with every change made meanwhile', { skip }, async () => {
  const dir = tempDir();
  const httpPort = await stablePort();
  const db = join(dir.path, 'restart.db');
  let server = await startServer(db, ['--http-port', String(httpPort)]);
  let conn = connect(server.address);
  const page = await newPage();
  try {
    const id = await createWorkPlan(conn.api);
    await conn.api.writeNodes({ workPlanId: id, ...PLAN });
    await page.goto(`http://${server.httpAddress}/workplans/${id}`);
    await page.waitForSelector('#graph g.node[data-node="stage:compile"]');
    await page.waitForSelector('#stream-status.live');
    const before = (await page.evaluate('window.__turboci.version')) as number;

    // Keep the browser away while the server is down and while the changes are written after it is back.
    await page.route('**/stream**', (route) => route.abort());
    conn.close();
    await server.stop();
    server = await startServer(db, ['--http-port', String(httpPort)]);
    conn = connect(server.address);
    await finishBuild(id, conn.api);
    const { workPlan } = await conn.api.getWorkPlan({ id });
    assert.ok(workPlan!.version > before);
    await page.unroute('**/stream**');

    await page.waitForSelector('#graph g.node[data-node="stage:run-tests"][data-state="ATTEMPTING"]', { timeout: 10_000 });
    await page.waitForFunction(`window.__turboci?.version === ${workPlan!.version} && document.querySelectorAll('#timeline li').length >= ${workPlan!.version}`);
    const versions = await timelineVersions(page);
    assert.deepEqual(versions, Array.from({ length: Number(workPlan!.version) }, (_, i) => Number(workPlan!.version) - i), 'every event once, in order');
    // The new server was asked to resume, not to start over.
    const opened = await server.waitForLog((l) => l.msg === 'watch subscription opened' && l.transport === 'sse' && l.workPlanId === id);
    assert.equal(opened.afterVersion, before);
  } finally {
    await page.close();
    conn.close();
    await server.stop();
    dir.remove();
  }
});

// `turboci replay --db` reads SQLite files only in this branch (TODO(merge with pgcli): pass the URL).
test('4. the version slider shows the graph exactly as `turboci replay --at-version N`', { skip: skip || (onPostgres && 'turboci replay --db takes files only') }, async () => {
  const id = await createWorkPlan();
  await file.api.writeNodes({ workPlanId: id, ...PLAN });
  await finishBuild(id);
  const { workPlan } = await file.api.getWorkPlan({ id });
  const page = await newPage();
  try {
    await page.goto(`${web()}/workplans/${id}`);
    await page.waitForFunction(`window.__turboci?.version === ${workPlan!.version}`);
    const checked: number[] = [];
    for (let n = 2; n <= workPlan!.version; n += 2) {
      await page.locator('#version-slider').fill(String(n));
      await page.waitForSelector(`#shown-version[data-mode="past"][data-version="${n}"]`);
      const shown = await graphStates(page);
      const replay = spawnSync(process.execPath, [BIN, 'replay', '--db', file.server.dbPath, '-w', id, '--at-version', String(n), '--json'], { encoding: 'utf8' });
      assert.equal(replay.status, 0, replay.stderr);
      const state = JSON.parse(replay.stdout) as {
        checks?: { id: string; state: string }[];
        stages?: { id: string; state: string; attempts?: { state: string }[] }[];
      };
      const expected: Record<string, string> = {};
      const attempts: Record<string, string> = {};
      for (const c of state.checks ?? []) expected[`check:${c.id}`] = c.state.replace('CHECK_STATE_', '');
      for (const s of state.stages ?? []) {
        expected[`stage:${s.id}`] = s.state.replace('STAGE_STATE_', '');
        attempts[`stage:${s.id}`] = s.attempts?.at(-1)?.state.replace('ATTEMPT_STATE_', '') ?? '';
      }
      assert.deepEqual(shown, expected, `version ${n}`);
      assert.deepEqual(await graphAttemptStates(page), attempts, `attempts at version ${n}`);
      checked.push(n);
    }
    assert.ok(checked.length >= 3);
    // One event back and forth: the page says what that event changed.
    await page.click('#step-back');
    const back = checked[checked.length - 1]! - 1;
    await page.waitForSelector(`#shown-version[data-mode="past"][data-version="${back}"]`);
    assert.match(await page.locator('#event-change').innerText(), new RegExp(`^v${back} `));
    await page.click('#go-live');
    await page.waitForSelector('#shown-version[data-mode="live"]');
  } finally {
    await page.close();
  }
});

test('5. clicking a stage shows its attempts and the "why" chain; screenshot for the README', { skip }, async () => {
  const id = await createWorkPlan(file.api, { repo: 'turboci-lite', branch: 'main' });
  // A somewhat larger plan for the picture: build → tests (3 shards) → package → deploy.
  const dep = (ids: string[]) => ({ predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: ids.map((t) => ({ targetType: NodeType.NODE_TYPE_CHECK, targetId: t })) });
  const shards = ['unit', 'integration', 'e2e'];
  await file.api.writeNodes({
    workPlanId: id,
    checks: [
      { id: 'build', kind: 'build', state: CheckState.CHECK_STATE_PLANNED },
      ...shards.map((s) => ({ id: `test-${s}`, kind: 'test', state: CheckState.CHECK_STATE_PLANNED, dependencies: dep(['build']) })),
      { id: 'package', kind: 'package', state: CheckState.CHECK_STATE_PLANNED, dependencies: dep(shards.map((s) => `test-${s}`)) },
    ],
    stages: [
      { id: 'compile', args: { command: 'make' }, assignments: [{ targetCheckId: 'build', goalState: CheckState.CHECK_STATE_FINAL }] },
      ...shards.map((s) => ({ id: `run-${s}`, args: { command: `make ${s}` }, dependencies: dep(['build']), assignments: [{ targetCheckId: `test-${s}`, goalState: CheckState.CHECK_STATE_FINAL }] })),
      { id: 'deploy', args: { command: 'make deploy' }, dependencies: dep(['package']) },
    ],
  });
  await file.api.writeNodes({ workPlanId: id, stages: [{ id: 'compile', currentAttempt: { processUid: 'runner-7', progress: { message: 'compiling' } } }] });
  await file.api.writeNodes({
    workPlanId: id,
    checks: [{ id: 'build', result: { ownerType: 'stage', ownerId: 'compile', data: { passed: true }, finalize: true }, state: CheckState.CHECK_STATE_FINAL }],
    stages: [{ id: 'compile', currentAttempt: { state: AttemptState.ATTEMPT_STATE_COMPLETE }, state: StageState.STAGE_STATE_FINAL }],
  });
  await file.api.writeNodes({ workPlanId: id, stages: [{ id: 'run-unit', currentAttempt: { processUid: 'runner-5' } }] });
  await file.api.writeNodes({
    workPlanId: id,
    checks: [{ id: 'test-unit', result: { ownerType: 'stage', ownerId: 'run-unit', data: { passed: 412 }, finalize: true }, state: CheckState.CHECK_STATE_FINAL }],
    stages: [{ id: 'run-unit', currentAttempt: { state: AttemptState.ATTEMPT_STATE_COMPLETE }, state: StageState.STAGE_STATE_FINAL }],
  });
  await file.api.writeNodes({ workPlanId: id, stages: [{ id: 'run-integration', currentAttempt: { processUid: 'runner-3', progress: { message: 'shard 2 of 4' } } }] });
  const page = await newPage();
  try {
    await page.goto(`${web()}/workplans/${id}`);
    await page.waitForSelector('#graph g.node[data-node="stage:run-unit"][data-state="FINAL"]');
    await page.click('#graph g.node[data-node="stage:run-unit"]');
    await page.waitForSelector('#node-panel [data-node="stage:run-unit"]');
    const attempts = await page.$$eval('#node-panel tr.attempt', (rows) => rows.map((r) => [r.getAttribute('data-idx'), r.getAttribute('data-state')]));
    assert.deepEqual(attempts, [['1', 'COMPLETE']]);
    await page.waitForSelector('#why li');
    const why = await page.locator('#why > li .because').allInnerTexts();
    // The attempt was opened by the resolver because build went FINAL, which a client request wrote.
    assert.ok(why.some((w) => /^attempt 1 of stage run-unit was opened and stage run-unit went ATTEMPTING at v\d+ because check build went FINAL at v\d+, written/.test(w)), why.join('\n'));
    assert.ok(why.some((w) => /^attempt 1 of stage run-unit went COMPLETE and stage run-unit went FINAL at v\d+, written .*\(a client write\)$/.test(w)), why.join('\n'));

    await page.click('#graph g.node[data-node="stage:run-integration"]');
    await page.waitForSelector('#node-panel tr.attempt[data-state="RUNNING"]');
    await page.waitForFunction(`[...document.querySelectorAll('#why .because')].some((e) => e.textContent.includes('stage run-integration went ATTEMPTING'))`);
    // The README's picture: docs/web-ui.png is replaced only when asked (it differs on every run).
    const shot = process.env.TURBOCI_UPDATE_SCREENSHOT ? '../../../docs/web-ui.png' : '../web-ui.png';
    await page.screenshot({ path: fileURLToPath(new URL(shot, import.meta.url)), fullPage: false });

    // The timeline filters by type and by node; an entry shows the graph as of its version.
    const types = async () => page.$$eval('#timeline li .type', (els) => [...new Set(els.map((e) => e.textContent))]);
    await page.selectOption('#timeline-type', 'StageAttemptStateChanged');
    await page.waitForFunction(`[...document.querySelectorAll('#timeline li .type')].every((e) => e.textContent === 'StageAttemptStateChanged')`);
    assert.deepEqual(await types(), ['StageAttemptStateChanged']);
    await page.fill('#timeline-node', 'stage:run-unit');
    // Its claim (RUNNING), then its completion, which ended the stage in the same event.
    await page.waitForFunction(`document.querySelectorAll('#timeline li').length === 2`);
    assert.match(await page.locator('#timeline').innerText(), /attempt 1 of stage run-unit went COMPLETE and stage run-unit went FINAL/);
    // The stage's start is its first attempt's event: the graph as of it shows the stage ATTEMPTING.
    await page.selectOption('#timeline-type', 'StageAttemptCreated');
    await page.waitForFunction(`[...document.querySelectorAll('#timeline li .type')].every((e) => e.textContent === 'StageAttemptCreated')`);
    await page.waitForFunction(`document.querySelectorAll('#timeline li').length === 1`);
    assert.match(await page.locator('#timeline').innerText(), /attempt 1 of stage run-unit was opened and stage run-unit went ATTEMPTING/);
    const version = Number(await page.locator('#timeline li').last().getAttribute('data-version'));
    await page.locator('#timeline li').last().locator('a').click();
    await page.waitForSelector(`#shown-version[data-mode="past"][data-version="${version}"]`);
    await page.waitForSelector('#graph g.node.highlighted[data-node="stage:run-unit"][data-state="ATTEMPTING"]');
  } finally {
    await page.close();
  }
});

test('6. the runners page shows a registered push runner, and its load changes while it runs a stage', { skip }, async () => {
  let release: () => void = () => {};
  const released = new Promise<void>((r) => (release = r));
  let runner: TestRunner | undefined;
  const page = await newPage();
  try {
    runner = await startTestRunner({
      run: async () => {
        await released;
        return { stageState: StageState.STAGE_STATE_FINAL };
      },
    });
    const { registrationId } = await file.api.registerStageRunner({ runnerId: 'ui-runner-1', runnerType: 'ui-echo', address: runner.address, maxConcurrent: 2, ttlSeconds: 300n });
    await page.goto(`${web()}/runners`);
    const row = '#push-runners tr[data-runner-id="ui-runner-1"]';
    await page.waitForSelector(`${row}[data-load="0"]`);
    const id = await createWorkPlan();
    await file.api.writeNodes({ workPlanId: id, stages: [{ id: 'echo', runnerType: 'ui-echo', args: { message: 'hi' } }] });
    await page.waitForSelector(`${row}[data-load="1"]`, { timeout: 5000 });
    assert.match(await page.locator(row).innerText(), /echo\s+attempt 1/);
    release();
    await page.waitForSelector(`${row}[data-load="0"]`, { timeout: 5000 });
    await file.api.unregisterStageRunner({ registrationId });
    await page.waitForSelector(row, { state: 'detached', timeout: 5000 });
  } finally {
    release();
    await page.close();
    await runner?.close();
  }
});

test('an unknown workplan in the URL gives a clear page, not a blank one', { skip }, async () => {
  const page = await newPage();
  try {
    const res = await page.goto(`${web()}/workplans/no-such-workplan`);
    assert.equal(res?.status(), 404);
    await page.waitForSelector('#not-found');
    assert.match(await page.locator('#not-found').innerText(), /No such workplan[\s\S]*no-such-workplan/);
    const bad = await page.goto(`${web()}/workplans/${encodeURIComponent('has space')}`);
    assert.equal(bad?.status(), 400);
    assert.match(await page.locator('#not-found').innerText(), /Not a workplan id[\s\S]*work_plan_id/);
  } finally {
    await page.close();
  }
});

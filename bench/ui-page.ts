// The web UI's workplan page on a large workplan: how long until the graph is first drawn, and how many SSE events
// per second the page keeps up with (applied and rendered) while a writer changes the workplan as fast as it can.
//
// One real server (`turboci serve`), a workplan of NODES nodes (checks in chains of 20 with a stage assigned to each),
// headless Debian chromium driven by playwright-core. First render: from the start of navigation until the page's
// graph holds every node (the page also reports its own figure: mount → first graph). Live: a writer appends EVENTS
// progress entries (100 per WriteNodes, 4 calls in flight); the baseline is how fast the server accepted them, ours
// how fast the page had them rendered (until its rendered version reached the last one). Figures only: nothing is
// asserted. Without chromium the benchmark says so and reports nothing measured.
import { join } from 'node:path';
import { CheckState, NodeType, PredicateType } from '../src/gen/turboci/v1/common.js';
import { connect, startServer, tempDir } from '../test/support/server.js';
import { launchBrowser, skipBrowser } from '../test/ui/support.js';
import { benchArgs, ratio, report } from './harness.js';

const args = benchArgs();
const NODES = args.smoke ? 40 : 2000;
const EVENTS = args.smoke ? 200 : 20_000;
const PER_WRITE = 100;
/** Writes in flight at once. */
const WRITERS = 4;
const CHAIN = 20;

if (skipBrowser) {
  report({ benchmark: 'ui-page', figures: { '*skipped': skipBrowser }, ratios: [], notes: [skipBrowser] }, args);
  process.exit(0);
}

const dir = tempDir('turboci-bench-ui-');
const server = await startServer(join(dir.path, 'ui.db'), ['--log-level', 'warn']);
const { api, close } = connect(server.address);
const browser = await launchBrowser();
try {
  const { workPlan } = await api.createWorkPlan({ metadata: { repo: 'bench-ui' } });
  const id = workPlan!.id;
  const pairs = NODES / 2;
  for (let from = 0; from < pairs; from += 200) {
    const idx = Array.from({ length: Math.min(200, pairs - from) }, (_, i) => from + i);
    await api.writeNodes({
      workPlanId: id,
      checks: idx.map((i) => ({
        id: `c${i}`,
        kind: 'test',
        state: CheckState.CHECK_STATE_PLANNED,
        ...(i % CHAIN ? { dependencies: { predicate: PredicateType.PREDICATE_TYPE_AND, dependencies: [{ targetType: NodeType.NODE_TYPE_CHECK, targetId: `c${i - 1}` }] } } : {}),
      })),
      stages: idx.map((i) => ({ id: `s${i}`, args: { n: i }, assignments: [{ targetCheckId: `c${i}`, goalState: CheckState.CHECK_STATE_FINAL }] })),
    });
  }
  const created = (await api.getWorkPlan({ id })).workPlan!.version;

  const page = await browser.newPage();
  page.setDefaultTimeout(120_000);
  const t0 = Date.now();
  await page.goto(`http://${server.httpAddress}/workplans/${id}`);
  await page.waitForSelector(`#graph[data-nodes="${NODES}"]`);
  await page.waitForFunction(`window.__turboci?.renderedVersion === ${created}`);
  const firstRenderMs = Date.now() - t0;
  const pageFirstGraphMs = (await page.evaluate('window.__turboci.firstGraphMs')) as number;

  // Live: progress entries on the stages' open attempts, PER_WRITE events per call.
  const w0 = Date.now();
  let written = 0;
  let last = Number(created);
  const writer = async () => {
    while (written < EVENTS) {
      const from = written;
      const n = Math.min(PER_WRITE, EVENTS - from);
      written += n;
      const res = await api.writeNodes({
        workPlanId: id,
        stages: Array.from({ length: n }, (_, i) => ({ id: `s${(from + i) % pairs}`, currentAttempt: { progress: { message: `step ${from + i}` } } })),
      });
      last = Math.max(last, Number(res.workPlanVersion));
    }
  };
  await Promise.all(Array.from({ length: WRITERS }, writer));
  const writeMs = Date.now() - w0;
  await page.waitForFunction(`window.__turboci?.renderedVersion >= ${last}`, undefined, { polling: 10 });
  const pageMs = Date.now() - w0;
  const reconnects = (await page.evaluate('window.__turboci.reconnects')) as number;

  report(
    {
      benchmark: 'ui-page',
      figures: {
        nodes: NODES,
        'first render, navigation → graph drawn (ms)': firstRenderMs,
        'first render, page mount → graph (ms, measured by the page)': pageFirstGraphMs,
        '*first render of the graph (ms)': firstRenderMs,
        'live events written': EVENTS,
        'server accepted (events/s)': (EVENTS / writeMs) * 1000,
        'page kept up with (events/s, applied and rendered)': (EVENTS / pageMs) * 1000,
        '*SSE events/s the page keeps up with': (EVENTS / pageMs) * 1000,
        'page reconnects during the run': reconnects,
      },
      ratios: [ratio('page rendered vs server accepted (events/s)', (EVENTS / pageMs) * 1000, (EVENTS / writeMs) * 1000, 'events/s')],
      notes: ['a ratio near 1 means the page renders events as fast as one writer can append them'],
    },
    args,
  );
} finally {
  await browser.close();
  close();
  await server.stop();
  dir.remove();
}

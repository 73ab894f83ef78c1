// A workplan: its graph (live over SSE, or as of any stream version), the node panel with the "why" chain, and the
// event timeline.
//
// Live data is the workplan's SSE stream, i.e. WatchWorkPlan: a snapshot of every node, then every change. Each event
// carries its stream version as its SSE id, so when the connection breaks the browser resumes with Last-Event-ID =
// the last version it applied and misses nothing. Time travel asks the server for the workplan as of version N,
// folded from the log by the same projections (`turboci replay --at-version N`).
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, enc, getJson, nodeKey, type AnyNode, type Check, type EventView, type Explanation, type Stage, type StreamItem, type WorkPlanState, type WorkPlanSummary } from './api.js';
import { json, time } from './format.js';
import { failed, GraphView, layout, structureOf } from './graph.js';
import { link } from './router.js';

interface Live {
  nodes: Map<string, AnyNode>;
  version: number;
  /** Resume point: the version of the last event applied whose id was set (null during the first snapshot). */
  resumeAt: number | null;
  completed: StreamItem['completed'];
}

declare global {
  interface Window {
    /** What tests and the benchmark read: versions applied and rendered, and when the graph first rendered. */
    __turboci?: { version: number; renderedVersion: number; synced: boolean; firstGraphMs: number | null; nodes: number; reconnects: number };
  }
}

const TIMELINE_SHOWN = 300;

export function WorkPlanPage({ id, initialVersion }: { id: string; initialVersion: number | null }) {
  const [summary, setSummary] = useState<WorkPlanSummary | null>(null);
  const [missing, setMissing] = useState<{ status: number; message: string } | null>(null);
  const live = useRef<Live>({ nodes: new Map(), version: 0, resumeAt: null, completed: null });
  const [, setTick] = useState(0);
  const [conn, setConn] = useState('connecting');
  const [synced, setSynced] = useState(false);
  const [viewVersion, setViewVersion] = useState<number | null>(initialVersion);
  const [slider, setSlider] = useState<number | null>(initialVersion);
  const [past, setPast] = useState<WorkPlanState | null>(null);
  const [pastError, setPastError] = useState<string | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const timeline = useRef(new Map<number, EventView>());
  const timelineLoadedTo = useRef(0);
  const timelineLoading = useRef(false);
  const [timelineTick, setTimelineTick] = useState(0);
  const [nodeFilter, setNodeFilter] = useState('');
  const [typeFilter, setTypeFilter] = useState('');
  const stats = useRef({ started: performance.now(), reconnects: 0, firstGraphMs: null as number | null });

  // Does it exist? (A clear page for an unknown or malformed id, not a blank one.)
  useEffect(() => {
    getJson<WorkPlanState>(`/api/workplans/${enc(id)}?summary=1`)
      .then((s) => setSummary(s.workPlan))
      .catch((err: unknown) => setMissing({ status: err instanceof ApiError ? err.status : 0, message: err instanceof Error ? err.message : String(err) }));
  }, [id]);

  // The live stream.
  useEffect(() => {
    if (!summary) return;
    let es: EventSource | null = null;
    let frame = 0;
    let closed = false;
    const render = () => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        setTick((n) => n + 1);
      });
    };
    const apply = (e: MessageEvent<string>) => {
      const item = JSON.parse(e.data) as StreamItem;
      const l = live.current;
      if (item.change) l.nodes.set(nodeKey(item.change.kind, item.change.node.id), { kind: item.change.kind, node: item.change.node } as AnyNode);
      if (item.completed) l.completed = item.completed;
      else if (item.change && !item.snapshot) l.completed = null;
      l.version = Math.max(l.version, item.version);
      if (e.lastEventId !== '') l.resumeAt = Number(e.lastEventId);
      render();
    };
    const connect = () => {
      if (closed) return;
      const l = live.current;
      es = new EventSource(`/api/workplans/${enc(id)}/stream${l.resumeAt !== null ? `?after_version=${l.resumeAt}` : ''}`);
      es.addEventListener('change', apply);
      es.addEventListener('completed', apply);
      es.addEventListener('synced', () => {
        setSynced(true);
        setConn('live');
        render();
      });
      es.addEventListener('end', (e) => {
        const end = JSON.parse((e as MessageEvent<string>).data) as { reason: string; lastVersion: number | null };
        setConn(`reconnecting (${end.reason})`);
        if (end.lastVersion === null) {
          // Cut during the initial snapshot: take it again from scratch.
          es?.close();
          live.current = { nodes: new Map(), version: 0, resumeAt: null, completed: null };
          setTimeout(connect, 500);
        }
        // Otherwise the EventSource reconnects by itself, sending Last-Event-ID.
      });
      es.onopen = () => setConn(live.current.resumeAt === null ? 'loading' : 'live');
      es.onerror = () => {
        stats.current.reconnects++;
        setConn('reconnecting');
        if (es?.readyState === EventSource.CLOSED) setTimeout(connect, 1000);
      };
    };
    connect();
    return () => {
      closed = true;
      es?.close();
      if (frame) cancelAnimationFrame(frame);
    };
  }, [summary !== null, id]);

  const l = live.current;

  // The timeline follows the live version: fetch the events not loaded yet (keyed by version: never twice).
  useEffect(() => {
    if (!synced || timelineLoading.current || timelineLoadedTo.current >= live.current.version) return;
    timelineLoading.current = true;
    void (async () => {
      try {
        while (timelineLoadedTo.current < live.current.version) {
          const page = await getJson<{ events: EventView[]; next: number | null; version: number }>(
            `/api/workplans/${enc(id)}/events?after=${timelineLoadedTo.current}&limit=2000`,
          );
          for (const ev of page.events) timeline.current.set(ev.version, ev);
          timelineLoadedTo.current = page.next ?? page.version;
          setTimelineTick((n) => n + 1);
        }
      } catch {
        // retried on the next change
      } finally {
        timelineLoading.current = false;
      }
    })();
  });

  // Time travel: the state as of viewVersion, from the server's projections.
  useEffect(() => {
    if (viewVersion === null) {
      setPast(null);
      return;
    }
    let cancelled = false;
    setPastError(null);
    getJson<WorkPlanState>(`/api/workplans/${enc(id)}?version=${viewVersion}`)
      .then((s) => !cancelled && setPast(s))
      .catch((err: unknown) => !cancelled && setPastError(err instanceof Error ? err.message : String(err)));
    const url = new URL(location.href);
    url.searchParams.set('version', String(viewVersion));
    history.replaceState(null, '', url);
    return () => {
      cancelled = true;
    };
  }, [viewVersion, id]);

  // The slider settles for a moment before a version is fetched.
  useEffect(() => {
    if (slider === viewVersion) return;
    const t = setTimeout(() => setViewVersion(slider), 120);
    return () => clearTimeout(t);
  }, [slider]);

  const goLive = () => {
    setSlider(null);
    setViewVersion(null);
    const url = new URL(location.href);
    url.searchParams.delete('version');
    history.replaceState(null, '', url);
  };
  const goTo = (v: number) => {
    const clamped = Math.max(1, Math.min(l.version || v, v));
    setSlider(clamped);
    setViewVersion(clamped);
  };

  const pastNodes = useMemo(() => {
    if (!past) return null;
    const m = new Map<string, AnyNode>();
    for (const c of past.checks) m.set(nodeKey('check', c.id), { kind: 'check', node: c });
    for (const s of past.stages) m.set(nodeKey('stage', s.id), { kind: 'stage', node: s });
    return m;
  }, [past]);

  const showingPast = viewVersion !== null && past !== null && past.version === viewVersion;
  const nodes = showingPast && pastNodes ? pastNodes : l.nodes;
  const shownVersion = showingPast ? past.version : l.version;
  const structure = structureOf(nodes);
  const graphLayout = useMemo(() => layout(nodes), [structure]);

  useEffect(() => {
    if (synced && stats.current.firstGraphMs === null && l.nodes.size > 0) stats.current.firstGraphMs = performance.now() - stats.current.started;
    window.__turboci = {
      version: l.version,
      renderedVersion: showingPast ? window.__turboci?.renderedVersion ?? 0 : l.version,
      synced,
      firstGraphMs: stats.current.firstGraphMs,
      nodes: l.nodes.size,
      reconnects: stats.current.reconnects,
    };
  });

  if (missing) {
    return (
      <div class="notice" id="not-found">
        <h2>{missing.status === 404 ? 'No such workplan' : missing.status === 400 ? 'Not a workplan id' : 'Could not load the workplan'}</h2>
        <p>
          <code>{id}</code>: {missing.message}
        </p>
        <p>
          <a href="/" onClick={link}>
            See every workplan
          </a>
        </p>
      </div>
    );
  }
  if (!summary) return <p class="loading">Loading workplan {id}…</p>;

  const selectedNode = selected ? nodes.get(selected) : undefined;
  const byState = countStates(nodes);
  const highlighted = showingPast ? past.event?.node ?? null : null;
  return (
    <section class="workplan">
      <div class="toolbar">
        <h1>
          Workplan <code id="workplan-id">{id}</code>
        </h1>
        {Object.entries(summary.metadata).map(([k, v]) => (
          <span class="tag" key={k}>
            {k}={v}
          </span>
        ))}
        <span class={`status ${conn.startsWith('live') ? 'live' : 'reconnecting'}`} id="stream-status">
          {conn}
        </span>
      </div>
      <p class="muted" id="counts">
        {byState} · {l.completed ? (l.completed.hasFailures ? 'complete, with failures' : 'complete') : 'in progress'}
      </p>
      <div class="travel">
        <label for="version-slider">Version</label>
        <button id="step-back" disabled={(viewVersion ?? l.version) <= 1} onClick={() => goTo((viewVersion ?? l.version) - 1)} title="one event back">
          ◀
        </button>
        <input
          id="version-slider"
          type="range"
          min={1}
          max={Math.max(1, l.version)}
          value={slider ?? l.version}
          onInput={(e) => setSlider(Number(e.currentTarget.value))}
        />
        <button id="step-forward" disabled={viewVersion === null} onClick={() => (viewVersion !== null && viewVersion + 1 >= l.version ? goLive() : goTo((viewVersion ?? 0) + 1))} title="one event forward">
          ▶
        </button>
        <span id="shown-version" data-version={shownVersion} data-mode={showingPast ? 'past' : 'live'}>
          {showingPast ? `v${shownVersion} of ${l.version}` : `live · v${l.version}`}
        </span>
        {viewVersion !== null && (
          <button id="go-live" onClick={goLive}>
            Back to live
          </button>
        )}
        {viewVersion !== null && !showingPast && !pastError && <span class="muted">loading v{viewVersion}…</span>}
        {pastError && <span class="error">{pastError}</span>}
      </div>
      {showingPast && past.event && (
        <div class="event-change" id="event-change">
          <strong>
            v{past.event.version} {past.event.type}
          </strong>
          : {past.event.summary} <span class="muted">({past.event.origin})</span>
          <ul>
            {past.event.changes.map((c, i) => (
              <li key={i}>
                <code>{c}</code>
              </li>
            ))}
          </ul>
        </div>
      )}
      <div class="split">
        <div class="left">
          {nodes.size === 0 ? (
            <p class="muted" id="empty-graph">
              {synced || showingPast ? 'No nodes yet.' : 'Loading…'}
            </p>
          ) : (
            <GraphView nodes={nodes} layout={graphLayout} selected={selected} highlighted={highlighted} onSelect={setSelected} />
          )}
          <Timeline
            events={timeline.current}
            tick={timelineTick}
            nodeFilter={nodeFilter}
            typeFilter={typeFilter}
            setNodeFilter={setNodeFilter}
            setTypeFilter={setTypeFilter}
            current={viewVersion}
            onPick={goTo}
            nodeKeys={[...l.nodes.keys()]}
          />
        </div>
        <aside class="panel" id="node-panel">
          {selectedNode ? (
            <NodePanel key={selected} workPlanId={id} n={selectedNode} asOf={showingPast ? shownVersion : null} onClose={() => setSelected(null)} />
          ) : (
            <p class="muted">Click a node to see its details and why it is in its state.</p>
          )}
        </aside>
      </div>
    </section>
  );
}

function countStates(nodes: ReadonlyMap<string, AnyNode>): string {
  const c = new Map<string, number>();
  let checks = 0;
  let stages = 0;
  for (const n of nodes.values()) {
    if (n.kind === 'check') checks++;
    else stages++;
    const k = `${n.kind} ${n.node.state}`;
    c.set(k, (c.get(k) ?? 0) + 1);
  }
  const parts = [...c].map(([k, n]) => `${n} ${k}`);
  return `${checks} checks, ${stages} stages${parts.length ? ` (${parts.join(', ')})` : ''}`;
}

function Timeline(props: {
  events: Map<number, EventView>;
  tick: number;
  nodeFilter: string;
  typeFilter: string;
  setNodeFilter: (s: string) => void;
  setTypeFilter: (s: string) => void;
  current: number | null;
  onPick: (v: number) => void;
  nodeKeys: string[];
}) {
  const { events, nodeFilter, typeFilter } = props;
  const types = useMemo(() => [...new Set([...events.values()].map((e) => e.type))].sort(), [props.tick]);
  const shown: EventView[] = [];
  const all = [...events.values()];
  let matching = 0;
  for (let i = all.length - 1; i >= 0; i--) {
    const e = all[i]!;
    if (typeFilter && e.type !== typeFilter) continue;
    if (nodeFilter && e.node !== nodeFilter && e.node?.slice(e.node.indexOf(':') + 1) !== nodeFilter) continue;
    matching++;
    if (shown.length < TIMELINE_SHOWN) shown.push(e);
  }
  return (
    <div class="timeline">
      <div class="toolbar">
        <h2>Events</h2>
        <input id="timeline-node" list="node-keys" placeholder="node (stage:x or x)" value={nodeFilter} onInput={(e) => props.setNodeFilter(e.currentTarget.value.trim())} />
        <datalist id="node-keys">
          {props.nodeKeys.slice(0, 2000).map((k) => (
            <option key={k} value={k} />
          ))}
        </datalist>
        <select id="timeline-type" value={typeFilter} onChange={(e) => props.setTypeFilter(e.currentTarget.value)}>
          <option value="">every type</option>
          {types.map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
        <span class="muted">
          {matching} of {events.size}
          {matching > shown.length ? `, newest ${shown.length} shown` : ''}
        </span>
      </div>
      <ol id="timeline" reversed>
        {shown.map((e) => (
          <li key={e.version} data-version={e.version} class={props.current === e.version ? 'current' : ''}>
            <a
              href={`?version=${e.version}`}
              onClick={(ev) => {
                ev.preventDefault();
                props.onPick(e.version);
              }}
            >
              v{e.version}
            </a>{' '}
            <span class="time">{time(e.recordedAt)}</span> <span class="type">{e.type}</span> {e.summary}{' '}
            <span class="muted">({e.origin})</span>
          </li>
        ))}
      </ol>
    </div>
  );
}

function NodePanel({ workPlanId, n, asOf, onClose }: { workPlanId: string; n: AnyNode; asOf: number | null; onClose: () => void }) {
  const key = nodeKey(n.kind, n.node.id);
  const [why, setWhy] = useState<Explanation | null>(null);
  const [whyError, setWhyError] = useState<string | null>(null);
  useEffect(() => {
    let cancelled = false;
    const t = setTimeout(() => {
      getJson<Explanation>(`/api/workplans/${enc(workPlanId)}/explain?node=${enc(key)}`)
        .then((x) => !cancelled && (setWhy(x), setWhyError(null)))
        .catch((err: unknown) => !cancelled && setWhyError(err instanceof Error ? err.message : String(err)));
    }, 50);
    return () => {
      cancelled = true;
      clearTimeout(t);
    };
  }, [key, n.node.version]);
  const history = (why?.history ?? []).filter((h) => asOf === null || h.version <= asOf);
  return (
    <div data-node={key}>
      <div class="toolbar">
        <h2>
          {n.kind} <code>{n.node.id}</code>
        </h2>
        <button onClick={onClose} title="close">
          ×
        </button>
      </div>
      <p>
        <span class={`pill s-${n.node.state}${failed(n) ? ' failed' : ''}`} id="panel-state">
          {n.node.state}
        </span>{' '}
        <span class="muted">
          changed {n.node.version} times · created at v{n.node.createdAtVersion}
          {asOf !== null ? ` · as of v${asOf}` : ''}
        </span>
      </p>
      {n.node.dependencies && n.node.dependencies.edges.length > 0 && (
        <p>
          Depends on ({n.node.dependencies.threshold > 0 ? `${n.node.dependencies.threshold} of` : n.node.dependencies.predicate}):{' '}
          {n.node.dependencies.edges.map((e) => `${e.kind}:${e.id}`).join(', ')}
        </p>
      )}
      {n.kind === 'check' ? <CheckDetails c={n.node} /> : <StageDetails s={n.node} />}
      <h3>Why</h3>
      {whyError && <p class="error">{whyError}</p>}
      <ol class="why" id="why">
        {history
          .slice()
          .reverse()
          .map((h) => (
            <li key={h.version} data-version={h.version}>
              <div class="because">{h.because}</div>
              {h.changes.length > 0 && (
                <ul class="changes">
                  {h.changes.map((c, i) => (
                    <li key={i}>
                      <code>{c}</code>
                    </li>
                  ))}
                </ul>
              )}
            </li>
          ))}
      </ol>
    </div>
  );
}

function CheckDetails({ c }: { c: Check }) {
  return (
    <>
      <p>
        Kind: <code>{c.kind || '-'}</code>
      </p>
      <h3>Options</h3>
      <pre>{json(c.options)}</pre>
      <h3>Results ({c.results.length})</h3>
      {c.results.map((r) => (
        <div class="result" key={r.id}>
          <strong>#{r.id}</strong> by {r.ownerType || '?'}:{r.ownerId || '?'} {r.finalizedAt !== null ? '· finalized' : ''}
          {r.failure && <div class="error">failure: {r.failure.message}</div>}
          <pre>{json(r.data)}</pre>
        </div>
      ))}
    </>
  );
}

function StageDetails({ s }: { s: Stage }) {
  return (
    <>
      <p>
        Runner type: <code>{s.runnerType || '-'}</code> · {s.executionMode} · max {s.maxAttempts} attempts
        {s.assignments.length > 0 && <> · assigned to {s.assignments.map((a) => a.checkId).join(', ')}</>}
      </p>
      {s.failure && <p class="error">Stage failure: {s.failure.message}</p>}
      <h3>Args</h3>
      <pre>{json(s.args)}</pre>
      <h3>Attempts ({s.attempts.length})</h3>
      <table class="grid attempts">
        <thead>
          <tr>
            <th>#</th>
            <th>State</th>
            <th>Runner</th>
            <th>Progress</th>
            <th>Failure</th>
          </tr>
        </thead>
        <tbody>
          {s.attempts.map((a) => {
            const runner = a.execution ? `push ${a.execution.runnerId} (${a.execution.mode})` : a.lease ? `pull ${a.lease.runnerId}` : a.processUid || '-';
            const last = a.progress[a.progress.length - 1];
            return (
              <tr key={a.idx} class="attempt" data-idx={a.idx} data-state={a.state}>
                <td>{a.idx}</td>
                <td>{a.state}</td>
                <td>{runner}</td>
                <td>
                  {a.progress.length} entries{last ? `: ${last.message}` : ''}
                  {Object.keys(a.details).length > 0 && (
                    <details>
                      <summary>details</summary>
                      <pre>{json(a.details)}</pre>
                    </details>
                  )}
                </td>
                <td class={a.failure ? 'error' : ''}>{a.failure?.message ?? ''}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </>
  );
}

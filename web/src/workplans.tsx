// The workplans page: the most recently updated workplans, live over SSE, filtered by metadata (repo=x).
import { useEffect, useState } from 'preact/hooks';
import type { WorkPlanSummary } from './api.js';
import { ago, counts } from './format.js';
import { link, navigate } from './router.js';

export function WorkPlansPage() {
  const initial = new URL(location.href).searchParams.get('filter') ?? '';
  const [filter, setFilter] = useState(initial);
  const [applied, setApplied] = useState(initial);
  const [plans, setPlans] = useState<Map<string, WorkPlanSummary>>(new Map());
  const [total, setTotal] = useState(0);
  const [status, setStatus] = useState('connecting');
  const [error, setError] = useState<string | null>(null);
  const [, tick] = useState(0);

  useEffect(() => {
    const t = setInterval(() => tick((n) => n + 1), 5000);
    return () => clearInterval(t);
  }, []);

  useEffect(() => {
    setError(null);
    const qs = applied ? `?filter=${encodeURIComponent(applied)}` : '';
    const es = new EventSource(`/api/workplans-stream${qs}`);
    let current = new Map<string, WorkPlanSummary>();
    es.addEventListener('workplans', (e) => {
      const data = JSON.parse((e as MessageEvent<string>).data) as { reset: boolean; workPlans: WorkPlanSummary[]; total?: number };
      if (data.reset) current = new Map();
      else current = new Map(current);
      for (const wp of data.workPlans) {
        if (!current.has(wp.id) && !data.reset) setTotal((n) => n + 1);
        current.set(wp.id, wp);
      }
      if (data.total !== undefined) setTotal(data.total);
      setPlans(current);
      setStatus('live');
    });
    es.onerror = () => {
      setStatus('reconnecting');
      // A bad filter is a 400: EventSource gives up; ask the JSON API why.
      if (es.readyState === EventSource.CLOSED) {
        fetch(`/api/workplans${qs}`)
          .then((r) => r.json())
          .then((b: { error?: { message: string } }) => setError(b.error?.message ?? 'the server closed the stream'))
          .catch(() => setError('the server is unreachable'));
      }
    };
    return () => es.close();
  }, [applied]);

  const list = [...plans.values()].sort((a, b) => b.updatedAt.localeCompare(a.updatedAt) || b.createdAt.localeCompare(a.createdAt));
  return (
    <section>
      <div class="toolbar">
        <h1>Workplans</h1>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            setApplied(filter.trim());
            history.replaceState(null, '', filter.trim() ? `/?filter=${encodeURIComponent(filter.trim())}` : '/');
          }}
        >
          <input id="filter" placeholder="metadata filter, e.g. repo=x,branch=main" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
          <button type="submit">Filter</button>
        </form>
        <span class={`status ${status}`} id="feed-status">
          {status}
        </span>
      </div>
      {error && <p class="error">{error}</p>}
      <p class="muted">
        {list.length} shown{total > list.length ? ` of ${total}` : ''}
        {applied ? ` matching ${applied}` : ''}
      </p>
      <table class="grid" id="workplans">
        <thead>
          <tr>
            <th>Workplan</th>
            <th>Metadata</th>
            <th>Created</th>
            <th>Updated</th>
            <th>Checks</th>
            <th>Stages</th>
            <th>Status</th>
          </tr>
        </thead>
        <tbody>
          {list.map((wp) => (
            <tr key={wp.id} data-workplan-id={wp.id} class="clickable" onClick={() => navigate(`/workplans/${encodeURIComponent(wp.id)}`)}>
              <td>
                <a href={`/workplans/${encodeURIComponent(wp.id)}`} onClick={link}>
                  <code>{wp.id}</code>
                </a>
              </td>
              <td>
                {Object.entries(wp.metadata).map(([k, v]) => (
                  <span class="tag" key={k}>
                    {k}={v}
                  </span>
                ))}
              </td>
              <td title={wp.createdAt}>{ago(wp.createdAt)}</td>
              <td title={wp.updatedAt}>
                {ago(wp.updatedAt)} <span class="muted">v{wp.version}</span>
              </td>
              <td>{counts(wp.checks)}</td>
              <td>{counts(wp.stages)}</td>
              <td class="wp-status">
                <span class={`pill ${wp.complete ? (wp.failed ? 'failed' : 'passed') : wp.failed ? 'failing' : 'running'}`}>
                  {wp.complete ? (wp.failed ? 'failed' : 'passed') : wp.failed ? 'running, with failures' : 'running'}
                </span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {list.length === 0 && status === 'live' && <p class="muted">No workplans yet. Create one over gRPC (CreateWorkPlan).</p>}
    </section>
  );
}

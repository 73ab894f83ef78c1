// The runners page: registered push runners and pull agents, with what each runs now, live over SSE.
import { useEffect, useState } from 'preact/hooks';
import type { RunnersView } from './api.js';
import { ago } from './format.js';
import { link } from './router.js';

export function RunnersPage() {
  const [view, setView] = useState<RunnersView | null>(null);
  const [status, setStatus] = useState('connecting');
  useEffect(() => {
    const es = new EventSource('/api/runners/stream');
    es.addEventListener('runners', (e) => {
      setView(JSON.parse((e as MessageEvent<string>).data) as RunnersView);
      setStatus('live');
    });
    es.onerror = () => setStatus('reconnecting');
    return () => es.close();
  }, []);
  const now = view ? Date.parse(view.now) : Date.now();
  const attempt = (r: { workPlanId: string; stageId: string; idx: number }) => (
    <div key={`${r.workPlanId}/${r.stageId}/${r.idx}`} class="running">
      <a href={`/workplans/${encodeURIComponent(r.workPlanId)}`} onClick={link}>
        {r.stageId}
      </a>{' '}
      attempt {r.idx} <span class="muted">in {r.workPlanId.slice(0, 8)}</span>
    </div>
  );
  return (
    <section>
      <div class="toolbar">
        <h1>Runners</h1>
        <span class={`status ${status}`} id="feed-status">
          {status}
        </span>
      </div>
      <h2>Push runners (registered)</h2>
      <table class="grid" id="push-runners">
        <thead>
          <tr>
            <th>Runner</th>
            <th>Type</th>
            <th>Modes</th>
            <th>Load</th>
            <th>TTL</th>
            <th>Heartbeat</th>
            <th>Address</th>
            <th>Running now</th>
          </tr>
        </thead>
        <tbody>
          {view?.push.map((r) => (
            <tr key={r.registrationId} data-runner-id={r.runnerId} data-load={r.load}>
              <td>
                <code>{r.runnerId}</code>
              </td>
              <td>{r.runnerType}</td>
              <td>{r.modes.join(', ')}</td>
              <td class="load">
                {r.load} / {r.maxConcurrent}
              </td>
              <td>
                {r.ttlSeconds}s <span class="muted">(expires {ago(r.expiresAt, now)})</span>
              </td>
              <td>{ago(r.lastHeartbeat, now)}</td>
              <td>
                <code>{r.address}</code>
              </td>
              <td>{r.running.length ? r.running.map(attempt) : <span class="muted">idle</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {view && view.push.length === 0 && <p class="muted">No push runner is registered.</p>}
      <h2>Pull agents</h2>
      <table class="grid" id="pull-agents">
        <thead>
          <tr>
            <th>Agent</th>
            <th>Type</th>
            <th>Labels</th>
            <th>Last Lease call</th>
            <th>Leases held</th>
          </tr>
        </thead>
        <tbody>
          {view?.pull.map((a) => (
            <tr key={a.runnerId} data-runner-id={a.runnerId} data-leases={a.leases.length}>
              <td>
                <code>{a.runnerId}</code>
              </td>
              <td>{a.runnerType}</td>
              <td>
                {Object.entries(a.labels).map(([k, v]) => (
                  <span class="tag" key={k}>
                    {k}={v}
                  </span>
                ))}
              </td>
              <td>
                {ago(a.lastSeen, now)}
                {a.waiting ? <span class="muted"> (waiting for work)</span> : null}
              </td>
              <td>{a.leases.length ? a.leases.map(attempt) : <span class="muted">none</span>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {view && view.pull.length === 0 && <p class="muted">No pull agent has called Lease in the last 10 minutes.</p>}
    </section>
  );
}

import { render } from 'preact';
import { link, useLocation } from './router.js';
import { RunnersPage } from './runners.js';
import { WorkPlanPage } from './workplan.js';
import { WorkPlansPage } from './workplans.js';
import './style.css';

function App() {
  const url = useLocation();
  const path = url.pathname;
  const wp = /^\/workplans\/([^/]+)$/.exec(path);
  let page;
  if (path === '/' || path === '/workplans') page = <WorkPlansPage />;
  else if (path === '/runners') page = <RunnersPage />;
  else if (wp) {
    let id: string;
    try {
      id = decodeURIComponent(wp[1]!);
    } catch {
      id = wp[1]!;
    }
    const v = url.searchParams.get('version');
    page = <WorkPlanPage key={id} id={id} initialVersion={v && /^\d+$/.test(v) ? Number(v) : null} />;
  } else {
    page = (
      <div class="notice" id="not-found">
        <h2>Page not found</h2>
        <p>
          There is no page at <code>{path}</code>. See the <a href="/" onClick={link}>workplans</a> or the{' '}
          <a href="/runners" onClick={link}>runners</a>.
        </p>
      </div>
    );
  }
  return (
    <>
      <header>
        <a class="brand" href="/" onClick={link}>
          TurboCI-Lite
        </a>
        <nav>
          <a href="/" onClick={link} class={path === '/' || path.startsWith('/workplans') ? 'active' : ''}>
            Workplans
          </a>
          <a href="/runners" onClick={link} class={path === '/runners' ? 'active' : ''}>
            Runners
          </a>
        </nav>
      </header>
      <main>{page}</main>
    </>
  );
}

render(<App />, document.getElementById('app')!);

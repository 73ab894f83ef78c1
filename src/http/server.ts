// The HTTP side of `turboci serve`: the web UI (a Preact app built into dist/web by `npm run build:web`), a
// read-only JSON API and Server-Sent Events over the same application layer the gRPC services use, and the
// operations endpoints (/metrics, /healthz, /readyz). Writes stay on gRPC.
//
// It starts before the read models are rebuilt, so /healthz answers at once and /readyz says when the server is
// ready; until attach() everything else answers 503.
import { readFile } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Orchestrator } from '../app/orchestrator.js';
import type { PullService } from '../app/pull-service.js';
import { DomainError, type DomainErrorKind } from '../domain/errors.js';
import type { Logger } from '../logging.js';
import { httpTotal, observeApp, registry } from '../metrics.js';
import { eventsQuery, explainQuery, listQuery, parse, queryOf, stateQuery, watchQuery, watchRequest, workPlanId } from './params.js';
import { RunnersFeed, WorkPlansFeed, WorkPlanStreams } from './sse.js';
import { eventPage, explain, listWorkPlans, runnersView, workPlanState, workPlanSummary } from './views.js';

/** Where the front-end build is (dist/web, next to dist/src). */
const WEB_DIR = fileURLToPath(new URL('../../web/', import.meta.url));
const ASSETS: Record<string, string> = {
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'app.js.map': 'application/json',
};

const STATUS: Record<DomainErrorKind, number> = {
  NOT_FOUND: 404,
  INVALID_ARGUMENT: 400,
  FAILED_PRECONDITION: 409,
  ABORTED: 409,
  RESOURCE_EXHAUSTED: 429,
  UNAVAILABLE: 503,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
};

export interface HttpServer {
  readonly address: string;
  readonly port: number;
  /** The application is up: serve the UI and the API (until then they answer 503). */
  attach(app: Orchestrator, options: { watchBuffer?: number; pull?: PullService }): void;
  /** Shutting down: /readyz answers 503, live streams end (telling browsers where to resume). */
  drain(): void;
  close(): Promise<void>;
}

interface Attached {
  readonly app: Orchestrator;
  readonly pull: PullService | undefined;
  readonly streams: WorkPlanStreams;
  readonly workplans: WorkPlansFeed;
  readonly runners: RunnersFeed;
}

export async function startHttpServer(log: Logger, host: string, port: number): Promise<HttpServer> {
  let attached: Attached | null = null;
  let draining = false;

  const server = createServer((req, res) => {
    const started = process.hrtime.bigint();
    let route = 'other';
    res.on('finish', () => {
      httpTotal.inc({ route, status: String(res.statusCode) });
      if (route !== 'sse') log.debug({ method: req.method, url: req.url, status: res.statusCode, durationMs: Number(process.hrtime.bigint() - started) / 1e6 }, 'http');
    });
    const fail = (err: unknown) => {
      if (res.headersSent) {
        res.end();
        return;
      }
      if (err instanceof DomainError) {
        json(res, STATUS[err.kind], { error: { code: err.kind, field: err.field ?? null, message: err.message } });
        return;
      }
      log.error({ err, url: req.url }, 'http request failed');
      json(res, 500, { error: { code: 'INTERNAL', field: null, message: 'internal error; see the server log' } });
    };
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const path = url.pathname;
      if (path === '/healthz') {
        route = path;
        return json(res, 200, { status: 'ok' });
      }
      if (path === '/readyz') {
        route = path;
        if (draining) return json(res, 503, { status: 'shutting down' });
        return attached ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'rebuilding read models' });
      }
      if (path === '/metrics') {
        route = path;
        res.writeHead(200, { 'content-type': registry.contentType });
        return res.end(await registry.metrics());
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        route = 'method';
        res.setHeader('allow', 'GET, HEAD');
        return json(res, 405, { error: { code: 'METHOD_NOT_ALLOWED', field: null, message: 'the HTTP API is read-only; writes go through gRPC' } });
      }
      if (path.startsWith('/assets/')) {
        route = 'assets';
        return asset(res, path.slice('/assets/'.length));
      }
      if (!attached) {
        route = 'starting';
        return json(res, 503, { error: { code: 'UNAVAILABLE', field: null, message: 'the server is rebuilding its read models; try again shortly' } });
      }
      const { app, pull, streams, workplans, runners } = attached;
      const q = queryOf(url);
      const m = /^\/api\/workplans\/([^/]+)(\/(events|explain|stream))?$/.exec(path);
      if (path === '/api/workplans') {
        route = '/api/workplans';
        const { filter, limit } = parse(listQuery, q);
        await app.durable();
        return json(res, 200, listWorkPlans(app, filter, limit));
      }
      if (path === '/api/workplans-stream') {
        route = 'sse';
        const { filter, limit } = parse(listQuery, q);
        return workplans.serve(req, res, filter, limit);
      }
      if (path === '/api/runners') {
        route = '/api/runners';
        await app.durable();
        return json(res, 200, runnersView(app, pull));
      }
      if (path === '/api/runners/stream') {
        route = 'sse';
        return runners.serve(req, res);
      }
      if (m) {
        route = m[3] ? `/api/workplans/:id/${m[3] === 'stream' ? 'stream' : m[3]}` : '/api/workplans/:id';
        const id = parse(workPlanId, { work_plan_id: decode(m[1]!) }).work_plan_id;
        switch (m[3]) {
          case undefined: {
            const { version, summary } = parse(stateQuery, q);
            if (summary) {
              await app.durable();
              return json(res, 200, { workPlan: workPlanSummary(app, id) });
            }
            const state = await workPlanState(app, id, version);
            await app.durable();
            return json(res, 200, state);
          }
          case 'events': {
            const { after, limit, type } = parse(eventsQuery, q);
            await app.durable();
            return json(res, 200, eventPage(app, { workPlanId: id, after, limit, types: type }));
          }
          case 'explain': {
            const { node } = parse(explainQuery, q);
            await app.durable();
            return json(res, 200, await explain(app, id, node));
          }
          case 'stream': {
            const header = req.headers['last-event-id'];
            const watch = watchRequest(id, parse(watchQuery, q), Array.isArray(header) ? header[0] : header);
            return streams.serve(req, res, watch, fail);
          }
        }
      }
      if (path.startsWith('/api/')) {
        route = 'api-unknown';
        return json(res, 404, { error: { code: 'NOT_FOUND', field: null, message: `no API route ${path}` } });
      }
      // The pages: one app, routed in the browser. An unknown workplan still gets the app (it says so), with 404.
      route = 'page';
      const page = /^\/workplans\/([^/]+)$/.exec(path);
      let status = 200;
      if (page) {
        const raw = decode(page[1]!);
        status = raw === null || !/^[^\s\p{C}]{1,256}$/u.test(raw) ? 400 : app.models.workplan(raw) ? 200 : 404;
      } else if (path !== '/' && path !== '/workplans' && path !== '/runners') status = 404;
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(INDEX_HTML);
    })().catch(fail);
  });

  // Idle keep-alive connections are closed by the client first (undici after 4 s): a server closing one just as
  // the client reuses it would fail that request.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  const bound = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
  // Until the gRPC server is up, this must not be what keeps the process alive (a failed start must exit).
  server.unref();
  const address = `${host.includes(':') ? `[${host}]` : host}:${bound}`;

  return {
    address,
    port: bound,
    attach(app, options) {
      observeApp(app);
      attached = {
        app,
        pull: options.pull,
        streams: new WorkPlanStreams(app, log, options.watchBuffer),
        workplans: new WorkPlansFeed(app),
        runners: new RunnersFeed(app, options.pull),
      };
      server.ref();
    },
    drain() {
      draining = true;
      if (!attached) return;
      attached.streams.close();
      attached.workplans.close();
      attached.runners.close();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}

function decode(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

async function asset(res: ServerResponse, name: string): Promise<void> {
  const type = ASSETS[name];
  if (!type) return json(res, 404, { error: { code: 'NOT_FOUND', field: null, message: `no asset ${name}` } });
  let body: Buffer;
  try {
    body = await readFile(WEB_DIR + name);
  } catch {
    return json(res, 404, { error: { code: 'NOT_FOUND', field: null, message: `asset ${name} is not built; run "npm run build:web"` } });
  }
  res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache' });
  res.end(body);
}

const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>TurboCI-Lite</title>
<link rel="stylesheet" href="/assets/app.css">
</head>
<body>
<div id="app"><p class="loading">Loading…</p></div>
<noscript>The TurboCI-Lite web UI needs JavaScript.</noscript>
<script type="module" src="/assets/app.js"></script>
</body>
</html>
`;

// The workplan graph: checks and stages as boxes, dependencies (solid) and assignments (dashed) as edges, laid out by
// dagre (layered, left to right). The layout is recomputed only when the set of nodes or edges changes; a state
// change only recolours.
import dagre from '@dagrejs/dagre';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { AnyNode, Stage } from './api.js';

const W = 168;
const H = 40;

export interface Layout {
  width: number;
  height: number;
  pos: Map<string, { x: number; y: number }>;
  edges: { from: string; to: string; kind: 'dependency' | 'assignment'; points: { x: number; y: number }[] }[];
}

/** The edges of the graph (only between nodes that exist). */
export function edgesOf(nodes: ReadonlyMap<string, AnyNode>): Layout['edges'] {
  const out: Layout['edges'] = [];
  for (const [key, n] of nodes) {
    for (const e of n.node.dependencies?.edges ?? []) {
      const from = `${e.kind}:${e.id}`;
      if (nodes.has(from)) out.push({ from, to: key, kind: 'dependency', points: [] });
    }
    if (n.kind === 'stage') {
      for (const a of n.node.assignments) {
        const to = `check:${a.checkId}`;
        if (nodes.has(to)) out.push({ from: key, to, kind: 'assignment', points: [] });
      }
    }
  }
  return out;
}

/** A signature of the structure: the layout is reused while it is unchanged. */
export function structureOf(nodes: ReadonlyMap<string, AnyNode>): string {
  const edges = edgesOf(nodes).map((e) => `${e.from}>${e.to}`);
  return `${[...nodes.keys()].join('|')}#${edges.join('|')}`;
}

export function layout(nodes: ReadonlyMap<string, AnyNode>): Layout {
  const g = new dagre.graphlib.Graph({ multigraph: false });
  g.setGraph({ rankdir: 'LR', nodesep: 12, ranksep: 48, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const key of nodes.keys()) g.setNode(key, { width: W, height: H });
  const edges = edgesOf(nodes);
  for (const e of edges) g.setEdge(e.from, e.to);
  dagre.layout(g);
  const pos = new Map<string, { x: number; y: number }>();
  for (const key of nodes.keys()) {
    const n = g.node(key) as { x: number; y: number };
    pos.set(key, { x: n.x, y: n.y });
  }
  for (const e of edges) e.points = ((g.edge(e.from, e.to) as { points?: { x: number; y: number }[] } | undefined)?.points ?? []).slice();
  const graph = g.graph() as { width?: number; height?: number };
  return { width: Math.max(graph.width ?? 0, 200), height: Math.max(graph.height ?? 0, 80), pos, edges };
}

export function failed(n: AnyNode): boolean {
  return n.kind === 'check' ? n.node.results.some((r) => r.failure !== null) : n.node.failure !== null;
}

const lastAttempt = (s: Stage) => s.attempts[s.attempts.length - 1];

export function GraphView(props: {
  nodes: ReadonlyMap<string, AnyNode>;
  layout: Layout;
  selected: string | null;
  highlighted: string | null;
  onSelect: (key: string) => void;
}) {
  const [scale, setScale] = useState(1);
  const [fit, setFit] = useState(true);
  const { layout: l, nodes } = props;
  const scroller = useRef<HTMLDivElement>(null);
  // Fit the width while the user has not zoomed (never below 30 %: past that, scroll).
  useEffect(() => {
    const width = scroller.current?.clientWidth ?? 0;
    if (fit && width > 0) setScale(Math.max(0.3, Math.min(1, (width - 4) / l.width)));
  }, [l, fit]);
  const zoom = (s: number) => {
    setFit(false);
    setScale(s);
  };
  const paths = useMemo(
    () =>
      l.edges.map((e) => {
        const d = e.points.map((p, i) => `${i ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join('');
        return <path key={`${e.from}>${e.to}`} d={d} class={`edge ${e.kind}`} marker-end="url(#arrow)" />;
      }),
    [l],
  );
  return (
    <div class="graph-wrap">
      <div class="zoom">
        <button onClick={() => zoom(Math.min(2, scale * 1.25))} title="zoom in">
          +
        </button>
        <button onClick={() => zoom(Math.max(0.1, scale / 1.25))} title="zoom out">
          −
        </button>
        <button onClick={() => zoom(1)} title="actual size">
          1:1
        </button>
        <button onClick={() => setFit(true)} title="fit the width" class={fit ? 'on' : ''}>
          fit
        </button>
        <span class="legend">
          <i class="edge-key dependency" /> depends on <i class="edge-key assignment" /> assigned to
        </span>
      </div>
      <div class="graph-scroll" ref={scroller}>
        <svg id="graph" width={l.width * scale} height={l.height * scale} viewBox={`0 0 ${l.width} ${l.height}`} data-nodes={nodes.size}>
          <defs>
            <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
              <path d="M0,0L10,5L0,10z" class="arrow" />
            </marker>
          </defs>
          <g>{paths}</g>
          <g>
            {[...nodes].map(([key, n]) => {
              const p = l.pos.get(key);
              if (!p) return null;
              const attempt = n.kind === 'stage' ? lastAttempt(n.node) : undefined;
              const bad = failed(n);
              const cls = `node ${n.kind} s-${n.node.state}${bad ? ' failed' : ''}${props.selected === key ? ' selected' : ''}${props.highlighted === key ? ' highlighted' : ''}`;
              return (
                <g
                  key={key}
                  class={cls}
                  data-node={key}
                  data-state={n.node.state}
                  data-attempt-state={attempt?.state ?? ''}
                  transform={`translate(${p.x - W / 2},${p.y - H / 2})`}
                  onClick={() => props.onSelect(key)}
                >
                  <rect width={W} height={H} rx={n.kind === 'check' ? 14 : 3} />
                  <text x={8} y={16} class="id">
                    {n.kind === 'check' ? '◆ ' : '▶ '}
                    {n.node.id.length > 20 ? `${n.node.id.slice(0, 19)}…` : n.node.id}
                  </text>
                  <text x={8} y={32} class="state">
                    {n.node.state}
                    {attempt ? ` · #${attempt.idx} ${attempt.state}` : ''}
                    {bad ? ' · failed' : ''}
                  </text>
                </g>
              );
            })}
          </g>
        </svg>
      </div>
    </div>
  );
}

// Summarizes a V8 heap snapshot (.heapsnapshot) by what holds the memory: `node scripts/heap-summary.mjs AT_REST
// [BEFORE] [--per N] [--top K]`. Each object counts its own size plus its private backing stores (elements,
// properties, Map/Set hash tables: internal arrays only it references). Plain objects are grouped by shape (their
// property names), so the per-node objects of the read models can be told apart. With BEFORE, its figures are
// subtracted; with --per N, sizes are also shown divided by N (bytes per node). Strings are summed by kind, with
// how many copies of the same value there are.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { per: { type: 'string' }, top: { type: 'string' } } });
const per = Number(values.per ?? '0');
const top = Number(values.top ?? '40');

function summarize(path) {
  const snap = JSON.parse(readFileSync(path, 'utf8'));
  const meta = snap.snapshot.meta;
  const nf = meta.node_fields.length;
  const ef = meta.edge_fields.length;
  const types = meta.node_types[0];
  const etypes = meta.edge_types[0];
  const [T, N, S, EC] = ['type', 'name', 'self_size', 'edge_count'].map((f) => meta.node_fields.indexOf(f));
  const [ET, EN, ETO] = ['type', 'name_or_index', 'to_node'].map((f) => meta.edge_fields.indexOf(f));
  const { nodes, edges, strings } = snap;
  const count = nodes.length / nf;
  const firstEdge = new Uint32Array(count + 1);
  for (let i = 0, e = 0; i < count; i++) {
    firstEdge[i] = e;
    e += nodes[i * nf + EC] * ef;
  }
  firstEdge[count] = edges.length;
  const retainers = new Uint32Array(count);
  for (let e = 0; e < edges.length; e += ef) if (etypes[edges[e + ET]] !== 'weak') retainers[edges[e + ETO] / nf]++;
  // The name of one edge that retains each node (the last one seen), to tell arrays, strings and maps apart by use.
  const via = new Array(count);
  for (let i = 0; i < count; i++) {
    for (let e = firstEdge[i]; e < firstEdge[i + 1]; e += ef) {
      const et = etypes[edges[e + ET]];
      if (et === 'weak' || et === 'shortcut') continue;
      const name = et === 'element' || et === 'hidden' ? '[]' : strings[edges[e + EN]];
      via[edges[e + ETO] / nf] = `${et === 'element' ? types[nodes[i * nf + T]] === 'array' ? 'table' : 'elem' : '.' + name}`;
    }
  }
  const labelled = (name) => ['Array', 'Map', 'Set', 'string', 'concatenated string', 'sliced string', 'number'].includes(name);
  const owned = new Uint8Array(count);
  const groups = new Map();
  const add = (key, size) => {
    const g = groups.get(key) ?? { count: 0, size: 0 };
    g.count++;
    g.size += size;
    groups.set(key, g);
  };
  const stringCopies = new Map();
  // Objects first, so that the backing stores they own are counted with them and not again on their own.
  for (let i = 0; i < count; i++) {
    const type = types[nodes[i * nf + T]];
    if (type !== 'object' && type !== 'closure' && type !== 'regexp') continue;
    let name = strings[nodes[i * nf + N]];
    let size = nodes[i * nf + S];
    const props = [];
    for (let e = firstEdge[i]; e < firstEdge[i + 1]; e += ef) {
      const et = etypes[edges[e + ET]];
      const to = edges[e + ETO] / nf;
      if (et === 'property' && props.length < 8) props.push(strings[edges[e + EN]]);
      if ((et === 'internal' || et === 'hidden') && retainers[to] === 1 && types[nodes[to * nf + T]] === 'array') {
        size += nodes[to * nf + S];
        owned[to] = 1;
      }
    }
    if (type === 'object' && name === 'Object') name = `{${props.join(',')}}`;
    add(`${type} ${name}${labelled(name) ? ` (${via[i]})` : ''}`, size);
    owned[i] = 1;
  }
  for (let i = 0; i < count; i++) {
    if (owned[i]) continue;
    const type = types[nodes[i * nf + T]];
    const size = nodes[i * nf + S];
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') {
      const value = strings[nodes[i * nf + N]];
      stringCopies.set(value, (stringCopies.get(value) ?? 0) + 1);
      add(`${type} (${via[i]})`, size);
    } else if (type === 'array' || type === 'hidden' || type === 'code') {
      add(`${type} ${strings[nodes[i * nf + N]]}`, size);
    } else {
      add(`${type}${labelled(type) ? ` (${via[i]})` : ''}`, size);
    }
  }
  let copies = 0;
  for (const n of stringCopies.values()) if (n > 1) copies += n - 1;
  return { groups, total: snap.snapshot.meta ? nodes.reduce((a, _, j) => (j % nf === S ? a + nodes[j] : a), 0) : 0, duplicateStrings: copies, distinctStrings: stringCopies.size };
}

const after = summarize(positionals[0]);
const before = positionals[1] ? summarize(positionals[1]) : null;
const rows = [...after.groups].map(([key, g]) => {
  const b = before?.groups.get(key) ?? { count: 0, size: 0 };
  return { key, count: g.count - b.count, size: g.size - b.size };
});
rows.sort((a, b) => b.size - a.size);
const total = after.total - (before?.total ?? 0);
const fmt = (n) => n.toLocaleString('en-US');
console.log(`total self size ${fmt(total)} B${per ? `, ${(total / per).toFixed(0)} B per node` : ''}`);
console.log(`strings: ${fmt(after.distinctStrings)} distinct values, ${fmt(after.duplicateStrings)} extra copies of a value${before ? ` (before: ${fmt(before.distinctStrings)} / ${fmt(before.duplicateStrings)})` : ''}`);
console.log(['bytes', per ? 'B/node' : '', 'count', per ? 'n/node' : '', 'what'].filter(Boolean).join('\t'));
for (const r of rows.slice(0, top)) {
  const cols = [fmt(r.size), per ? (r.size / per).toFixed(1) : null, fmt(r.count), per ? (r.count / per).toFixed(2) : null, r.key];
  console.log(cols.filter((c) => c !== null).join('\t'));
}

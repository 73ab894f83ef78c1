// The README and docs/ show commands a newcomer can run as written: turboci through npx (it is not on PATH after
// `npm ci`), subcommands that exist, example and script files that the build produces, links that resolve.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { COMMANDS } from '../../src/cli/main.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DOCS = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
/** The subcommands `turboci` dispatches (src/cli/main.ts). */
const SUBCOMMANDS = new Set(Object.keys(COMMANDS));

test('every command in README.md and docs/ runs as written', () => {
  for (const doc of DOCS) {
    const text = readFileSync(join(ROOT, doc), 'utf8');
    // Indented lines are commands, or what they print; a `turboci: ...` line is the CLI's own error output.
    const commands = text
      .split('\n')
      .filter((l) => /^ {4}\S/.test(l))
      .map((l) => l.trim().replace(/^\$ /, ''))
      .filter((l) => !l.startsWith('turboci: '));
    for (const line of commands) {
      for (const m of line.matchAll(/(?<![\w./-])(npx )?turboci ([^\s`]+)/g)) {
        assert.ok(m[1], `${doc}: "${line}" runs bare turboci (not on PATH after npm ci): use npx turboci`);
        assert.ok(SUBCOMMANDS.has(m[2]!) || m[2] === '--help', `${doc}: "${line}": no subcommand "${m[2]}"`);
      }
      for (const m of line.matchAll(/node (dist\/\S+\.js|bin\/turboci\.js)/g)) {
        assert.ok(existsSync(join(ROOT, m[1]!)), `${doc}: "${line}": ${m[1]} does not exist after npm ci`);
      }
    }
  }
});

test('README.md stays short and links every docs/ page; links between docs resolve', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.ok(readme.length < 12_000, `README.md is ${readme.length} bytes`);
  for (const doc of DOCS.filter((d) => d.startsWith('docs/'))) assert.ok(readme.includes(`](${doc})`), `README.md does not link ${doc}`);
  for (const doc of DOCS) {
    const text = readFileSync(join(ROOT, doc), 'utf8');
    for (const m of text.matchAll(/\]\(([^)#\s]+\.md)(#[^)]*)?\)/g)) {
      assert.ok(existsSync(join(ROOT, dirname(doc), m[1]!)), `${doc}: broken link ${m[1]}`);
    }
  }
});

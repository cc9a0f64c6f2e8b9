// The name tables the extension's own tests read (variables.ts, metrics.ts, acl.ts) keep their
// one-entry-per-line form, and, in a clone of the repository, agree with the extension's source.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { describe, test } from 'node:test';
import { REDIS_COMMANDS } from '../src/acl';
import { METRIC_UNITS } from '../src/metrics';
import * as variables from '../src/variables';

const ROOT = path.resolve(__dirname, '..', '..');
const REPO = path.resolve(ROOT, '..', '..');
const source = (file: string) => fs.readFileSync(path.join(ROOT, 'src', file), 'utf8');
/** A file of the extension's source; undefined outside a clone of the repository (a published package). */
const extension = (file: string) => {
  if (!fs.existsSync(path.join(REPO, 'extension', 'src'))) {
    return undefined;
  }
  // In a clone, a file that moved must fail the test, not skip it.
  return fs.readFileSync(path.join(REPO, 'extension', 'src', file), 'utf8');
};

describe('name tables', () => {
  test('variables.ts: one `export const NAME = \'NAME\';` per line, and nothing else exported', () => {
    const lines = [...source('variables.ts').matchAll(/^export const (\w+) = '(\w+)';$/gm)];
    assert.ok(lines.length > 0);
    for (const [, name, value] of lines) {
      assert.equal(name, value);
    }
    assert.deepEqual(lines.map((l) => l[1]).sort(), Object.keys(variables).sort());
  });

  test('every ADMISSION_* name the construct writes comes from variables.ts', () => {
    for (const file of fs.readdirSync(path.join(ROOT, 'src'))) {
      if (file !== 'variables.ts') {
        assert.doesNotMatch(source(file), /'ADMISSION_[A-Z_]+'/, `${file} spells a variable name itself`);
      }
    }
  });

  test('variables.ts names exist in the extension', (t) => {
    const config = extension('config/mod.rs');
    if (config === undefined) {
      t.skip('not in a clone of the repository');
      return;
    }
    const known = new Set([...config.matchAll(/pub const \w+: &str = "(ADMISSION_\w+)";/g)].map((m) => m[1]));
    for (const name of Object.keys(variables).filter((n) => n.startsWith('ADMISSION_'))) {
      assert.ok(known.has(name), `${name} is not an extension variable`);
    }
  });

  test('metrics.ts: one `  Name: \'Unit\',` per line, the same as the extension\'s table', (t) => {
    const lines = [...source('metrics.ts').matchAll(/^ {2}(\w+): '([\w/]+)',$/gm)].map((m) => [m[1], m[2]]);
    assert.deepEqual(lines, Object.entries(METRIC_UNITS));
    const rust = extension('decision/metrics.rs');
    if (rust === undefined) {
      t.skip('not in a clone of the repository');
      return;
    }
    // Resolve the Rust table: constants and arrays of names, then the (name, unit) pairs.
    const consts = new Map<string, string>();
    for (const m of rust.matchAll(/pub const (\w+): &str = "(\w+)";/g)) consts.set(m[1], m[2]);
    for (const m of rust.matchAll(/const (\w+): &str = "([\w/]+)";/g)) consts.set(m[1], m[2]);
    for (const m of rust.matchAll(/pub const (\w+): \[&str; \d+\] = \[([^\]]+)\];/gs)) {
      [...m[2].matchAll(/"(\w+)"/g)].forEach((n, i) => consts.set(`${m[1]}[${i}]`, n[1]));
    }
    const table = rust.slice(rust.indexOf('pub const METRICS'));
    const pairs = [...table.slice(0, table.indexOf('];')).matchAll(/\(([\w[\]]+), (\w+)\)/g)].map((m) => [consts.get(m[1]), consts.get(m[2])]);
    assert.deepEqual(pairs, Object.entries(METRIC_UNITS));
  });

  test('acl.ts: one command per line, covering every command the coordinator sends or its scripts call', (t) => {
    const lines = [...source('acl.ts').matchAll(/^ {2}'([a-z|]+)',$/gm)].map((m) => m[1]);
    assert.deepEqual(lines, REDIS_COMMANDS);
    const dir = path.join(REPO, 'extension', 'src', 'coordinator');
    if (!fs.existsSync(dir)) {
      t.skip('not in a clone of the repository');
      return;
    }
    const used = new Set<string>();
    for (const file of fs.readdirSync(dir)) {
      const text = fs.readFileSync(path.join(dir, file), 'utf8');
      for (const m of text.matchAll(/redis\.call\('(\w+)'/g)) used.add(m[1].toLowerCase());
      for (const m of text.matchAll(/redis::cmd\("(\w+)"\)/g)) used.add(m[1].toLowerCase());
    }
    assert.ok(used.size > 0);
    for (const command of used) {
      assert.ok(REDIS_COMMANDS.includes(command), `the extension uses ${command}, which the ElastiCache user may not run`);
    }
  });
});

import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { describe, test } from 'node:test';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ExampleStack } from '../example/app';
import { LAYERS } from './helpers';

const ROOT = path.resolve(__dirname, '..', '..');
const SNAPSHOT = path.join(ROOT, 'test', '__snapshots__', 'example.template.json');

function example(): { app: App; stack: ExampleStack } {
  process.env.LAMBDA_ADMISSION_LAYER_DIR = LAYERS;
  const app = new App({ analyticsReporting: false });
  return { app, stack: new ExampleStack(app, 'LambdaAdmissionExample') };
}

/** The template without what changes with every build of the layer or the handler: asset hashes. */
function normalized(template: any): any {
  return JSON.parse(JSON.stringify(template), (key, value) => {
    if (key === 'S3Key' && typeof value === 'string') {
      return '<asset>.zip';
    }
    if (typeof value === 'string' && /^[0-9a-f]{64}\.zip$/.test(value)) {
      return '<asset>.zip';
    }
    return value;
  });
}

describe('the example app', () => {
  test('passes cdk-nag\'s AwsSolutions checks, every finding acknowledged with a reason', () => {
    const { app, stack } = example();
    const report = new AwsSolutionsChecks(app, { verbose: true }).validateScope(stack);
    assert.deepEqual(
      report.violations.map((v) => `${v.severity} ${v.ruleName}: ${v.violatingResources.map((r) => r.constructPath ?? r.resourceLogicalId).join(', ')}`),
      [],
    );
    assert.equal(report.success, true);
  });

  test('matches its snapshot (asset hashes aside); UPDATE_SNAPSHOTS=1 rewrites it', () => {
    const template = normalized(Template.fromStack(example().stack).toJSON());
    if (process.env.UPDATE_SNAPSHOTS === '1') {
      fs.mkdirSync(path.dirname(SNAPSHOT), { recursive: true });
      fs.writeFileSync(SNAPSHOT, JSON.stringify(template, null, 1) + '\n');
    }
    assert.ok(fs.existsSync(SNAPSHOT), `no snapshot at ${SNAPSHOT}: run the tests once with UPDATE_SNAPSHOTS=1 and review it`);
    assert.deepEqual(template, JSON.parse(fs.readFileSync(SNAPSHOT, 'utf8')));
  });

  test('the lines a user writes fit in one delimited block of at most 15 lines', () => {
    for (const [file, comment] of [['example/app.ts', '//'], ['example-python/app.py', '#']]) {
      const lines = fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n');
      const begin = lines.findIndex((l) => l.trim() === `${comment} lambda-admission: begin`);
      const end = lines.findIndex((l) => l.trim() === `${comment} lambda-admission: end`);
      assert.ok(begin >= 0 && end > begin, `${file} has no lambda-admission block`);
      const block = lines.slice(begin + 1, end);
      assert.ok(block.length <= 15, `${file}: ${block.length} lines`);
      assert.ok(block.every((l) => l.trim() !== ''), `${file}: the block has blank lines`);
      assert.equal(lines.filter((l) => l.includes('lambda-admission: begin')).length, 1, `${file}: one block`);
    }
  });

  test('this package\'s README quotes the TypeScript block verbatim', () => {
    const lines = fs.readFileSync(path.join(ROOT, 'example', 'app.ts'), 'utf8').split('\n');
    const block = lines.slice(lines.findIndex((l) => l.includes('lambda-admission: begin')) + 1, lines.findIndex((l) => l.includes('lambda-admission: end')));
    const indent = Math.min(...block.map((l) => l.length - l.trimStart().length));
    const quoted = block.map((l) => l.slice(indent)).join('\n');
    assert.ok(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8').includes(`\`\`\`ts\n${quoted}\n\`\`\``));
  });
});

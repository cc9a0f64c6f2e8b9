import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { layerSearch } from '../src/layer';

// The tests never look at the package's layer/ or the clone's dist/: whether a zip is found must
// not depend on what was built on this machine.
layerSearch.packageRoot = undefined;

/** The smallest valid zip: an end-of-central-directory record and nothing else. */
const EMPTY_ZIP = Buffer.from([0x50, 0x4b, 0x05, 0x06, ...new Array(18).fill(0)]);

/** A temporary directory holding stand-in layer zips for the given architectures. */
export function standInLayers(archs: string[] = ['x86_64', 'arm64']): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lambda-admission-layer-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  for (const arch of archs) {
    fs.writeFileSync(path.join(dir, `lambda-admission-${arch}.zip`), EMPTY_ZIP);
  }
  return dir;
}

export const LAYERS = standInLayers();

export function stack(): Stack {
  const app = new App({ analyticsReporting: false });
  return new Stack(app, 'Test', { env: { account: '123456789012', region: 'us-east-1' } });
}

export interface FnOptions {
  readonly reserved?: number;
  readonly architecture?: lambda.Architecture;
  readonly runtime?: lambda.Runtime;
  readonly props?: Partial<lambda.FunctionProps>;
}

export function fn(scope: Stack, id = 'Fn', o: FnOptions = {}): lambda.Function {
  return new lambda.Function(scope, id, {
    runtime: o.runtime ?? lambda.Runtime.PYTHON_3_12,
    handler: 'app.handler',
    code: lambda.Code.fromInline('def handler(event, context):\n    return {"statusCode": 200}\n'),
    reservedConcurrentExecutions: o.reserved,
    architecture: o.architecture,
    ...o.props,
  });
}

/** The function's environment variables in the template. */
export function envOf(template: { findResources(type: string): Record<string, any> }, logicalIdPrefix: string): Record<string, unknown> {
  const fns = template.findResources('AWS::Lambda::Function');
  const id = Object.keys(fns).find((k) => k.startsWith(logicalIdPrefix));
  if (id === undefined) {
    throw new Error(`no function ${logicalIdPrefix} in ${Object.keys(fns).join(', ')}`);
  }
  return fns[id].Properties.Environment?.Variables ?? {};
}

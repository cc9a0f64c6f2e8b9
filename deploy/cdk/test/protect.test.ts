import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, test } from 'node:test';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AdaptiveController, AdmissionMode, Coordinator, LambdaAdmission } from '../src';
import { findZip, layerSearch, searchDirectories } from '../src/layer';
import { LAYERS, envOf, fn, stack, standInLayers } from './helpers';

function protectOne(options: Parameters<LambdaAdmission['protect']>[1] = {}, reserved: number | undefined = 20) {
  const s = stack();
  const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS });
  const protection = admission.protect(fn(s, 'Fn', { reserved }), options);
  return { s, admission, protection, t: Template.fromStack(s) };
}

describe('protect()', () => {
  test('the limit defaults to the reserved concurrency', () => {
    const { t, protection } = protectOne();
    assert.equal(envOf(t, 'Fn').ADMISSION_LIMIT, '20');
    assert.equal(protection.limit, 20);
  });

  test('an explicit limit below the reservation, and a limit without one', () => {
    assert.equal(envOf(protectOne({ limit: 12 }).t, 'Fn').ADMISSION_LIMIT, '12');
    assert.equal(envOf(protectOne({ limit: 7 }, undefined).t, 'Fn').ADMISSION_LIMIT, '7');
  });

  test('one layer version per architecture, shared by the functions', () => {
    const s = stack();
    const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.local(), layerDirectory: LAYERS });
    admission.protect(fn(s, 'A', { reserved: 1 }));
    admission.protect(fn(s, 'B', { reserved: 1 }));
    admission.protect(fn(s, 'C', { reserved: 1, architecture: lambda.Architecture.ARM_64 }));
    const t = Template.fromStack(s);
    const layers = t.findResources('AWS::Lambda::LayerVersion');
    assert.equal(Object.keys(layers).length, 2);
    const byArch = (arch: string) => Object.keys(layers).find((k) => (layers[k] as any).Properties.CompatibleArchitectures[0] === arch);
    const fns = t.findResources('AWS::Lambda::Function');
    const layersOf = (prefix: string) => (Object.entries(fns).find(([k]) => k.startsWith(prefix))![1] as any).Properties.Layers;
    assert.deepEqual(layersOf('A'), [{ Ref: byArch('x86_64') }]);
    assert.deepEqual(layersOf('B'), [{ Ref: byArch('x86_64') }]);
    assert.deepEqual(layersOf('C'), [{ Ref: byArch('arm64') }]);
  });

  test('an arm64 function gets the arm64 zip', () => {
    const s = stack();
    // Only the arm64 zip exists here: an x86_64 lookup would fail.
    const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.local(), layerDirectory: standInLayers(['arm64']) });
    admission.protect(fn(s, 'Fn', { reserved: 1, architecture: lambda.Architecture.ARM_64 }));
    const t = Template.fromStack(s);
    t.resourceCountIs('AWS::Lambda::LayerVersion', 1);
    t.hasResourceProperties('AWS::Lambda::LayerVersion', { CompatibleArchitectures: ['arm64'] });
  });

  test('layer ARNs stand in for zips', () => {
    const s = stack();
    const arn = 'arn:aws:lambda:us-east-1:123456789012:layer:lambda-admission:7';
    const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.local(), layerArns: { x86_64: arn }, layerDirectory: standInLayers([]) });
    admission.protect(fn(s, 'Fn', { reserved: 1 }));
    const t = Template.fromStack(s);
    t.resourceCountIs('AWS::Lambda::LayerVersion', 0);
    t.hasResourceProperties('AWS::Lambda::Function', { Layers: [arn] });
  });

  test('mode, classes, tenants and the escape hatch', () => {
    const { t } = protectOne({
      mode: AdmissionMode.OBSERVE,
      exempt: ['GET /health', 'header:stripe-signature'],
      critical: ['POST /checkout', 'POST /orders/*/pay'],
      sheddable: ['GET /recommendations/*'],
      sheddableAt: 0.4,
      criticalReserve: 0.15,
      tenant: 'header:x-tenant',
      tenantOverAt: 3,
      tenantReserve: 0.25,
      environment: { ADMISSION_RETRY_AFTER_MAX: '10', ADMISSION_LIMIT: '18' },
    });
    const env = envOf(t, 'Fn');
    assert.equal(env.ADMISSION_MODE, 'observe');
    assert.equal(env.ADMISSION_EXEMPT, 'GET /health,header:stripe-signature');
    assert.equal(env.ADMISSION_CRITICAL, 'POST /checkout,POST /orders/*/pay');
    assert.equal(env.ADMISSION_SHEDDABLE, 'GET /recommendations/*');
    assert.equal(env.ADMISSION_SHEDDABLE_AT, '0.4');
    assert.equal(env.ADMISSION_CRITICAL_RESERVE, '0.15');
    assert.equal(env.ADMISSION_TENANT, 'header:x-tenant');
    assert.equal(env.ADMISSION_TENANT_OVER_AT, '3');
    assert.equal(env.ADMISSION_TENANT_RESERVE, '0.25');
    assert.equal(env.ADMISSION_RETRY_AFTER_MAX, '10');
    // Set last: the escape hatch wins over what the construct wrote.
    assert.equal(env.ADMISSION_LIMIT, '18');
  });

  test('adaptive: limit adaptive, ceiling N, and the Lambda API read for the platform limit', () => {
    const { t } = protectOne({ adaptive: { controller: AdaptiveController.AIMD, windowMs: 500, min: 4 } });
    const env = envOf(t, 'Fn');
    assert.equal(env.ADMISSION_LIMIT, 'adaptive');
    assert.equal(env.ADMISSION_LIMIT_MAX, '20');
    assert.equal(env.ADMISSION_ADAPTIVE, 'aimd');
    assert.equal(env.ADMISSION_ADAPTIVE_WINDOW_MS, '500');
    assert.equal(env.ADMISSION_LIMIT_MIN, '4');
    t.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: ['lambda:GetFunctionConcurrency', 'lambda:GetAccountSettings'], Resource: '*' })]) },
    });
  });

  test('the limit from the Lambda API: ADMISSION_LIMIT unset, read permissions granted', () => {
    const { t, protection } = protectOne({ limitFromLambdaApi: true });
    assert.equal(envOf(t, 'Fn').ADMISSION_LIMIT, undefined);
    assert.equal(protection.limit, 20);
    t.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: ['lambda:GetFunctionConcurrency', 'lambda:GetAccountSettings'], Resource: '*' })]) },
    });
  });

  test('a fixed limit needs no Lambda API permission', () => {
    const { t } = protectOne();
    assert.equal(JSON.stringify(t.findResources('AWS::IAM::Policy')).includes('lambda:Get'), false);
  });

  test('Managed Instances with the local coordinator: each environment\'s own concurrency, no warning', () => {
    const s = stack();
    const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.local(), layerDirectory: LAYERS });
    const f = fn(s, 'Fn', { reserved: 30 });
    // What capacityProvider.addFunction(fn) sets; attach the provider before protect().
    (f.node.defaultChild as lambda.CfnFunction).capacityProviderConfig = {
      lambdaManagedInstancesCapacityProviderConfig: { capacityProviderArn: 'arn:aws:lambda:us-east-1:123456789012:capacity-provider:cp' },
    };
    admission.protect(f);
    // ADMISSION_LIMIT unset: the extension takes AWS_LAMBDA_MAX_CONCURRENCY, one environment's
    // limit; the reservation (30) is the fleet's.
    assert.equal(envOf(Template.fromStack(s), 'Fn').ADMISSION_LIMIT, undefined);
    Annotations.fromStack(s).hasNoWarning('*', Match.anyValue());
  });

  test('a function is protected once', () => {
    const s = stack();
    const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.local(), layerDirectory: LAYERS });
    const f = fn(s, 'Fn', { reserved: 1 });
    admission.protect(f);
    assert.throws(() => admission.protect(f), /already protected/);
  });

  test('container image functions are refused', () => {
    const s = stack();
    const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.local(), layerDirectory: LAYERS });
    const image = new lambda.Function(s, 'Image', {
      runtime: lambda.Runtime.FROM_IMAGE,
      handler: lambda.Handler.FROM_IMAGE,
      code: lambda.Code.fromEcrImage(ecr.Repository.fromRepositoryName(s, 'Repo', 'repo')),
      reservedConcurrentExecutions: 2,
    });
    assert.throws(() => admission.protect(image), /container image/);
  });

  test('provided.* runtimes get a warning: they ignore AWS_LAMBDA_EXEC_WRAPPER', () => {
    const s = stack();
    const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.local(), layerDirectory: LAYERS });
    admission.protect(fn(s, 'Fn', { reserved: 1, runtime: lambda.Runtime.PROVIDED_AL2023, props: { code: lambda.Code.fromAsset(LAYERS) } }));
    Annotations.fromStack(s).hasWarning('/Test/Fn', Match.stringLikeRegexp('ignores AWS_LAMBDA_EXEC_WRAPPER'));
  });
});

describe('where the layer zips are looked for', () => {
  test('the named directory, the package\'s layer/, then the clone\'s dist/ (not from node_modules)', () => {
    const saved = layerSearch.packageRoot;
    try {
      layerSearch.packageRoot = path.join(path.sep, 'repo', 'deploy', 'cdk');
      assert.deepEqual(searchDirectories('/x'), [path.resolve('/x'), '/repo/deploy/cdk/layer', '/repo/dist']);
      layerSearch.packageRoot = path.join(path.sep, 'app', 'node_modules', 'lambda-admission-cdk');
      assert.deepEqual(searchDirectories(), ['/app/node_modules/lambda-admission-cdk/layer']);
    } finally {
      layerSearch.packageRoot = saved;
    }
  });

  test('a zip in the package\'s layer/ is found without a layerDirectory', () => {
    const saved = layerSearch.packageRoot;
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lambda-admission-package-'));
    process.on('exit', () => fs.rmSync(root, { recursive: true, force: true }));
    fs.mkdirSync(path.join(root, 'layer'));
    fs.copyFileSync(path.join(LAYERS, 'lambda-admission-x86_64.zip'), path.join(root, 'layer', 'lambda-admission-x86_64.zip'));
    try {
      layerSearch.packageRoot = root;
      assert.equal(findZip('x86_64'), path.join(root, 'layer', 'lambda-admission-x86_64.zip'));
      assert.equal(findZip('arm64'), undefined);
    } finally {
      layerSearch.packageRoot = saved;
    }
  });
});

// One test per synth-time check: each fails if its check is removed.
import { strict as assert } from 'assert';
import { describe, test } from 'node:test';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AdmissionMode, Coordinator, LambdaAdmission } from '../src';
import { LAYERS, fn, stack, standInLayers } from './helpers';

function admission(s = stack(), coordinator = Coordinator.valkeyServerless()) {
  return { s, a: new LambdaAdmission(s, 'Admission', { coordinator, layerDirectory: LAYERS }) };
}

describe('synth-time checks', () => {
  test('a coordinator must be chosen', () => {
    assert.throws(() => new LambdaAdmission(stack(), 'Admission', { layerDirectory: LAYERS }), /choose a coordinator: Coordinator.valkeyServerless\(\)/);
  });

  test('1. no reserved concurrency and no limit', () => {
    const { s, a } = admission();
    assert.throws(() => a.protect(fn(s, 'Fn')), /has no reserved concurrency and no limit: set reservedConcurrentExecutions/);
  });

  test('2. a limit above the reserved concurrency', () => {
    const { s, a } = admission();
    assert.throws(() => a.protect(fn(s, 'Fn', { reserved: 10 }), { limit: 11 }), /limit 11 is above .*reserved concurrency 10/);
  });

  test('3. a stage throttle above 10 × N', () => {
    const { s, a } = admission();
    const f = fn(s, 'Fn', { reserved: 10 });
    const api = new apigateway.LambdaRestApi(s, 'Api', { handler: f, deployOptions: { throttlingRateLimit: 101, throttlingBurstLimit: 10 } });
    assert.throws(() => a.protect(f, { api }), /throttles \/\* \* at 101 requests a second, above Lambda's invoke-rate cap .*10 × 10 = 100/);
  });

  test('3. a method throttle above 10 × N', () => {
    const { s, a } = admission();
    const f = fn(s, 'Fn', { reserved: 10 });
    const api = new apigateway.LambdaRestApi(s, 'Api', {
      handler: f,
      deployOptions: { methodOptions: { '/{proxy+}/GET': { throttlingRateLimit: 500 } } },
    });
    assert.throws(() => a.protect(f, { api }), /throttles \/\{proxy\+\} GET at 500/);
  });

  test('4. a VPC function in isolated subnets has no route to the public endpoint', () => {
    const { s, a } = admission();
    const vpc = new ec2.Vpc(s, 'Vpc', { natGateways: 0, subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
    a.protect(fn(s, 'Fn', { reserved: 10, props: { vpc, vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED } } }));
    Annotations.fromStack(s).hasWarning('/Test/Fn', Match.stringLikeRegexp('subnets are isolated or public'));
  });

  test('4. subnets with a NAT route raise no warning, nor does a function outside a VPC', () => {
    const { s, a } = admission();
    const vpc = new ec2.Vpc(s, 'Vpc', { natGateways: 1 });
    a.protect(fn(s, 'InVpc', { reserved: 10, props: { vpc, vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } } }));
    a.protect(fn(s, 'NoVpc', { reserved: 10 }));
    Annotations.fromStack(s).hasNoWarning('*', Match.stringLikeRegexp('coordinator is a public endpoint'));
  });

  test('4. subnets this app cannot classify get a warning', () => {
    const { s, a } = admission();
    const vpc = ec2.Vpc.fromVpcAttributes(s, 'Imported', { vpcId: 'vpc-0123456789abcdef0', availabilityZones: ['us-east-1a'], privateSubnetIds: ['subnet-0123456789abcdef1'] });
    const subnet = ec2.Subnet.fromSubnetId(s, 'Loose', 'subnet-0123456789abcdef9');
    a.protect(fn(s, 'Fn', { reserved: 10, props: { vpc, vpcSubnets: { subnets: [subnet] }, allowPublicSubnet: true } }));
    Annotations.fromStack(s).hasWarning('/Test/Fn', Match.stringLikeRegexp('could not tell'));
  });

  test('5. an architecture with neither a layer ARN nor a zip', () => {
    const s = stack();
    const a = new LambdaAdmission(s, 'Admission', {
      coordinator: Coordinator.local(),
      layerDirectory: standInLayers([]),
      layerArns: { x86_64: 'arn:aws:lambda:us-east-1:123456789012:layer:lambda-admission:1' },
    });
    a.protect(fn(s, 'X86', { reserved: 1 }));
    assert.throws(
      () => a.protect(fn(s, 'Arm', { reserved: 1, architecture: lambda.Architecture.ARM_64 })),
      /no arm64 layer for .*layerArns has x86_64 only.*layer-build\/build.sh arm64.*layerArns: \{ arm64:/s,
    );
  });

  test('layerArns keys are architectures', () => {
    assert.throws(
      () => new LambdaAdmission(stack(), 'Admission', { coordinator: Coordinator.local(), layerArns: { x86: 'arn' } }),
      /layerArns has the key "x86"/,
    );
  });

  test('the local coordinator on an on-demand function is accepted with a warning', () => {
    const { s, a } = admission(stack(), Coordinator.local());
    a.protect(fn(s, 'Fn', { reserved: 10 }));
    Annotations.fromStack(s).hasWarning('/Test/Fn', Match.stringLikeRegexp('Coordinator.local\\(\\).*nothing fleet-wide is shed'));
  });

  test('the local coordinator with a limit of 1 needs no warning', () => {
    const { s, a } = admission(stack(), Coordinator.local());
    a.protect(fn(s, 'Fn', { reserved: 1 }));
    Annotations.fromStack(s).hasNoWarning('*', Match.anyValue());
  });

  test('the Lambda API limit needs a shared coordinator', () => {
    const { s, a } = admission(stack(), Coordinator.local());
    assert.throws(() => a.protect(fn(s, 'Fn', { reserved: 10 }), { limitFromLambdaApi: true }), /only with a shared coordinator/);
  });

  test('adaptive needs a shared coordinator on demand', () => {
    const { s, a } = admission(stack(), Coordinator.local());
    assert.throws(() => a.protect(fn(s, 'Fn', { reserved: 10 }), { adaptive: {} }), /needs a shared coordinator or Lambda Managed Instances/);
  });

  test('another wrapper set after protect() fails synthesis', () => {
    const { s, a } = admission();
    const f = fn(s, 'Fn', { reserved: 10 });
    a.protect(f);
    f.addEnvironment('AWS_LAMBDA_EXEC_WRAPPER', '/opt/datadog_wrapper');
    assert.throws(() => Template.fromStack(s), /AWS_LAMBDA_EXEC_WRAPPER="\/opt\/datadog_wrapper", set after protect\(\)/);
  });

  test('invalid option values name their variable', () => {
    const cases: [object, RegExp][] = [
      [{ mode: 'shed' as AdmissionMode }, /mode \(ADMISSION_MODE\) is "shed"/],
      [{ tenant: 'cookie:session' }, /tenant \(ADMISSION_TENANT\) is "cookie:session"/],
      [{ tenant: 'header:' }, /ADMISSION_TENANT.*valid HTTP header name/],
      [{ sheddable: ['GET /a'], sheddableAt: 0 }, /sheddableAt \(ADMISSION_SHEDDABLE_AT\) is 0/],
      [{ critical: ['POST /pay'], criticalReserve: 1.5 }, /criticalReserve \(ADMISSION_CRITICAL_RESERVE\) is 1.5/],
      [{ tenant: 'apikey', tenantReserve: -0.1 }, /tenantReserve \(ADMISSION_TENANT_RESERVE\)/],
      [{ tenant: 'apikey', tenantOverAt: 0.5 }, /tenantOverAt \(ADMISSION_TENANT_OVER_AT\) is 0.5/],
      [{ exempt: ['get /health'] }, /exempt \(ADMISSION_EXEMPT\) has the rule "get \/health"/],
      [{ critical: ['POST /a,POST /b'] }, /one rule per array element/],
      [{ sheddable: ['GET /img*'] }, /ADMISSION_SHEDDABLE.*only as a whole segment/],
      [{ limit: 2.5 }, /limit \(ADMISSION_LIMIT\) is 2.5/],
      [{ adaptive: { windowMs: 50 } }, /ADMISSION_ADAPTIVE_WINDOW_MS/],
      [{ adaptive: { min: 30 } }, /adaptive.min \(ADMISSION_LIMIT_MIN\) is 30: expected a whole number from 1 to 20/],
      [{ sheddableAt: 0.5 }, /sheddableAt .* has no effect without sheddable rules/],
      [{ tenantOverAt: 2 }, /tenantOverAt .* has no effect without tenant/],
      [{ shedShareAlarmThreshold: 2 }, /shedShareAlarmThreshold/],
    ];
    for (const [options, message] of cases) {
      const { s, a } = admission();
      assert.throws(() => a.protect(fn(s, 'Fn', { reserved: 20 }), options), message, JSON.stringify(options));
    }
  });
});

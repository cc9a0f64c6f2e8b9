// Synthesizes stacks that use every option of the construct into the directory given as the
// first argument, for cfn-lint: the unit tests assert on templates in memory, this puts the
// same kinds of templates in front of CloudFormation's own schemas and rules.
//   node build/test/fixtures.js <outdir>
import * as path from 'path';
import { App, Stack } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AdaptiveController, AdmissionMode, Coordinator, DashboardMode, LambdaAdmission } from '../src';
import { LAYERS, fn } from './helpers';

const outdir = process.argv[2];
if (outdir === undefined) {
  throw new Error('usage: node build/test/fixtures.js <outdir>');
}
const app = new App({ outdir: path.resolve(outdir), analyticsReporting: false });

{
  // Valkey Serverless with cost caps; classes, tenants and adaptive; a VPC function; one dashboard.
  const s = new Stack(app, 'FixtureValkey');
  const vpc = new ec2.Vpc(s, 'Vpc', { natGateways: 1, maxAzs: 2 });
  const a = new LambdaAdmission(s, 'Admission', {
    coordinator: Coordinator.valkeyServerless({ maxEcpuPerSecond: 10_000, maxDataStorageGb: 1, timeoutMs: 20 }),
    layerDirectory: LAYERS,
    dashboard: DashboardMode.SHARED,
  });
  const api1 = fn(s, 'Orders', { reserved: 50, props: { vpc } });
  const rest = new apigateway.LambdaRestApi(s, 'Api', { handler: api1, proxy: false, cloudWatchRole: false, deployOptions: { throttlingRateLimit: 300, throttlingBurstLimit: 50 } });
  rest.root.addResource('{proxy+}').addMethod('ANY');
  a.protect(api1, {
    api: rest,
    exempt: ['GET /health'],
    critical: ['POST /checkout', 'header:x-priority=high'],
    sheddable: ['GET /recommendations/*'],
    sheddableAt: 0.4,
    criticalReserve: 0.15,
    tenant: 'apikey',
    tenantOverAt: 3,
    tenantReserve: 0.25,
    shedShareAlarmThreshold: 0.1,
  });
  a.protect(fn(s, 'Search', { reserved: 30, architecture: lambda.Architecture.ARM_64 }), {
    adaptive: { controller: AdaptiveController.AIMD, windowMs: 2000, min: 3 },
    mode: AdmissionMode.OBSERVE,
  });
}
{
  // An existing cache with IAM, the limit from the Lambda API; a layer ARN; per-function dashboards.
  const s = new Stack(app, 'FixtureRedis');
  const a = new LambdaAdmission(s, 'Admission', {
    coordinator: Coordinator.redis({ url: 'rediss://admission@orders-abc123.serverless.use1.cache.amazonaws.com:6379', iamCache: 'orders', timeoutMs: 5 }),
    layerArns: { x86_64: 'arn:aws:lambda:us-east-1:123456789012:layer:lambda-admission:3' },
  });
  const f = fn(s, 'Fn', { reserved: 100 });
  const rest = new apigateway.LambdaRestApi(s, 'Api', { handler: f, proxy: false, cloudWatchRole: false });
  rest.root.addResource('{proxy+}').addMethod('ANY');
  a.protect(f, { api: rest.deploymentStage, limitFromLambdaApi: true, environment: { ADMISSION_RETRY_AFTER_MAX: '10' } });
}
{
  // The local coordinator, without dashboards.
  const s = new Stack(app, 'FixtureLocal');
  const a = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.local(), layerDirectory: LAYERS, dashboard: DashboardMode.NONE });
  a.protect(fn(s, 'Fn', { reserved: 1 }));
}
app.synth();

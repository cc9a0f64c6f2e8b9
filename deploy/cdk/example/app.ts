// The example app: a Python function with reserved concurrency 20 behind a REST API, protected by
// lambda-admission with a fleet-wide count in ElastiCache Serverless for Valkey.
//
//   cd deploy/cdk && npm ci && npm run build && npm run build:dev
//   cd example && npx aws-cdk deploy    # once per account and region before: npx aws-cdk bootstrap
//
// (`npm run synth:example` writes example/cdk.out/ without deploying.)
//
// The layer zip comes from the repository's dist/ (layer-build/build.sh x86_64), or from the
// directory in LAMBDA_ADMISSION_LAYER_DIR when set (CI points it at a stand-in when dist/ is empty).
import * as path from 'path';
import { App, Stack, StackProps, Validations } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { Coordinator, LambdaAdmission } from '../src';

export class ExampleStack extends Stack {
  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);

    const fn = new lambda.Function(this, 'Api', {
      runtime: lambda.Runtime.PYTHON_3_12,
      handler: 'app.handler',
      code: lambda.Code.fromAsset(path.join(__dirname, '..', '..', 'example', 'handler')),
      reservedConcurrentExecutions: 20,
    });
    // No account-wide CloudWatch role: there is one per account and Region, and an example must
    // not create or replace it. One method (ANY /{proxy+}): API Gateway throttles each method on
    // its own, so a second method reaching the function would add another 8 × N a second.
    const api = new apigateway.RestApi(this, 'RestApi', { cloudWatchRole: false });
    api.root.addResource('{proxy+}').addMethod('ANY', new apigateway.LambdaIntegration(fn));

    // lambda-admission: begin
    const admission = new LambdaAdmission(this, 'Admission', {
      coordinator: Coordinator.valkeyServerless(),
      layerDirectory: process.env.LAMBDA_ADMISSION_LAYER_DIR, // unset: the repository's dist/
    });
    admission.protect(fn, { api });
    // lambda-admission: end

    // What cdk-nag's AwsSolutions pack flags here is the example's own API and function, not
    // lambda-admission's resources; each is acknowledged with why it stands in an example.
    Validations.of(api).acknowledge(
      { id: 'AwsSolutions-APIG4', reason: 'Public on purpose: the example shows overload answers to anonymous load, and nothing is behind it.' },
      { id: 'AwsSolutions-COG4', reason: 'Public on purpose (see APIG4): no user pool to authorize against.' },
      { id: 'AwsSolutions-APIG2', reason: 'A proxy integration hands every request to the function, which checks its own input; there is no model to validate.' },
      {
        id: 'AwsSolutions-APIG1',
        reason: 'API Gateway logs only through the account-wide CloudWatch role, which an example must not create or replace; the dashboard reads the stage metrics, which need no logs.',
      },
      { id: 'AwsSolutions-APIG6', reason: 'As APIG1: execution logging needs the account-wide CloudWatch role.' },
      { id: 'AwsSolutions-APIG3', reason: 'WAF filters by content, billed per request; volume, the example\'s subject, is what the stage throttle and the layer handle.' },
    );
    Validations.of(fn).acknowledge(
      {
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
        reason: 'The managed basic-execution policy only lets the function write its own logs, which the layer\'s metrics (EMF) need.',
      },
      { id: 'AwsSolutions-L1', reason: 'The example pins python3.12, the runtime the repository\'s handler tests run; the layer does not depend on the runtime version.' },
    );
  }
}

if (require.main === module) {
  const app = new App({ outdir: process.env.CDK_OUTDIR ?? 'cdk.out' });
  new ExampleStack(app, 'LambdaAdmissionExample');
  app.synth();
}

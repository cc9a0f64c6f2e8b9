import { strict as assert } from 'assert';
import * as path from 'path';
import { describe, test } from 'node:test';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Stack } from 'aws-cdk-lib';
import { Coordinator, LambdaAdmission } from '../src';
import { LAYERS, fn, stack } from './helpers';

function methodSettings(t: Template) {
  const stages = Object.values(t.findResources('AWS::ApiGateway::Stage'));
  assert.equal(stages.length, 1);
  return (stages[0] as any).Properties.MethodSettings;
}

function admission(s: Stack): LambdaAdmission {
  return new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS });
}

/** A REST API with one method, ANY /{proxy+}, in front of `f`. */
function proxyApi(s: Stack, f: lambda.IFunction, props: apigateway.RestApiProps = {}): apigateway.RestApi {
  const api = new apigateway.RestApi(s, 'Api', props);
  api.root.addResource('{proxy+}').addMethod('ANY', new apigateway.LambdaIntegration(f));
  return api;
}

describe('the recipe on API Gateway', () => {
  test('the stage throttle is 8 × N, burst N, and THROTTLED answers 429 with Retry-After', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 20 });
    admission(s).protect(f, { api: proxyApi(s, f) });
    const t = Template.fromStack(s);
    assert.deepEqual(methodSettings(t), [{ HttpMethod: '*', ResourcePath: '/*', ThrottlingRateLimit: 160, ThrottlingBurstLimit: 20 }]);
    t.resourceCountIs('AWS::ApiGateway::GatewayResponse', 1);
    t.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'THROTTLED',
      StatusCode: '429',
      ResponseParameters: { 'gatewayresponse.header.Retry-After': "'1'" },
      RestApiId: { Ref: Match.stringLikeRegexp('^Api') },
    });
  });

  test('two methods reaching the function at the stage rate each are refused at synth', () => {
    // LambdaRestApi's proxy has two methods (ANY / and ANY /{proxy+}), each with its own bucket.
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 20 });
    admission(s).protect(f, { api: new apigateway.LambdaRestApi(s, 'Api', { handler: f }) });
    assert.throws(() => Template.fromStack(s), /2 methods of .* invoke .*together they let 320 requests a second through, above Lambda's cap of 10 × 20 = 200/s);
  });

  test('methods added after protect() are counted too', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 20 });
    const api = proxyApi(s, f);
    admission(s).protect(f, { api });
    api.root.addResource('orders').addMethod('POST', new apigateway.LambdaIntegration(f));
    assert.throws(() => Template.fromStack(s), /2 methods .* invoke/s);
  });

  test('methods of other functions, and per-method throttles within the cap, are accepted', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 20 });
    const other = fn(s, 'Other', { reserved: 5 });
    // 140 + 50 = 190: within 10 × 20 together; the stage-wide 160 applies to neither.
    const api = proxyApi(s, f, {
      deployOptions: {
        methodOptions: {
          '/{proxy+}/ANY': { throttlingRateLimit: 140, throttlingBurstLimit: 10 },
          '/orders/POST': { throttlingRateLimit: 50, throttlingBurstLimit: 10 },
        },
      },
    });
    api.root.addResource('orders').addMethod('POST', new apigateway.LambdaIntegration(f));
    api.root.addResource('other').addMethod('GET', new apigateway.LambdaIntegration(other));
    admission(s).protect(f, { api });
    Template.fromStack(s);
  });

  test('a burst that, with the rate, passes the cap is refused', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 20 });
    const api = proxyApi(s, f, { deployOptions: { throttlingBurstLimit: 5000 } });
    assert.throws(() => admission(s).protect(f, { api }), /burst of 5000 on top of 160 a second.*Lower the burst to at most 40/s);
  });

  test('an API made with another copy of aws-cdk-lib (a library installed from a folder) gets the recipe', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 20 });
    // A second copy of aws-cdk-lib, as an app loads when it installs this library from a folder.
    // Its modules load lazily: the first copy's classes are loaded before, and the API is built
    // before the first copy's modules are put back.
    void [apigateway.Stage, apigateway.CfnStage, apigateway.CfnGatewayResponse, apigateway.GatewayResponse, apigateway.CfnMethod];
    const saved = { ...require.cache };
    for (const key of Object.keys(require.cache)) {
      if (key.includes(`${path.sep}aws-cdk-lib${path.sep}`)) {
        delete require.cache[key];
      }
    }
    let api: apigateway.RestApi;
    try {
      const other = require('aws-cdk-lib/aws-apigateway') as typeof apigateway;
      assert.notEqual(other.RestApi, apigateway.RestApi, 'a second copy');
      api = new other.RestApi(s, 'Api');
      api.root.addResource('{proxy+}').addMethod('ANY', new other.LambdaIntegration(f));
      assert.ok(!(api.deploymentStage instanceof apigateway.Stage), 'the stage is of the other copy');
    } finally {
      Object.assign(require.cache, saved);
    }
    admission(s).protect(f, { api });
    const t = Template.fromStack(s);
    assert.deepEqual(methodSettings(t), [{ HttpMethod: '*', ResourcePath: '/*', ThrottlingRateLimit: 160, ThrottlingBurstLimit: 20 }]);
    t.resourceCountIs('AWS::ApiGateway::GatewayResponse', 1);
  });

  test('a user throttle within 10 × N is kept, the other stage settings too', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 20 });
    const api = proxyApi(s, f, { deployOptions: { throttlingRateLimit: 180, throttlingBurstLimit: 20, metricsEnabled: true } });
    admission(s).protect(f, { api });
    const [setting] = methodSettings(Template.fromStack(s));
    assert.equal(setting.ThrottlingRateLimit, 180);
    assert.equal(setting.ThrottlingBurstLimit, 20);
    assert.equal(setting.MetricsEnabled, true);
  });

  test('stage-wide settings without a throttle get the recipe\'s', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 5 });
    admission(s).protect(f, { api: proxyApi(s, f, { deployOptions: { metricsEnabled: true } }) });
    const settings = methodSettings(Template.fromStack(s));
    assert.equal(settings.length, 1);
    assert.equal(settings[0].MetricsEnabled, true);
    assert.equal(settings[0].ThrottlingRateLimit, 40);
    assert.equal(settings[0].ThrottlingBurstLimit, 5);
  });

  test('a Stage can be given instead of the API', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 3 });
    admission(s).protect(f, { api: proxyApi(s, f).deploymentStage });
    assert.equal(methodSettings(Template.fromStack(s))[0].ThrottlingRateLimit, 24);
  });

  test('an existing THROTTLED response is kept', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 3 });
    const api = proxyApi(s, f);
    api.addGatewayResponse('Mine', { type: apigateway.ResponseType.THROTTLED, statusCode: '429', responseHeaders: { 'Retry-After': "'2'" } });
    admission(s).protect(f, { api });
    const t = Template.fromStack(s);
    t.resourceCountIs('AWS::ApiGateway::GatewayResponse', 1);
    t.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseParameters: { 'gatewayresponse.header.Retry-After': "'2'" } });
  });

  test('an API without a deployment stage is refused', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 3 });
    const api = new apigateway.RestApi(s, 'Api', { deploy: false });
    api.root.addMethod('ANY', new apigateway.LambdaIntegration(f));
    assert.throws(() => admission(s).protect(f, { api }), /has no deployment stage/);
  });
});

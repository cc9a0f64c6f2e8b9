import { strict as assert } from 'assert';
import { describe, test } from 'node:test';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import { Coordinator, LambdaAdmission } from '../src';
import { LAYERS, fn, stack } from './helpers';

function methodSettings(t: Template) {
  const stages = Object.values(t.findResources('AWS::ApiGateway::Stage'));
  assert.equal(stages.length, 1);
  return (stages[0] as any).Properties.MethodSettings;
}

describe('the recipe on API Gateway', () => {
  test('the stage throttle is 8 × N, burst N, and THROTTLED answers 429 with Retry-After', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 20 });
    const api = new apigateway.LambdaRestApi(s, 'Api', { handler: f });
    new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS }).protect(f, { api });
    const t = Template.fromStack(s);
    assert.deepEqual(methodSettings(t), [{ HttpMethod: '*', ResourcePath: '/*', ThrottlingRateLimit: 160, ThrottlingBurstLimit: 20 }]);
    t.resourceCountIs('AWS::ApiGateway::GatewayResponse', 1);
    t.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'THROTTLED',
      StatusCode: '429',
      ResponseParameters: { 'gatewayresponse.header.Retry-After': "'1'" },
      RestApiId: { Ref: Match.stringLikeRegexp('^Api') },
    });
    // The stage throttle applies per method: LambdaRestApi's proxy has two (ANY / and ANY /{proxy+}).
    Annotations.fromStack(s).hasWarning('/Test/Fn', Match.stringLikeRegexp('applies the stage throttle to each method on its own.*up to 320'));
  });

  test('one proxy method draws no warning about methods', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 20 });
    const api = new apigateway.RestApi(s, 'Api');
    api.root.addResource('{proxy+}').addMethod('ANY', new apigateway.LambdaIntegration(f));
    new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS }).protect(f, { api });
    Annotations.fromStack(s).hasNoWarning('/Test/Fn', Match.stringLikeRegexp('each method on its own'));
    assert.deepEqual(methodSettings(Template.fromStack(s)), [{ HttpMethod: '*', ResourcePath: '/*', ThrottlingRateLimit: 160, ThrottlingBurstLimit: 20 }]);
  });

  test('a user throttle within 10 × N is kept, the other stage settings too', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 20 });
    const api = new apigateway.LambdaRestApi(s, 'Api', {
      handler: f,
      deployOptions: { throttlingRateLimit: 200, throttlingBurstLimit: 40, metricsEnabled: true },
    });
    new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS }).protect(f, { api });
    const [setting] = methodSettings(Template.fromStack(s));
    assert.equal(setting.ThrottlingRateLimit, 200);
    assert.equal(setting.ThrottlingBurstLimit, 40);
    assert.equal(setting.MetricsEnabled, true);
  });

  test('stage-wide settings without a throttle get the recipe\'s', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 5 });
    const api = new apigateway.LambdaRestApi(s, 'Api', { handler: f, deployOptions: { metricsEnabled: true } });
    new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS }).protect(f, { api });
    const settings = methodSettings(Template.fromStack(s));
    assert.equal(settings.length, 1);
    assert.equal(settings[0].MetricsEnabled, true);
    assert.equal(settings[0].ThrottlingRateLimit, 40);
    assert.equal(settings[0].ThrottlingBurstLimit, 5);
  });

  test('a Stage can be given instead of the API', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 3 });
    const api = new apigateway.LambdaRestApi(s, 'Api', { handler: f });
    new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS }).protect(f, { api: api.deploymentStage });
    assert.equal(methodSettings(Template.fromStack(s))[0].ThrottlingRateLimit, 24);
  });

  test('an existing THROTTLED response is kept', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 3 });
    const api = new apigateway.LambdaRestApi(s, 'Api', { handler: f });
    api.addGatewayResponse('Mine', { type: apigateway.ResponseType.THROTTLED, statusCode: '429', responseHeaders: { 'Retry-After': "'2'" } });
    new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS }).protect(f, { api });
    const t = Template.fromStack(s);
    t.resourceCountIs('AWS::ApiGateway::GatewayResponse', 1);
    t.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseParameters: { 'gatewayresponse.header.Retry-After': "'2'" } });
  });

  test('an API without a deployment stage is refused', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 3 });
    const api = new apigateway.LambdaRestApi(s, 'Api', { handler: f, deploy: false });
    const a = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS });
    assert.throws(() => a.protect(f, { api }), /has no deployment stage/);
  });
});

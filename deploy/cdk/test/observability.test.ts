import { strict as assert } from 'assert';
import { describe, test } from 'node:test';
import { Template } from 'aws-cdk-lib/assertions';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import { AdmissionMode, Coordinator, DashboardMode, LambdaAdmission } from '../src';
import { LAYERS, fn, stack } from './helpers';

/** Each dashboard's body as CloudWatch will read it, with `${...}` where CloudFormation fills in a value. */
function body(t: Template): string[] {
  return Object.values(t.findResources('AWS::CloudWatch::Dashboard')).map((d: any) => {
    const join = d.Properties.DashboardBody['Fn::Join'];
    return join[1].map((part: unknown) => (typeof part === 'string' ? part : `\${${JSON.stringify(part)}}`)).join(join[0]);
  });
}

function alarmsOf(t: Template): any[] {
  return Object.values(t.findResources('AWS::CloudWatch::Alarm')).map((a: any) => a.Properties);
}

describe('dashboard and alarms', () => {
  test('the dashboard shows the gateway, the layer and Lambda', () => {
    const s = stack();
    const f = fn(s, 'Fn', { reserved: 20 });
    const api = new apigateway.LambdaRestApi(s, 'Api', { handler: f, proxy: false });
    api.root.addMethod('ANY');
    const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS });
    const protection = admission.protect(f, { api });
    const t = Template.fromStack(s);
    t.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const [text] = body(t);
    for (const needle of [
      '"AWS/ApiGateway","Count"', '"AWS/ApiGateway","4XXError"', '"AWS/ApiGateway","5XXError"',
      '"LambdaAdmission","Admitted"', '"LambdaAdmission","Shed"', '"LambdaAdmission","WouldShed"',
      '"AWS/Lambda","Throttles"', '"AWS/Lambda","ConcurrentExecutions"',
      '"LambdaAdmission","FleetInFlight"', '"LambdaAdmission","InFlightMax"', '"LambdaAdmission","Limit"',
      '"LambdaAdmission","InvokeRate"', '"LambdaAdmission","InvokeRateLimit"',
      '"LambdaAdmission","CoordinatorLatencyP99"', '"LambdaAdmission","FailOpen"', '"LambdaAdmission","CoordinatorErrors"',
      'stage throttle 160/s', 'Lambda\'s cap 200/s',
    ]) {
      assert.ok(text.includes(needle), `dashboard lacks ${needle}`);
    }
    // Extension metrics carry exactly the dimension FunctionName; counts are summed, gauges maximal.
    assert.match(text, /\["LambdaAdmission","Admitted","FunctionName","\$\{\{"Ref":"Fn\w+"\}\}",\{[^}]*"stat":"Sum"\}\]/);
    assert.match(text, /\["LambdaAdmission","FleetInFlight","FunctionName","\$\{\{"Ref":"Fn\w+"\}\}",\{[^}]*"stat":"Maximum"\}\]/);
    assert.ok(!text.includes('AdaptiveLimit'));
    assert.ok(!text.includes('"Class"'));
    assert.equal(protection.dashboard !== undefined, true);
    assert.deepEqual(admission.dashboards, [protection.dashboard]);
  });

  test('alarms: throttles, fail-open sustained, invoke rate at 95 % of the cap, shed share', () => {
    const s = stack();
    const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS });
    const protection = admission.protect(fn(s, 'Fn', { reserved: 20 }));
    const t = Template.fromStack(s);
    const alarms = alarmsOf(t);
    assert.equal(alarms.length, 4);
    const throttles = alarms.find((a) => a.MetricName === 'Throttles');
    assert.equal(throttles.Namespace, 'AWS/Lambda');
    assert.equal(throttles.Statistic, 'Sum');
    assert.equal(throttles.Threshold, 0);
    assert.equal(throttles.ComparisonOperator, 'GreaterThanThreshold');
    const failOpen = alarms.find((a) => a.MetricName === 'FailOpen');
    assert.equal(failOpen.Namespace, 'LambdaAdmission');
    assert.deepEqual([failOpen.EvaluationPeriods, failOpen.DatapointsToAlarm, failOpen.Period, failOpen.Threshold], [5, 5, 60, 0]);
    const rate = alarms.find((a) => a.MetricName === 'InvokeRate');
    assert.equal(rate.Statistic, 'Maximum');
    assert.equal(rate.Threshold, 190);
    const shed = alarms.find((a) => a.Metrics !== undefined);
    assert.equal(shed.Threshold, 0.05);
    assert.equal(shed.Metrics.find((m: any) => m.Expression).Expression, 'shed / (admitted + shed)');
    assert.deepEqual(shed.Metrics.filter((m: any) => m.MetricStat).map((m: any) => [m.MetricStat.Metric.MetricName, m.MetricStat.Stat]).sort(), [['Admitted', 'Sum'], ['Shed', 'Sum']]);
    for (const a of alarms) {
      assert.equal(a.TreatMissingData, 'notBreaching');
    }
    assert.equal(admission.alarms.length, 4);
    assert.ok(protection.invokeRateAlarm !== undefined);
  });

  test('the shed-share threshold is the user\'s; observe mode watches WouldShed', () => {
    const s = stack();
    const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS });
    admission.protect(fn(s, 'Fn', { reserved: 20 }), { shedShareAlarmThreshold: 0.2, mode: AdmissionMode.OBSERVE });
    const shed = alarmsOf(Template.fromStack(s)).find((a) => a.Metrics !== undefined);
    assert.equal(shed.Threshold, 0.2);
    assert.equal(shed.Metrics.find((m: any) => m.Expression).Expression, 'wouldShed / admitted');
  });

  test('no invoke-rate alarm with the local coordinator (its InvokeRate is one environment\'s)', () => {
    const s = stack();
    const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.local(), layerDirectory: LAYERS });
    const protection = admission.protect(fn(s, 'Fn', { reserved: 1 }));
    assert.equal(protection.invokeRateAlarm, undefined);
    assert.equal(alarmsOf(Template.fromStack(s)).some((a) => a.MetricName === 'InvokeRate'), false);
  });

  test('adaptive and classes add their widgets', () => {
    const s = stack();
    const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS });
    admission.protect(fn(s, 'Fn', { reserved: 20 }), { adaptive: {}, critical: ['POST /pay'], sheddable: ['GET /img/*'] });
    const t = Template.fromStack(s);
    const [text] = body(t);
    for (const needle of ['"AdaptiveLimit"', '"AdaptiveLimitMin"', '"AdaptiveLimitMax"', '"AdaptiveLatency"', '"AdaptiveBaseline"']) {
      assert.ok(text.includes(needle), `dashboard lacks ${needle}`);
    }
    for (const klass of ['critical', 'default', 'sheddable']) {
      assert.match(text, new RegExp(`"LambdaAdmission","Shed","Class","${klass}","FunctionName"`));
    }
    assert.doesNotMatch(text, /"Class","exempt"/);
    // Dimensions are listed in name order: Class, then FunctionName.
  });

  test('one dashboard for all, or none', () => {
    const shared = stack();
    const a = new LambdaAdmission(shared, 'Admission', { coordinator: Coordinator.local(), layerDirectory: LAYERS, dashboard: DashboardMode.SHARED });
    const p1 = a.protect(fn(shared, 'A', { reserved: 1 }));
    const p2 = a.protect(fn(shared, 'B', { reserved: 1 }));
    Template.fromStack(shared).resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    assert.equal(p1.dashboard, p2.dashboard);

    const none = stack();
    const b = new LambdaAdmission(none, 'Admission', { coordinator: Coordinator.local(), layerDirectory: LAYERS, dashboard: DashboardMode.NONE });
    assert.equal(b.protect(fn(none, 'A', { reserved: 1 })).dashboard, undefined);
    Template.fromStack(none).resourceCountIs('AWS::CloudWatch::Dashboard', 0);
  });

  test('per-function dashboards', () => {
    const s = stack();
    const a = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.local(), layerDirectory: LAYERS });
    a.protect(fn(s, 'A', { reserved: 1 }));
    a.protect(fn(s, 'B', { reserved: 1 }));
    Template.fromStack(s).resourceCountIs('AWS::CloudWatch::Dashboard', 2);
  });
});

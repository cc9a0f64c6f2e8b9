// The dashboard and alarms of one protected function.
//
// The extension writes one EMF line per environment per period (60 s by default) and only when
// there was activity: counts are summed over environments, gauges take the Maximum, and a period
// without a line means "nothing happened", so alarms treat missing data as not breaching.
import { Duration } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as cw from 'aws-cdk-lib/aws-cloudwatch';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';
import { CLASSES, METRIC_UNITS, MetricName } from './metrics';

const PERIOD = Duration.minutes(1);

/** Lambda's synchronous invoke-rate cap: 10 requests a second per unit of concurrency. */
export const RATE_CAP_PER_UNIT = 10;
/** The recipe's stage throttle: a fifth under Lambda's cap. */
export const STAGE_RATE_PER_UNIT = 8;

export interface Observed {
  readonly fn: lambda.Function;
  /** The limit N the recipe was sized for. */
  readonly limit: number;
  readonly namespace: string;
  readonly stage?: apigateway.Stage;
  /** A shared coordinator: FleetInFlight, Coordinator* and a fleet-wide InvokeRate exist. */
  readonly shared: boolean;
  readonly adaptive: boolean;
  readonly observe: boolean;
  /** Classes with rules, besides `default`. */
  readonly classes: string[];
  readonly shedShareThreshold: number;
}

export interface Alarms {
  readonly throttles: cw.Alarm;
  readonly failOpen: cw.Alarm;
  readonly invokeRate?: cw.Alarm;
  readonly shedShare: cw.Alarm;
}

/** An extension metric; labelled for graphs (a label would turn an alarm's metric into metric math). */
function extension(o: Observed, name: MetricName, statistic: string, klass?: string, labelled = true): cw.Metric {
  return new cw.Metric({
    namespace: o.namespace,
    metricName: name,
    dimensionsMap: klass === undefined ? { FunctionName: o.fn.functionName } : { FunctionName: o.fn.functionName, Class: klass },
    statistic,
    period: PERIOD,
    label: labelled ? (klass === undefined ? name : `${name} ${klass}`) : undefined,
  });
}

function unlabelled(o: Observed, name: MetricName, statistic: string): cw.Metric {
  return extension(o, name, statistic, undefined, false);
}

function axis(name: MetricName): cw.YAxisProps {
  return { label: METRIC_UNITS[name], showUnits: false, min: 0 };
}

export function createAlarms(scope: Construct, o: Observed): Alarms {
  const n = o.limit;
  const where = o.fn.node.path;
  const throttles = new cw.Alarm(scope, 'ThrottlesAlarm', {
    alarmDescription:
      `lambda-admission: Lambda throttled ${where} (behind API Gateway each throttle is a 500). ` +
      'The layer and the stage throttle should prevent every one: check the reserved concurrency, the stage throttle, and FailOpen.',
    metric: o.fn.metricThrottles({ statistic: cw.Stats.SUM, period: PERIOD }),
    threshold: 0,
    comparisonOperator: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
    evaluationPeriods: 1,
    treatMissingData: cw.TreatMissingData.NOT_BREACHING,
  });
  // One failed decision is noise; five minutes in a row is an outage of the count (the
  // coordinator is down or refusing us), during which nothing is shed.
  const failOpen = new cw.Alarm(scope, 'FailOpenAlarm', {
    alarmDescription:
      `lambda-admission: ${where} admitted events unchecked (FailOpen) in 5 consecutive minutes: ` +
      'the coordinator is unreachable or refusing the extension, and nothing is being shed. See the function\'s log.',
    metric: unlabelled(o, 'FailOpen', cw.Stats.SUM),
    threshold: 0,
    comparisonOperator: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
    evaluationPeriods: 5,
    datapointsToAlarm: 5,
    treatMissingData: cw.TreatMissingData.NOT_BREACHING,
  });
  // With the local coordinator InvokeRate is one environment's, never the fleet's: no alarm. The
  // stage throttle lets at most 8 × N through a second, 9 × N with a full burst: above 95 % of the
  // cap, something reaches the function around the throttle (or there is none).
  const invokeRate = o.shared
    ? new cw.Alarm(scope, 'InvokeRateAlarm', {
      alarmDescription:
        `lambda-admission: ${where} reached 95 % of Lambda's invoke-rate cap (10 × ${n} a second, sheds included), more ` +
        'than the stage throttle lets through; past the cap Lambda throttles whatever the layer does: check the API ' +
        'Gateway stage throttle and callers that bypass it.',
      metric: unlabelled(o, 'InvokeRate', cw.Stats.MAXIMUM),
      threshold: 0.95 * RATE_CAP_PER_UNIT * n,
      comparisonOperator: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      treatMissingData: cw.TreatMissingData.NOT_BREACHING,
    })
    : undefined;
  // In observe mode nothing is shed and WouldShed counts what would have been (those events are
  // also in Admitted).
  const shedShare = new cw.Alarm(scope, 'ShedShareAlarm', {
    alarmDescription:
      `lambda-admission: more than ${o.shedShareThreshold * 100} % of ${where}'s requests ` +
      `${o.observe ? 'would have been' : 'were'} shed in 3 of 5 minutes: demand is above the limit (${n}) for minutes. ` +
      'Raise the reserved concurrency, or find what slows the handlers.',
    metric: new cw.MathExpression({
      expression: o.observe ? 'wouldShed / admitted' : 'shed / (admitted + shed)',
      usingMetrics: o.observe
        ? { wouldShed: unlabelled(o, 'WouldShed', cw.Stats.SUM), admitted: unlabelled(o, 'Admitted', cw.Stats.SUM) }
        : { shed: unlabelled(o, 'Shed', cw.Stats.SUM), admitted: unlabelled(o, 'Admitted', cw.Stats.SUM) },
      label: 'shed share',
      period: PERIOD,
    }),
    threshold: o.shedShareThreshold,
    comparisonOperator: cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
    evaluationPeriods: 5,
    datapointsToAlarm: 3,
    treatMissingData: cw.TreatMissingData.NOT_BREACHING,
  });
  return { throttles, failOpen, invokeRate, shedShare };
}

/** The widgets of one function, row by row. */
export function widgets(o: Observed, alarms: Alarms): cw.IWidget[][] {
  const n = o.limit;
  const rows: cw.IWidget[][] = [];
  rows.push([
    new cw.TextWidget({
      markdown:
        `### lambda-admission: ${o.fn.node.path}\n` +
        `Limit ${n}; stage throttle ${STAGE_RATE_PER_UNIT * n}/s against Lambda's cap of ${RATE_CAP_PER_UNIT * n}/s. ` +
        'Counts are sums per minute; gauges are maxima over all environments; a gap means no activity.',
      width: 24,
      height: 2,
    }),
  ]);
  const gateway = o.stage === undefined
    ? []
    : [
      o.stage.metricCount({ statistic: cw.Stats.SUM, period: PERIOD, label: 'API Gateway Count' }),
      o.stage.metricClientError({ statistic: cw.Stats.SUM, period: PERIOD, label: 'API Gateway 4XXError' }),
      o.stage.metricServerError({ statistic: cw.Stats.SUM, period: PERIOD, label: 'API Gateway 5XXError' }),
    ];
  const concurrent = o.fn.metric('ConcurrentExecutions', { statistic: cw.Stats.MAXIMUM, period: PERIOD, label: 'Lambda ConcurrentExecutions' });
  rows.push([
    new cw.GraphWidget({
      title: 'Requests: the gateway and the layer (per minute)',
      left: [...gateway, ...(['Admitted', 'Shed', 'WouldShed'] as const).map((m) => extension(o, m, cw.Stats.SUM))],
      leftYAxis: axis('Admitted'),
      width: 12,
    }),
    new cw.GraphWidget({
      title: 'Lambda: throttles (should stay at 0) and concurrency',
      left: [o.fn.metricThrottles({ statistic: cw.Stats.SUM, period: PERIOD, label: 'Lambda Throttles' })],
      right: [concurrent],
      leftYAxis: { label: 'Count', showUnits: false, min: 0 },
      rightYAxis: { label: 'Count', showUnits: false, min: 0 },
      width: 12,
    }),
  ]);
  rows.push([
    new cw.GraphWidget({
      title: 'In flight against the limit',
      left: [
        ...(o.shared ? [extension(o, 'FleetInFlight', cw.Stats.MAXIMUM)] : []),
        extension(o, 'InFlightMax', cw.Stats.MAXIMUM),
        extension(o, 'Limit', cw.Stats.MAXIMUM),
        concurrent,
      ],
      leftAnnotations: [{ value: n, label: `limit ${n}` }],
      leftYAxis: axis('Limit'),
      width: 12,
    }),
    new cw.GraphWidget({
      title: 'Invoke rate against Lambda\'s cap (busiest second per minute)',
      left: [extension(o, 'InvokeRate', cw.Stats.MAXIMUM), extension(o, 'InvokeRateLimit', cw.Stats.MAXIMUM)],
      leftAnnotations: [
        { value: STAGE_RATE_PER_UNIT * n, label: `stage throttle ${STAGE_RATE_PER_UNIT * n}/s` },
        { value: RATE_CAP_PER_UNIT * n, label: `Lambda's cap ${RATE_CAP_PER_UNIT * n}/s`, color: '#d62728' },
      ],
      leftYAxis: axis('InvokeRate'),
      width: 12,
    }),
  ]);
  rows.push([
    new cw.GraphWidget({
      title: 'Coordinator: round trip p99, and events admitted unchecked',
      left: [extension(o, 'CoordinatorLatencyP99', cw.Stats.MAXIMUM)],
      right: [extension(o, 'FailOpen', cw.Stats.SUM), extension(o, 'CoordinatorErrors', cw.Stats.SUM)],
      leftYAxis: axis('CoordinatorLatencyP99'),
      rightYAxis: axis('FailOpen'),
      width: 12,
    }),
    new cw.AlarmStatusWidget({
      title: 'Alarms',
      alarms: [alarms.throttles, alarms.failOpen, ...(alarms.invokeRate ? [alarms.invokeRate] : []), alarms.shedShare],
      width: 12,
      height: 6,
    }),
  ]);
  const extra: cw.IWidget[] = [];
  if (o.adaptive) {
    extra.push(
      new cw.GraphWidget({
        title: 'Adaptive limit, and the latency it follows',
        left: [
          extension(o, 'AdaptiveLimit', cw.Stats.MAXIMUM),
          extension(o, 'AdaptiveLimitMin', cw.Stats.MINIMUM),
          extension(o, 'AdaptiveLimitMax', cw.Stats.MAXIMUM),
        ],
        right: [extension(o, 'AdaptiveLatency', cw.Stats.MAXIMUM), extension(o, 'AdaptiveBaseline', cw.Stats.MAXIMUM)],
        leftYAxis: axis('AdaptiveLimit'),
        rightYAxis: axis('AdaptiveLatency'),
        width: 12,
      }),
    );
  }
  if (o.classes.length > 0) {
    const used = CLASSES.filter((c) => c === 'default' || o.classes.includes(c));
    extra.push(
      new cw.GraphWidget({
        title: 'By class: admitted and shed (per minute)',
        left: used.flatMap((c) => [extension(o, 'Admitted', cw.Stats.SUM, c), extension(o, o.observe ? 'WouldShed' : 'Shed', cw.Stats.SUM, c)]),
        leftYAxis: axis('Admitted'),
        width: 12,
      }),
    );
  }
  if (extra.length > 0) {
    rows.push(extra);
  }
  return rows;
}

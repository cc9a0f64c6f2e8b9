// Every metric the extension writes (EMF), with its unit, one per line, so that the extension's
// test suite can hold this file against its own table (extension/src/decision/metrics.rs, `METRICS`).
// The dashboard and the alarms name metrics only through this table.
export const METRIC_UNITS = {
  Admitted: 'Count',
  Shed: 'Count',
  WouldShed: 'Count',
  FailOpen: 'Count',
  ShedUnconfirmed: 'Count',
  InFlightMax: 'Count',
  Limit: 'Count',
  DecisionLatencyP50: 'Microseconds',
  DecisionLatencyP99: 'Microseconds',
  DecisionLatencyMax: 'Microseconds',
  FleetInFlight: 'Count',
  CoordinatorLatencyP50: 'Microseconds',
  CoordinatorLatencyP99: 'Microseconds',
  CoordinatorLatencyMax: 'Microseconds',
  CoordinatorErrors: 'Count',
  InvokeRate: 'Count/Second',
  InvokeRateLimit: 'Count/Second',
  TenantsInFlightMax: 'Count',
  AdaptiveLimit: 'Count',
  AdaptiveLimitMin: 'Count',
  AdaptiveLimitMax: 'Count',
  AdaptiveLatency: 'Microseconds',
  AdaptiveBaseline: 'Microseconds',
  CpuUtilization: 'Percent',
  CpuLimit: 'Count',
  CpuShed: 'Count',
};

export type MetricName = keyof typeof METRIC_UNITS;

/** The namespace the extension writes to unless `ADMISSION_METRICS_NAMESPACE` says otherwise. */
export const DEFAULT_NAMESPACE = 'LambdaAdmission';

/** The `Class` dimension's values on per-class lines. */
export const CLASSES = ['critical', 'default', 'sheddable', 'exempt'] as const;

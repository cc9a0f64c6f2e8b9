// Every environment variable the construct writes or reads, one per line, so that the extension's
// test suite can hold this file against its own table (extension/src/config/mod.rs, `VARIABLES`).
// Names only: what each means is documented in the repository's README, "Configuration".

// Read by Lambda itself (not by the extension): makes the runtime start through the layer's wrapper.
export const AWS_LAMBDA_EXEC_WRAPPER = 'AWS_LAMBDA_EXEC_WRAPPER';

export const ADMISSION_MODE = 'ADMISSION_MODE';
export const ADMISSION_LIMIT = 'ADMISSION_LIMIT';
export const ADMISSION_LIMIT_MIN = 'ADMISSION_LIMIT_MIN';
export const ADMISSION_LIMIT_MAX = 'ADMISSION_LIMIT_MAX';
export const ADMISSION_ADAPTIVE = 'ADMISSION_ADAPTIVE';
export const ADMISSION_ADAPTIVE_WINDOW_MS = 'ADMISSION_ADAPTIVE_WINDOW_MS';
export const ADMISSION_METRICS_NAMESPACE = 'ADMISSION_METRICS_NAMESPACE';
export const ADMISSION_COORDINATOR = 'ADMISSION_COORDINATOR';
export const ADMISSION_COORDINATOR_TIMEOUT_MS = 'ADMISSION_COORDINATOR_TIMEOUT_MS';
export const ADMISSION_REDIS_AUTH = 'ADMISSION_REDIS_AUTH';
export const ADMISSION_REDIS_IAM_CACHE = 'ADMISSION_REDIS_IAM_CACHE';
export const ADMISSION_REDIS_IAM_SERVERLESS = 'ADMISSION_REDIS_IAM_SERVERLESS';
export const ADMISSION_EXEMPT = 'ADMISSION_EXEMPT';
export const ADMISSION_CRITICAL = 'ADMISSION_CRITICAL';
export const ADMISSION_SHEDDABLE = 'ADMISSION_SHEDDABLE';
export const ADMISSION_SHEDDABLE_AT = 'ADMISSION_SHEDDABLE_AT';
export const ADMISSION_CRITICAL_RESERVE = 'ADMISSION_CRITICAL_RESERVE';
export const ADMISSION_TENANT = 'ADMISSION_TENANT';
export const ADMISSION_TENANT_OVER_AT = 'ADMISSION_TENANT_OVER_AT';
export const ADMISSION_TENANT_RESERVE = 'ADMISSION_TENANT_RESERVE';

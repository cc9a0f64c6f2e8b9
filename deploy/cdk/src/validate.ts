// Synth-time copies of the extension's own value checks (extension/src/config/read.rs, and the
// rule grammar and tenant key in config/rules.rs): a value the extension would refuse fails
// `cdk synth` here, naming the variable,
// instead of failing every cold start of the deployed function.
import { Token } from 'aws-cdk-lib';

/** Thrown for a configuration the construct refuses; the message says what to change. */
export class AdmissionConfigError extends Error {
  constructor(message: string) {
    super(`lambda-admission: ${message}`);
    this.name = 'AdmissionConfigError';
  }
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
const HEADER_TOKEN = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;

/** Why a class rule is invalid, or undefined when the extension accepts it. */
export function ruleError(rule: string): string | undefined {
  if (rule.includes(',')) {
    return 'one rule per array element (the variable joins them with commas)';
  }
  const r = rule.trim();
  if (r.startsWith('header:')) {
    const spec = r.slice('header:'.length);
    const eq = spec.indexOf('=');
    const name = eq < 0 ? spec : spec.slice(0, eq);
    return HEADER_TOKEN.test(name) ? undefined : 'header:NAME or header:NAME=VALUE, NAME a header name';
  }
  const space = r.indexOf(' ');
  const method = space < 0 ? undefined : r.slice(0, space);
  const p = space < 0 ? r : r.slice(space + 1).trimStart();
  if (method !== undefined && !METHODS.includes(method)) {
    return `a method among ${METHODS.join(', ')}, in capitals`;
  }
  if (!p.startsWith('/') || /\s/.test(p)) {
    return '[METHOD ]/PATH, the path starting with /';
  }
  const segments = p.split('/').slice(1);
  if (p.endsWith('/*')) {
    segments.pop();
  }
  if (segments.some((s) => s !== '*' && s.includes('*'))) {
    return '`*` only as a whole segment';
  }
  return undefined;
}

/** Why a tenant key is invalid, or undefined. */
export function tenantError(value: string): string | undefined {
  if (['lambda', 'apikey', 'sourceip'].includes(value)) {
    return undefined;
  }
  if (!value.startsWith('header:')) {
    return 'lambda, apikey, sourceip or header:NAME';
  }
  const name = value.slice('header:'.length).trim();
  return HEADER_TOKEN.test(name) ? undefined : 'header:NAME with NAME a valid HTTP header name';
}

/** A literal number, or an error naming the option and its variable. */
function literal(value: number, option: string, variable: string): number {
  if (Token.isUnresolved(value)) {
    throw new AdmissionConfigError(
      `${option} (${variable}) must be a literal number: the construct derives other settings from it at synth time`,
    );
  }
  return value;
}

/** A share of the limit: 0 < x <= 1. */
export function share(value: number, option: string, variable: string): string {
  const x = literal(value, option, variable);
  if (!(x > 0 && x <= 1)) {
    throw new AdmissionConfigError(`${option} (${variable}) is ${x}: expected a number greater than 0 and at most 1`);
  }
  return String(x);
}

/** A whole number within [min, max]. */
export function integer(value: number, min: number, max: number, option: string, variable: string): number {
  const x = literal(value, option, variable);
  if (!Number.isInteger(x) || x < min || x > max) {
    throw new AdmissionConfigError(`${option} (${variable}) is ${x}: expected a whole number from ${min} to ${max}`);
  }
  return x;
}

/** A number within [min, max]. */
export function number(value: number, min: number, max: number, option: string, variable: string): string {
  const x = literal(value, option, variable);
  if (!(x >= min && x <= max)) {
    throw new AdmissionConfigError(`${option} (${variable}) is ${x}: expected a number from ${min} to ${max}`);
  }
  return String(x);
}

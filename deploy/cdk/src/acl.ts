// The ElastiCache user the construct creates may run exactly these commands, one per line, so that
// the extension's test suite can hold this list against what its coordinator sends.
//
// Valkey (like Redis 7) checks a user's ACL for every command a Lua script calls, not only for
// EVAL/EVALSHA themselves: the commands inside the admission scripts (extension/src/coordinator)
// must be granted too, or every decision fails and is admitted unchecked (FailOpen).
export const REDIS_COMMANDS = [
  // Sent by the extension itself.
  'evalsha',
  'script',
  'zrem',
  'get',
  'set',
  'ping',
  'info',
  // The cluster client's topology query and redirections (ElastiCache Serverless runs in cluster
  // mode).
  'cluster|slots',
  'asking',
  // Called from inside the admission scripts.
  'del',
  'exists',
  'hdel',
  'hget',
  'hgetall',
  'hincrby',
  'hlen',
  'hset',
  'incrby',
  'mget',
  'pexpire',
  'pexpireat',
  'pttl',
  'zadd',
  'zcard',
  'zrangebyscore',
  'zremrangebyscore',
];

/** Every key the extension touches starts with this (`lambda-admission:{<pool>}...`). */
export const KEY_PREFIX = 'lambda-admission:';

/** The access string of the construct's ElastiCache user: on, its own keys, its own commands. */
export function accessString(): string {
  return ['on', `~${KEY_PREFIX}*`, '-@all', ...REDIS_COMMANDS.map((c) => `+${c}`)].join(' ');
}

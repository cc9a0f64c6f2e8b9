import { ArnFormat, Stack, Token, Validations } from 'aws-cdk-lib';
import * as elasticache from 'aws-cdk-lib/aws-elasticache';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { accessString } from './acl';
import { AdmissionConfigError, integer } from './validate';
import * as v from './variables';

/** What a coordinator adds to every function it serves. */
export interface CoordinatorConfig {
  /** `ADMISSION_*` variables that point the extension at the coordinator. */
  readonly environment: { [name: string]: string };
  /** Permissions the function's role needs to reach the coordinator. @default - none */
  readonly policyStatements?: iam.PolicyStatement[];
  /** Whether the count is shared by the whole fleet (Redis/Valkey) rather than kept per environment. */
  readonly shared: boolean;
  /**
   * Whether the coordinator is reached over a public endpoint: a function in a VPC then needs a
   * route to the internet. @default false
   */
  readonly publicEndpoint?: boolean;
  /** The serverless cache, when the coordinator created one. @default - none */
  readonly serverlessCache?: elasticache.CfnServerlessCache;
}

/** Options of `Coordinator.valkeyServerless()`. */
export interface ValkeyServerlessProps {
  /**
   * The name of the cache, and of its ElastiCache user and user group (all three are unique per
   * account and region): 1 to 40 lower-case letters, digits and single hyphens, starting with a
   * letter.
   * @default - derived from the construct's path
   */
  readonly cacheName?: string;
  /**
   * A ceiling on the cache's ElastiCache Processing Units per second: a cost cap. An admitted
   * invocation is two script calls (5 to 32 ECPUs between them, as measured: the repository's
   * docs/costs.md, "What it costs, in money"); at Lambda's invoke-rate cap a function makes up to 20 × its
   * limit calls a second. A capped cache throttles round trips, and each throttled one admits its
   * event unchecked: cap well above what the functions need.
   * @default - no ceiling below ElastiCache's own
   */
  readonly maxEcpuPerSecond?: number;
  /**
   * A ceiling on the cache's data storage, in GB: a cost cap. Leases take a few hundred bytes
   * per invocation in flight.
   * @default - no ceiling below ElastiCache's own
   */
  readonly maxDataStorageGb?: number;
  /**
   * The budget for one round trip to the cache (`ADMISSION_COORDINATOR_TIMEOUT_MS`), past which
   * a decision admits unchecked (`FailOpen`). The extension's default of 5 ms is sized for a
   * cache inside the function's VPC; a public endpoint is a longer path (see the repository's
   * docs/fleet.md, "The budget over a public endpoint").
   * @default 15
   */
  readonly timeoutMs?: number;
}

/** Options of `Coordinator.redis()`. */
export interface RedisCoordinatorProps {
  /**
   * `redis://[user:password@]host:port` or `rediss://...` (`ADMISSION_COORDINATOR`); may be a
   * token. With `iamCache`: `rediss://USER@host:port`, no password.
   */
  readonly url: string;
  /**
   * The ElastiCache cache's (or replication group's) name: turns on IAM authentication
   * (`ADMISSION_REDIS_AUTH=iam`, `ADMISSION_REDIS_IAM_CACHE`) and grants `elasticache:Connect`.
   * @default - the URL's own credentials, no IAM
   */
  readonly iamCache?: string;
  /**
   * The ElastiCache user the URL names, for the `elasticache:Connect` grant.
   * @default - read from `url` (required when `url` is a token)
   */
  readonly iamUser?: string;
  /**
   * The budget for one round trip (`ADMISSION_COORDINATOR_TIMEOUT_MS`).
   * @default - the extension's default (5 ms, for a cache in the function's VPC)
   */
  readonly timeoutMs?: number;
}

/** Who counts the invocations in flight: the whole fleet's count in Redis/Valkey, or each environment's own. */
export abstract class Coordinator {
  /**
   * An ElastiCache Serverless for Valkey cache (Valkey 9, public endpoint, IAM authentication)
   * created for this construct: one cache serves every function it protects, each function
   * counting in its own pool. No VPC needed.
   */
  public static valkeyServerless(props: ValkeyServerlessProps = {}): Coordinator {
    return new ValkeyServerlessCoordinator(props);
  }

  /** An existing Redis or Valkey (e.g. an ElastiCache cache in the functions' VPC). */
  public static redis(props: RedisCoordinatorProps): Coordinator {
    return new RedisCoordinator(props);
  }

  /**
   * Each execution environment counts its own invocations (`ADMISSION_COORDINATOR=local`). Right
   * for Lambda Managed Instances (many invocations per environment); an on-demand environment runs
   * one invocation at a time, so there it protects nothing fleet-wide.
   */
  public static local(): Coordinator {
    return new LocalCoordinator();
  }

  /** Creates what the coordinator needs under `scope`, once, and says what functions need to use it. */
  public abstract bind(scope: Construct): CoordinatorConfig;
}

class LocalCoordinator extends Coordinator {
  public bind(_scope: Construct): CoordinatorConfig {
    // ADMISSION_COORDINATOR's default is `local`: nothing to write.
    return { environment: {}, shared: false };
  }
}

/** The user and whether a password follows, from `redis[s]://[user[:password]@]host...`. */
function urlUserinfo(url: string): { user?: string; password: boolean } {
  const authority = url.replace(/^rediss?:\/\//, '').split(/[/?#]/)[0];
  const at = authority.lastIndexOf('@');
  if (at < 0) {
    return { password: false };
  }
  const userinfo = authority.slice(0, at);
  const colon = userinfo.indexOf(':');
  const user = colon < 0 ? userinfo : userinfo.slice(0, colon);
  return { user: user === '' ? undefined : user, password: colon >= 0 };
}

class RedisCoordinator extends Coordinator {
  constructor(private readonly props: RedisCoordinatorProps) {
    super();
  }

  public bind(scope: Construct): CoordinatorConfig {
    const { url, iamCache, timeoutMs } = this.props;
    const literal = !Token.isUnresolved(url);
    if (literal && !/^rediss?:\/\/[^\s]+$/.test(url)) {
      throw new AdmissionConfigError(`Coordinator.redis: url (${v.ADMISSION_COORDINATOR}) must be redis://... or rediss://...`);
    }
    if (literal && url.includes('#')) {
      throw new AdmissionConfigError(`Coordinator.redis: url (${v.ADMISSION_COORDINATOR}) must not carry a fragment (#insecure is refused by the extension)`);
    }
    const environment: { [name: string]: string } = { [v.ADMISSION_COORDINATOR]: url };
    if (timeoutMs !== undefined) {
      environment[v.ADMISSION_COORDINATOR_TIMEOUT_MS] = String(
        integer(timeoutMs, 1, 10_000, 'Coordinator.redis timeoutMs', v.ADMISSION_COORDINATOR_TIMEOUT_MS),
      );
    }
    if (iamCache === undefined) {
      if (this.props.iamUser !== undefined) {
        throw new AdmissionConfigError('Coordinator.redis: iamUser needs iamCache (IAM authentication signs tokens for a cache)');
      }
      return { environment, shared: true };
    }
    if (!Token.isUnresolved(iamCache) && !/^[A-Za-z0-9-]{1,128}$/.test(iamCache)) {
      throw new AdmissionConfigError(`Coordinator.redis: iamCache (${v.ADMISSION_REDIS_IAM_CACHE}) must be the cache's name: letters, digits and -`);
    }
    if (literal && !url.startsWith('rediss://')) {
      throw new AdmissionConfigError(`Coordinator.redis: with iamCache the url (${v.ADMISSION_COORDINATOR}) must be rediss:// (IAM tokens are only sent over TLS)`);
    }
    const userinfo = literal ? urlUserinfo(url) : { password: false };
    const fromUrl = userinfo.user;
    if (literal && (fromUrl === undefined || userinfo.password)) {
      throw new AdmissionConfigError(
        `Coordinator.redis: with iamCache the url (${v.ADMISSION_COORDINATOR}) must be rediss://USER@host:port, naming the ElastiCache user and no password`,
      );
    }
    const user = this.props.iamUser ?? fromUrl;
    if (user === undefined) {
      throw new AdmissionConfigError('Coordinator.redis: the url is a token, so give iamUser (the ElastiCache user it names) for the elasticache:Connect grant');
    }
    if (fromUrl !== undefined && this.props.iamUser !== undefined && fromUrl !== this.props.iamUser) {
      throw new AdmissionConfigError(`Coordinator.redis: iamUser "${this.props.iamUser}" differs from the url's user "${fromUrl}"`);
    }
    environment[v.ADMISSION_REDIS_AUTH] = 'iam';
    environment[v.ADMISSION_REDIS_IAM_CACHE] = iamCache;
    const stack = Stack.of(scope);
    const arn = (resource: string, name: string) =>
      stack.formatArn({ service: 'elasticache', resource, resourceName: name, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    return {
      environment,
      shared: true,
      policyStatements: [
        new iam.PolicyStatement({
          actions: ['elasticache:Connect'],
          // The token is signed for a serverless cache or a replication group of that name; the
          // extension tells which from the host at run time, so both are granted (the name is
          // the user's own either way).
          resources: [arn('serverlesscache', iamCache), arn('replicationgroup', iamCache), arn('user', user)],
        }),
      ],
    };
  }
}

const NAME_PATTERN = /^[a-z](?:[a-z0-9]|-(?=[a-z0-9])){0,39}$/;

/**
 * A name ElastiCache accepts for a serverless cache, a user and a user group (each unique per
 * account and Region): the stack's and the construct's names for people, and a hash of the
 * construct's path for uniqueness.
 */
function generatedName(root: Construct): string {
  const clean = (text: string) =>
    text
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^[^a-z]+/, '')
      .replace(/-+$/, '');
  const stackName = Stack.of(root).stackName;
  const stack = Token.isUnresolved(stackName) ? '' : clean(stackName);
  const owner = clean(root.node.scope?.node.id ?? '');
  // 40 characters in all, 9 of them for "-" and the hash: whole words rather than cut ones.
  const candidates = [`${stack}-${owner}`, stack, owner].map(clean).filter((c) => c !== '');
  const readable = candidates.find((c) => c.length <= 31) ?? clean((candidates[0] ?? '').slice(0, 31));
  const hash = root.node.addr.slice(-8);
  return readable === '' ? `lambda-admission-${hash}` : `${readable}-${hash}`;
}

class ValkeyServerlessCoordinator extends Coordinator {
  private bound?: CoordinatorConfig;

  constructor(private readonly props: ValkeyServerlessProps) {
    super();
  }

  public bind(scope: Construct): CoordinatorConfig {
    // One cache per coordinator, however many constructs or functions use it.
    if (this.bound !== undefined) {
      return this.bound;
    }
    const root = new Construct(scope, 'ValkeyServerless');
    const name = this.props.cacheName ?? generatedName(root);
    if (!Token.isUnresolved(name) && !NAME_PATTERN.test(name)) {
      throw new AdmissionConfigError(
        `Coordinator.valkeyServerless: cacheName "${name}" must be 1 to 40 lower-case letters, digits and single hyphens, starting with a letter and not ending with a hyphen`,
      );
    }
    const timeoutMs = integer(this.props.timeoutMs ?? 15, 1, 10_000, 'Coordinator.valkeyServerless timeoutMs', v.ADMISSION_COORDINATOR_TIMEOUT_MS);

    // The extension authenticates as its own IAM-enabled user rather than the system-managed
    // `default.iam-user` (in `default.iam-user-group`): that user can run any command on any key,
    // so anyone granted elasticache:Connect on it and the cache could read or wipe everything.
    // This user may touch only `lambda-admission:*` keys with the commands the scripts use.
    // A Valkey user group needs no user named `default` (Redis OSS groups do), and a cache with a
    // public endpoint accepts only groups whose users all authenticate with IAM: this group
    // holds this one user. IAM users must have user id == user name.
    const user = new elasticache.CfnUser(root, 'User', {
      engine: 'valkey',
      userId: name,
      userName: name,
      accessString: accessString(),
      authenticationMode: { Type: 'iam' },
    });
    const userGroup = new elasticache.CfnUserGroup(root, 'UserGroup', {
      engine: 'valkey',
      userGroupId: name,
      userIds: [name],
    });
    userGroup.node.addDependency(user);

    const { maxEcpuPerSecond, maxDataStorageGb } = this.props;
    const cache = new elasticache.CfnServerlessCache(root, 'Cache', {
      serverlessCacheName: name,
      description: 'lambda-admission: the fleet-wide count of invocations in flight',
      engine: 'valkey',
      // Public endpoints exist on ElastiCache Serverless for Valkey 9 and later.
      majorEngineVersion: '9',
      connectionType: 'public',
      userGroupId: name,
      cacheUsageLimits:
        maxEcpuPerSecond === undefined && maxDataStorageGb === undefined
          ? undefined
          : {
            ecpuPerSecond:
              maxEcpuPerSecond === undefined
                ? undefined
                : { maximum: integer(maxEcpuPerSecond, 1_000, 15_000_000, 'Coordinator.valkeyServerless maxEcpuPerSecond', 'CacheUsageLimits.ECPUPerSecond.Maximum') },
            dataStorage:
              maxDataStorageGb === undefined
                ? undefined
                : { maximum: integer(maxDataStorageGb, 1, 5_000, 'Coordinator.valkeyServerless maxDataStorageGb', 'CacheUsageLimits.DataStorage.Maximum'), unit: 'GB' },
          },
    });
    cache.node.addDependency(userGroup);
    // aws-cdk-lib's built-in template check carries an older ElastiCache schema than its own L1
    // (and than CloudFormation and cfn-lint): it calls ConnectionType unknown.
    Validations.of(cache).acknowledge({
      id: 'CloudFormation-Validate::F3002',
      reason: 'ConnectionType is a ServerlessCache property (CloudFormation, cfn-lint); the bundled schema predates it',
    });

    const stack = Stack.of(root);
    const arn = (resource: string) =>
      stack.formatArn({ service: 'elasticache', resource, resourceName: name, arnFormat: ArnFormat.COLON_RESOURCE_NAME });
    this.bound = {
      environment: {
        [v.ADMISSION_COORDINATOR]: `rediss://${name}@${cache.attrEndpointAddress}:${cache.attrEndpointPort}`,
        [v.ADMISSION_REDIS_AUTH]: 'iam',
        [v.ADMISSION_REDIS_IAM_CACHE]: name,
        // The extension guesses "serverless" from `.serverless.` in the host; a public
        // endpoint's host is not documented to carry it, so say it.
        [v.ADMISSION_REDIS_IAM_SERVERLESS]: 'true',
        [v.ADMISSION_COORDINATOR_TIMEOUT_MS]: String(timeoutMs),
      },
      policyStatements: [
        new iam.PolicyStatement({
          actions: ['elasticache:Connect'],
          resources: [arn('serverlesscache'), arn('user')],
        }),
      ],
      shared: true,
      publicEndpoint: true,
      serverlessCache: cache,
    };
    return this.bound;
  }
}

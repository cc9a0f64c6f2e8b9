import { Annotations, CfnResource, Names, Stack, Token } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as cw from 'aws-cdk-lib/aws-cloudwatch';
import * as elasticache from 'aws-cdk-lib/aws-elasticache';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct, IConstruct } from 'constructs';
import { Coordinator, CoordinatorConfig } from './coordinator';
import { ARCHITECTURES, ArchitectureName, WRAPPER_PATH, findZip, searchDirectories, zipName } from './layer';
import { DEFAULT_NAMESPACE } from './metrics';
import { Alarms, Observed, RATE_CAP_PER_UNIT, STAGE_RATE_PER_UNIT, createAlarms, widgets } from './observability';
import { AdmissionConfigError, integer, number, ruleError, share, tenantError } from './validate';
import * as v from './variables';

/** What the extension does with what it decides (`ADMISSION_MODE`). */
export enum AdmissionMode {
  /** Shed: answer excess HTTP requests with a 429. */
  ENFORCE = 'enforce',
  /** Decide and count `WouldShed`, shed nothing: the first rollout. */
  OBSERVE = 'observe',
  /** Pass everything through untouched. */
  OFF = 'off',
}

/** The adaptive limit's controller (`ADMISSION_ADAPTIVE`). */
export enum AdaptiveController {
  /** Shrinks to a queue of one, grows by √limit: the extension's default. */
  GRADIENT = 'gradient',
  /** Additive increase, multiplicative decrease. */
  AIMD = 'aimd',
}

/** Which dashboards the construct creates. */
export enum DashboardMode {
  /** One dashboard per protected function. */
  PER_FUNCTION = 'per-function',
  /** One dashboard for every function this construct protects. */
  SHARED = 'shared',
  /** None (CloudWatch bills dashboards past the first three of an account). */
  NONE = 'none',
}

/** `ADMISSION_LIMIT=adaptive`: a limit that follows the handlers' latency, up to the limit N. */
export interface AdaptiveOptions {
  /** `ADMISSION_ADAPTIVE`. @default AdaptiveController.GRADIENT (the extension's default) */
  readonly controller?: AdaptiveController;
  /** `ADMISSION_ADAPTIVE_WINDOW_MS`: the window of durations each step follows (100 to 60000). @default 1000 (the extension's default) */
  readonly windowMs?: number;
  /** `ADMISSION_LIMIT_MIN`: the adaptive limit never goes below this (at most N). @default 1 (the extension's default) */
  readonly min?: number;
}

/** How one function is protected. Every option has the extension's default when unset. */
export interface ProtectOptions {
  /** `ADMISSION_MODE`. @default AdmissionMode.ENFORCE (the extension's default) */
  readonly mode?: AdmissionMode;
  /**
   * The limit N (`ADMISSION_LIMIT`), which also sizes the stage throttle and the alarms: at most
   * the function's reserved concurrency.
   * @default - the function's reserved concurrency (required when it has none)
   */
  readonly limit?: number;
  /**
   * Leave `ADMISSION_LIMIT` unset and let the extension read the limit from the Lambda API
   * (reserved concurrency, else the account's unreserved pool), granting
   * `lambda:GetFunctionConcurrency` and `lambda:GetAccountSettings`. Needs a shared coordinator.
   * The stage throttle and the alarms still need N: `limit` or reserved concurrency.
   * @default false
   */
  readonly limitFromLambdaApi?: boolean;
  /** `ADMISSION_EXEMPT`: rules (`[METHOD ]/PATH` or `header:NAME[=VALUE]`) for requests never shed. @default - none */
  readonly exempt?: string[];
  /** `ADMISSION_CRITICAL`: rules for requests shed last. @default - none */
  readonly critical?: string[];
  /** `ADMISSION_SHEDDABLE`: rules for requests shed first. @default - none */
  readonly sheddable?: string[];
  /** `ADMISSION_SHEDDABLE_AT`: share of the limit (0 < x ≤ 1) from which sheddable requests are shed. @default 0.5 (the extension's default) */
  readonly sheddableAt?: number;
  /** `ADMISSION_CRITICAL_RESERVE`: share of the limit (0 < x ≤ 1) left to critical requests. @default 0.1 (the extension's default) */
  readonly criticalReserve?: number;
  /** `ADMISSION_TENANT`: fair shares per tenant, read from `lambda`, `apikey`, `sourceip` or `header:NAME`. @default - off */
  readonly tenant?: string;
  /** `ADMISSION_TENANT_OVER_AT`: fair shares (1 to 100) a tenant may hold before it is over its share. @default 2 (the extension's default) */
  readonly tenantOverAt?: number;
  /** `ADMISSION_TENANT_RESERVE`: share of the limit (0 < x ≤ 1) a tenant over its share leaves to the others. @default 0.2 (the extension's default) */
  readonly tenantReserve?: number;
  /** An adaptive limit below N (`ADMISSION_LIMIT=adaptive`, `ADMISSION_LIMIT_MAX=N`). @default - a fixed limit */
  readonly adaptive?: AdaptiveOptions;
  /**
   * The REST API (with a deployment stage) or the stage in front of the function: its `/*` `/*`
   * throttle is set to 8 × N a second, burst N (a user's throttle at most 10 × N is kept), and its
   * `THROTTLED` response gets status 429 and `Retry-After: 1`.
   * @default - no API Gateway settings
   */
  readonly api?: apigateway.IRestApi | apigateway.Stage;
  /**
   * The share of requests shed (0 < x ≤ 1) above which, in 3 of 5 minutes, the shed-share alarm
   * fires. A fleet below its limit sheds almost nothing with the recipe (the headroom is sized
   * for 0.1 % of sheds to find no slot, and a calm fleet admits up to limit − 1), so 5 % for
   * minutes means demand has outgrown N: raise it or find what slows the handlers.
   * @default 0.05
   */
  readonly shedShareAlarmThreshold?: number;
  /** Any other variable, set last (overrides what the construct wrote). @default - none */
  readonly environment?: { [name: string]: string };
}

/** Properties of `LambdaAdmission`. */
export interface LambdaAdmissionProps {
  /**
   * Who counts the invocations in flight. Required: `Coordinator.valkeyServerless()` for on-demand
   * functions (each environment sees one invocation, so only a shared count protects the fleet),
   * `Coordinator.redis({ url })` for an existing cache, `Coordinator.local()` for Lambda Managed
   * Instances.
   */
  readonly coordinator?: Coordinator;
  /**
   * A directory holding `lambda-admission-x86_64.zip` and/or `lambda-admission-arm64.zip`, searched
   * before the package's own `layer/` and the repository's `dist/`.
   * @default - the package's `layer/`, then the repository's `dist/`
   */
  readonly layerDirectory?: string;
  /**
   * Published layer version ARNs by architecture (keys `x86_64`, `arm64`), used instead of a zip.
   * @default - the zips
   */
  readonly layerArns?: { [architecture: string]: string };
  /** @default DashboardMode.PER_FUNCTION */
  readonly dashboard?: DashboardMode;
}

/** What `protect()` set up for one function: add actions to the alarms as you need. */
export interface Protection {
  /** The limit N everything was sized for. */
  readonly limit: number;
  /** Lambda `Throttles` > 0 in a minute: the recipe should prevent every one. */
  readonly throttlesAlarm: cw.Alarm;
  /** `FailOpen` > 0 in 5 consecutive minutes: the coordinator is down and nothing is shed. */
  readonly failOpenAlarm: cw.Alarm;
  /** `InvokeRate` above 80 % of Lambda's cap (10 × N a second); with a shared coordinator only. @default - none */
  readonly invokeRateAlarm?: cw.Alarm;
  /** The share of requests shed above `shedShareAlarmThreshold` in 3 of 5 minutes. */
  readonly shedShareAlarm: cw.Alarm;
  /** The function's dashboard (the shared one with `DashboardMode.SHARED`). @default - none */
  readonly dashboard?: cw.Dashboard;
}

/** A method setting's resource path as written: API Gateway writes `/` + the path with `/` escaped as `~1`. */
function decodePath(resourcePath: string): string {
  const decoded = resourcePath.replace(/^\//, '').replace(/~1/g, '/').replace(/~0/g, '~');
  return decoded.startsWith('/') ? decoded : `/${decoded}`;
}

/** Whether `c` is a CloudFormation resource of `type`, whichever copy of aws-cdk-lib made it. */
function isCfnOf(c: unknown, type: string): boolean {
  return CfnResource.isCfnResource(c as IConstruct) && (c as CfnResource).cfnResourceType === type;
}

/**
 * The methods of the stage's API that invoke `fn`, each with the rate its bucket lets through (its
 * own method setting, else the stage's `/*` `*`): API Gateway throttles every method on its own,
 * so together they must stay within Lambda's cap of 10 × N a second.
 */
function methodsOverCap(stage: apigateway.Stage, cfnStage: apigateway.CfnStage, fn: lambda.Function, n: number): string[] {
  const cap = RATE_CAP_PER_UNIT * n;
  const fnId = Stack.of(fn).getLogicalId(fn.node.defaultChild as CfnResource);
  const settings = ((Stack.of(stage).resolve(cfnStage.methodSettings) ?? []) as Record<string, unknown>[]).filter((s) => typeof s === 'object');
  // Resolved but not yet rendered: the properties' own (camelCase) names.
  const rateOf = (path: string, verb: string): number | undefined => {
    const exact = settings.find((s) => s.resourcePath === path && s.httpMethod === verb);
    const wide = settings.find((s) => s.resourcePath === '/*' && s.httpMethod === '*');
    const rate = (exact ?? wide)?.throttlingRateLimit;
    return typeof rate === 'number' ? rate : undefined;
  };
  const reaching = stage.restApi.node
    .findAll()
    .filter((c) => isCfnOf(c, 'AWS::ApiGateway::Method'))
    .map((c) => c.node.scope as apigateway.Method)
    .filter((m) => JSON.stringify(Stack.of(m).resolve((m.node.defaultChild as apigateway.CfnMethod).integration) ?? {}).includes(`"${fnId}"`));
  if (reaching.length < 2) {
    return [];
  }
  // A method setting's path: "/" for the root, else "/" and the path with "~" and "/" escaped
  // ("/~1users~1{id}").
  const encoded = (path: string) => (path === '/' ? '/' : `/${path.replace(/~/g, '~0').replace(/\//g, '~1')}`);
  const rates = reaching.map((m) => rateOf(encoded(m.resource.path), m.httpMethod));
  if (rates.some((r) => r === undefined)) {
    return [];
  }
  const total = (rates as number[]).reduce((a, b) => a + b, 0);
  if (total <= cap) {
    return [];
  }
  return [
    `lambda-admission: ${reaching.length} methods of ${stage.restApi.node.path} invoke ${fn.node.path} ` +
      `(${reaching.map((m) => `${m.httpMethod} ${m.resource.path}`).join(', ')}), and API Gateway throttles each on its own: ` +
      `together they let ${total} requests a second through, above Lambda's cap of 10 × ${n} = ${cap}, past which every ` +
      `invocation is a 500. Route through one method (api.root.addResource('{proxy+}').addMethod('ANY', ...); ` +
      `LambdaRestApi and addProxy add a second one on /), or give each method its own throttle ` +
      `(deployOptions.methodOptions) so that together they stay within ${STAGE_RATE_PER_UNIT * n}.`,
  ];
}

function isArchitecture(name: string): name is ArchitectureName {
  return (ARCHITECTURES as readonly string[]).includes(name);
}

/** Subnets of the VPCs defined in the app, by id token, as Lambda's network sees them. */
function subnetKinds(root: IConstruct): Map<string, 'public' | 'private' | 'isolated'> {
  const kinds = new Map<string, 'public' | 'private' | 'isolated'>();
  for (const c of root.node.findAll()) {
    const vpc = c as unknown as { publicSubnets?: { subnetId: string }[]; privateSubnets?: { subnetId: string }[]; isolatedSubnets?: { subnetId: string }[] };
    if (Array.isArray(vpc.publicSubnets) && Array.isArray(vpc.privateSubnets) && Array.isArray(vpc.isolatedSubnets)) {
      vpc.publicSubnets.forEach((s) => kinds.set(s.subnetId, 'public'));
      vpc.privateSubnets.forEach((s) => kinds.set(s.subnetId, 'private'));
      vpc.isolatedSubnets.forEach((s) => kinds.set(s.subnetId, 'isolated'));
    }
  }
  return kinds;
}

/**
 * Protects Lambda functions behind API Gateway with the lambda-admission layer: excess requests
 * get a 429 with `Retry-After` from the layer (concurrency) and from the stage throttle (invoke
 * rate) instead of a throttle's 500. One layer version per architecture and one coordinator serve
 * every function it protects.
 */
export class LambdaAdmission extends Construct {
  /** The ElastiCache Serverless cache, with `Coordinator.valkeyServerless()`. @default - none */
  public readonly serverlessCache?: elasticache.CfnServerlessCache;

  private readonly coordinatorConfig: CoordinatorConfig;
  private readonly props: LambdaAdmissionProps;
  private readonly layers = new Map<ArchitectureName, lambda.ILayerVersion>();
  private readonly protectedPaths = new Set<string>();
  private readonly _alarms: cw.Alarm[] = [];
  private readonly _dashboards: cw.Dashboard[] = [];
  private sharedDashboard?: cw.Dashboard;

  constructor(scope: Construct, id: string, props: LambdaAdmissionProps = {}) {
    super(scope, id);
    if (props.coordinator === undefined) {
      throw new AdmissionConfigError(
        'choose a coordinator: Coordinator.valkeyServerless() for on-demand functions (one environment sees one invocation, ' +
          'so only a fleet-wide count protects them), Coordinator.redis({ url }) for an existing Redis/Valkey, or ' +
          'Coordinator.local() for one environment or Lambda Managed Instances',
      );
    }
    for (const arch of Object.keys(props.layerArns ?? {})) {
      if (!isArchitecture(arch)) {
        throw new AdmissionConfigError(`layerArns has the key "${arch}": expected ${ARCHITECTURES.join(' or ')}`);
      }
    }
    this.props = props;
    this.coordinatorConfig = props.coordinator.bind(this);
    this.serverlessCache = this.coordinatorConfig.serverlessCache;
  }

  /** Every alarm created so far, to add actions to all of them. */
  public get alarms(): cw.Alarm[] {
    return [...this._alarms];
  }

  /** Every dashboard created so far. */
  public get dashboards(): cw.Dashboard[] {
    return [...this._dashboards];
  }

  /**
   * Adds the layer, `AWS_LAMBDA_EXEC_WRAPPER`, the `ADMISSION_*` variables and the permissions to
   * `fn`; with `api`, the stage throttle and the `THROTTLED` response; and the dashboard and alarms.
   */
  public protect(fn: lambda.Function, options: ProtectOptions = {}): Protection {
    const where = fn.node.path;
    if (this.protectedPaths.has(where)) {
      throw new AdmissionConfigError(`${where} is already protected by ${this.node.path}`);
    }
    if (fn.runtime.name === lambda.Runtime.FROM_IMAGE.name) {
      throw new AdmissionConfigError(`${where} is a container image function: layers cannot be attached; add the layer's files to the image instead`);
    }
    const arch = fn.architecture.name;
    if (!isArchitecture(arch)) {
      throw new AdmissionConfigError(`${where} has architecture ${arch}: the layer is built for ${ARCHITECTURES.join(' and ')}`);
    }
    const cfn = fn.node.defaultChild as lambda.CfnFunction;
    const shared = this.coordinatorConfig.shared;
    const managedInstances = cfn.capacityProviderConfig !== undefined;

    const n = this.limitOf(fn, cfn, options);
    if (!shared && !managedInstances && n > 1) {
      Annotations.of(fn).addWarningV2(
        'lambda-admission:local-coordinator',
        `${where} is protected with Coordinator.local(): an on-demand environment runs one invocation at a time, so ` +
          `each environment sees at most 1 of the ${n} in flight and nothing fleet-wide is shed. ` +
          'Use Coordinator.valkeyServerless() or Coordinator.redis({ url }).',
      );
    }
    if (options.limitFromLambdaApi && !shared) {
      throw new AdmissionConfigError(
        `limitFromLambdaApi on ${where}: the extension reads the limit from the Lambda API only with a shared coordinator ` +
          '(one environment cannot use a fleet-wide limit); set limit, or use Coordinator.valkeyServerless()',
      );
    }
    if (options.adaptive !== undefined && !shared && !managedInstances) {
      throw new AdmissionConfigError(
        `adaptive on ${where} (${v.ADMISSION_LIMIT}=adaptive) needs a shared coordinator or Lambda Managed Instances: ` +
          'one on-demand environment runs one invocation at a time',
      );
    }

    const environment = this.environmentFor(fn, n, options, managedInstances);
    fn.addLayers(this.layerFor(arch, where));
    for (const [name, value] of Object.entries(environment)) {
      fn.addEnvironment(name, value);
    }
    this.checkWrapper(fn, cfn, environment[v.AWS_LAMBDA_EXEC_WRAPPER]);
    this.warnOsOnlyRuntime(fn);

    for (const statement of this.coordinatorConfig.policyStatements ?? []) {
      fn.addToRolePolicy(statement);
    }
    // With a shared coordinator the adaptive limit's ceiling is the platform's limit, which the
    // extension reads from the Lambda API like an unset ADMISSION_LIMIT.
    if (options.limitFromLambdaApi || (options.adaptive !== undefined && shared)) {
      fn.addToRolePolicy(
        new iam.PolicyStatement({
          actions: ['lambda:GetFunctionConcurrency', 'lambda:GetAccountSettings'],
          // GetAccountSettings has no resource; naming the function's own ARN here would make its
          // role's policy depend on the function, which already depends on the policy (a cycle).
          resources: ['*'],
        }),
      );
    }
    if (this.coordinatorConfig.publicEndpoint) {
      this.checkRoute(fn, cfn);
    }

    const stage = options.api === undefined ? undefined : this.applyRecipe(options.api, fn, n);

    this.protectedPaths.add(where);
    return this.observe(fn, {
      fn,
      limit: n,
      namespace: environment[v.ADMISSION_METRICS_NAMESPACE] ?? DEFAULT_NAMESPACE,
      stage,
      shared,
      adaptive: options.adaptive !== undefined,
      observe: (environment[v.ADMISSION_MODE] ?? AdmissionMode.ENFORCE) === AdmissionMode.OBSERVE,
      classes: [
        ...(options.exempt?.length ? ['exempt'] : []),
        ...(options.critical?.length ? ['critical'] : []),
        ...(options.sheddable?.length ? ['sheddable'] : []),
      ],
      shedShareThreshold:
        options.shedShareAlarmThreshold === undefined
          ? 0.05
          : Number(share(options.shedShareAlarmThreshold, 'shedShareAlarmThreshold', 'the shed-share alarm')),
    });
  }

  /** N: `limit`, else the reserved concurrency; never above the reserved concurrency. */
  private limitOf(fn: lambda.Function, cfn: lambda.CfnFunction, options: ProtectOptions): number {
    const where = fn.node.path;
    const reservedRaw = cfn.reservedConcurrentExecutions;
    const reserved = reservedRaw === undefined || Token.isUnresolved(reservedRaw) ? undefined : reservedRaw;
    const limit = options.limit === undefined ? undefined : integer(options.limit, 1, 4_294_967_295, 'limit', v.ADMISSION_LIMIT);
    if (limit === undefined && reserved === undefined) {
      throw new AdmissionConfigError(
        `${where} has no reserved concurrency and no limit: set reservedConcurrentExecutions on the function (the recipe: ` +
          'it is the limit Lambda throttles at, and the count the layer keeps under), or pass protect(fn, { limit: N }) ' +
          'with the concurrency it may use from the account\'s pool',
      );
    }
    if (reserved === 0) {
      throw new AdmissionConfigError(`${where} has reserved concurrency 0: Lambda throttles every invocation, there is nothing to admit`);
    }
    if (limit !== undefined && reserved !== undefined && limit > reserved) {
      throw new AdmissionConfigError(
        `limit ${limit} is above ${where}'s reserved concurrency ${reserved}: Lambda throttles at ${reserved}, so the ` +
          `layer would admit what Lambda then turns into 500s; use a limit of at most ${reserved}, or raise the reservation`,
      );
    }
    return (limit ?? reserved) as number;
  }

  private environmentFor(fn: lambda.Function, n: number, options: ProtectOptions, managedInstances: boolean): { [name: string]: string } {
    const env: { [name: string]: string } = { [v.AWS_LAMBDA_EXEC_WRAPPER]: WRAPPER_PATH, ...this.coordinatorConfig.environment };
    if (options.mode !== undefined) {
      if (!Object.values(AdmissionMode).includes(options.mode)) {
        throw new AdmissionConfigError(`mode (${v.ADMISSION_MODE}) is "${options.mode}": expected one of ${Object.values(AdmissionMode).join(', ')}`);
      }
      env[v.ADMISSION_MODE] = options.mode;
    }

    if (options.adaptive !== undefined) {
      const a = options.adaptive;
      env[v.ADMISSION_LIMIT] = 'adaptive';
      env[v.ADMISSION_LIMIT_MAX] = String(n);
      if (a.controller !== undefined) {
        if (!Object.values(AdaptiveController).includes(a.controller)) {
          throw new AdmissionConfigError(`adaptive.controller (${v.ADMISSION_ADAPTIVE}) is "${a.controller}": expected gradient or aimd`);
        }
        env[v.ADMISSION_ADAPTIVE] = a.controller;
      }
      if (a.windowMs !== undefined) {
        env[v.ADMISSION_ADAPTIVE_WINDOW_MS] = String(integer(a.windowMs, 100, 60_000, 'adaptive.windowMs', v.ADMISSION_ADAPTIVE_WINDOW_MS));
      }
      if (a.min !== undefined) {
        env[v.ADMISSION_LIMIT_MIN] = String(integer(a.min, 1, n, 'adaptive.min', v.ADMISSION_LIMIT_MIN));
      }
    } else if (options.limitFromLambdaApi) {
      // Left unset: the extension reads it from the Lambda API.
    } else if (managedInstances && !this.coordinatorConfig.shared && options.limit === undefined) {
      // Left unset: on Managed Instances the local coordinator takes each environment's own
      // concurrency (AWS_LAMBDA_MAX_CONCURRENCY); the reserved concurrency is the fleet's.
    } else {
      env[v.ADMISSION_LIMIT] = String(n);
    }

    const rules = (list: string[] | undefined, option: string, variable: string) => {
      if (list === undefined || list.length === 0) {
        return;
      }
      for (const rule of list) {
        const error = ruleError(rule);
        if (error !== undefined) {
          throw new AdmissionConfigError(`${option} (${variable}) has the rule "${rule}": expected ${error}`);
        }
      }
      env[variable] = list.map((r) => r.trim()).join(',');
    };
    rules(options.exempt, 'exempt', v.ADMISSION_EXEMPT);
    rules(options.critical, 'critical', v.ADMISSION_CRITICAL);
    rules(options.sheddable, 'sheddable', v.ADMISSION_SHEDDABLE);
    // A setting that only takes effect with something else set is refused without it: it would
    // look configured and do nothing.
    const needs = (value: unknown, option: string, present: boolean, what: string) => {
      if (value !== undefined && !present) {
        throw new AdmissionConfigError(`${option} on ${fn.node.path} has no effect without ${what}`);
      }
    };
    needs(options.sheddableAt, 'sheddableAt', !!options.sheddable?.length, 'sheddable rules');
    needs(options.criticalReserve, 'criticalReserve', !!options.critical?.length, 'critical rules');
    needs(options.tenantOverAt, 'tenantOverAt', options.tenant !== undefined, 'tenant');
    needs(options.tenantReserve, 'tenantReserve', options.tenant !== undefined, 'tenant');
    if (options.sheddableAt !== undefined) {
      env[v.ADMISSION_SHEDDABLE_AT] = share(options.sheddableAt, 'sheddableAt', v.ADMISSION_SHEDDABLE_AT);
    }
    if (options.criticalReserve !== undefined) {
      env[v.ADMISSION_CRITICAL_RESERVE] = share(options.criticalReserve, 'criticalReserve', v.ADMISSION_CRITICAL_RESERVE);
    }
    if (options.tenant !== undefined) {
      const error = tenantError(options.tenant);
      if (error !== undefined) {
        throw new AdmissionConfigError(`tenant (${v.ADMISSION_TENANT}) is "${options.tenant}": expected ${error}`);
      }
      env[v.ADMISSION_TENANT] = options.tenant;
    }
    if (options.tenantOverAt !== undefined) {
      env[v.ADMISSION_TENANT_OVER_AT] = number(options.tenantOverAt, 1, 100, 'tenantOverAt', v.ADMISSION_TENANT_OVER_AT);
    }
    if (options.tenantReserve !== undefined) {
      env[v.ADMISSION_TENANT_RESERVE] = share(options.tenantReserve, 'tenantReserve', v.ADMISSION_TENANT_RESERVE);
    }
    return { ...env, ...(options.environment ?? {}) };
  }

  private layerFor(arch: ArchitectureName, where: string): lambda.ILayerVersion {
    const existing = this.layers.get(arch);
    if (existing !== undefined) {
      return existing;
    }
    const id = `Layer-${arch}`;
    const arn = this.props.layerArns?.[arch];
    let layer: lambda.ILayerVersion;
    if (arn !== undefined) {
      layer = lambda.LayerVersion.fromLayerVersionArn(this, id, arn);
    } else {
      const zip = findZip(arch, this.props.layerDirectory);
      if (zip === undefined) {
        const given = Object.keys(this.props.layerArns ?? {});
        throw new AdmissionConfigError(
          `no ${arch} layer for ${where}: ${given.length > 0 ? `layerArns has ${given.join(', ')} only, and ` : ''}` +
            `no ${zipName(arch)} in ${searchDirectories(this.props.layerDirectory).join(', ')}. ` +
            `Build it with layer-build/build.sh ${arch} (writes dist/${zipName(arch)}), set layerDirectory to where it is, ` +
            `or give layerArns: { ${arch}: 'arn:aws:lambda:...:layer:lambda-admission:N' }`,
        );
      }
      layer = new lambda.LayerVersion(this, id, {
        code: lambda.Code.fromAsset(zip),
        compatibleArchitectures: [arch === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64],
        description: `lambda-admission (${arch}): concurrency admission control, a 429 with Retry-After instead of a throttle`,
        license: 'Apache-2.0',
      });
    }
    this.layers.set(arch, layer);
    return layer;
  }

  /**
   * Another wrapper (a tracer's, say) set after protect() would silently unplug the layer: only
   * one AWS_LAMBDA_EXEC_WRAPPER runs. Checked when the app synthesizes, after all changes.
   */
  private checkWrapper(fn: lambda.Function, cfn: lambda.CfnFunction, expected: string | undefined) {
    fn.node.addValidation({
      validate: () => {
        const resolved = Stack.of(fn).resolve(cfn.environment) as { variables?: { [name: string]: unknown } } | undefined;
        const actual = resolved?.variables?.[v.AWS_LAMBDA_EXEC_WRAPPER];
        return actual === expected
          ? []
          : [
            `lambda-admission: ${fn.node.path} has ${v.AWS_LAMBDA_EXEC_WRAPPER}=${JSON.stringify(actual)}, set after protect(): ` +
                `the layer only runs with ${expected}. Only one wrapper runs; to change it on purpose, pass it in protect()'s environment`,
          ];
      },
    });
  }

  private warnOsOnlyRuntime(fn: lambda.Function) {
    if (fn.runtime.family === lambda.RuntimeFamily.OTHER) {
      Annotations.of(fn).addWarningV2(
        'lambda-admission:os-only-runtime',
        `${fn.node.path} runs on ${fn.runtime.name}, where Lambda ignores AWS_LAMBDA_EXEC_WRAPPER: start the function through ` +
          `${WRAPPER_PATH} in its bootstrap (docs/deploy.md, "Rust, Go and other functions on provided.*"), or the layer admits everything.`,
      );
    }
  }

  /** A function in a VPC reaches a public endpoint only through a NAT gateway. */
  private checkRoute(fn: lambda.Function, cfn: lambda.CfnFunction) {
    const config = cfn.vpcConfig;
    if (config === undefined) {
      return;
    }
    const subnetIds = Token.isUnresolved(config) ? undefined : (config as lambda.CfnFunction.VpcConfigProperty).subnetIds;
    if (subnetIds !== undefined && subnetIds.length === 0) {
      return;
    }
    const kinds = subnetKinds(fn.node.root);
    const found = (subnetIds ?? []).map((id) => kinds.get(id));
    const warn = (detail: string) =>
      Annotations.of(fn).addWarningV2(
        'lambda-admission:no-route-to-coordinator',
        `${fn.node.path} is in a VPC and the coordinator is a public endpoint: ${detail} ` +
          'Without that route every decision fails open (nothing is shed). Put the function in PRIVATE_WITH_EGRESS subnets, ' +
          'take it out of the VPC, or use Coordinator.redis() with a cache in the VPC.',
      );
    if (found.length > 0 && found.every((k) => k === 'isolated' || k === 'public')) {
      warn(
        'its subnets are isolated or public, and neither routes a Lambda function to the internet ' +
          '(isolated subnets have no NAT; Lambda\'s interfaces get no public address).',
      );
    } else if (found.length === 0 || found.some((k) => k === undefined)) {
      warn('could not tell from this app whether its subnets route to the internet; they need a NAT gateway.');
    }
  }

  /** The stage throttle (8 × N, burst N) and a `THROTTLED` response with status 429 and `Retry-After`. */
  private applyRecipe(api: apigateway.IRestApi | apigateway.Stage, fn: lambda.Function, n: number): apigateway.Stage {
    // Resources are told apart by their CloudFormation type, not `instanceof`: an app that installs
    // this library from a folder loads a second copy of aws-cdk-lib, whose classes are others.
    let stage: apigateway.Stage | undefined;
    if (isCfnOf(api.node.defaultChild, 'AWS::ApiGateway::Stage')) {
      stage = api as apigateway.Stage;
    } else {
      try {
        stage = (api as apigateway.IRestApi).deploymentStage;
      } catch {
        stage = undefined;
      }
    }
    const cfnStage = stage?.node.defaultChild;
    if (stage === undefined || !isCfnOf(cfnStage, 'AWS::ApiGateway::Stage')) {
      throw new AdmissionConfigError(
        `the api given for ${fn.node.path} has no deployment stage defined in this app: pass the apigateway.Stage in front of the function`,
      );
    }
    const stageResource = cfnStage as apigateway.CfnStage;
    const cap = RATE_CAP_PER_UNIT * n;
    const recipeRate = STAGE_RATE_PER_UNIT * n;
    const settings = stageResource.methodSettings;
    if (settings !== undefined && Token.isUnresolved(settings)) {
      throw new AdmissionConfigError(`${stage.node.path}'s method settings are a token: the stage throttle cannot be checked or set`);
    }
    const list = [...((settings as (apigateway.CfnStage.MethodSettingProperty | object)[] | undefined) ?? [])];
    let stageWide = false;
    const updated = list.map((entry) => {
      if (Token.isUnresolved(entry)) {
        return entry;
      }
      const s = entry as apigateway.CfnStage.MethodSettingProperty;
      const rate = s.throttlingRateLimit;
      const burst = s.throttlingBurstLimit;
      const what = `${stage!.node.path} throttles ${decodePath(s.resourcePath ?? '/*')} ${s.httpMethod ?? '*'}`;
      if (rate !== undefined && !Token.isUnresolved(rate) && rate > cap) {
        throw new AdmissionConfigError(
          `${what} at ${rate} requests a second, above ` +
            `Lambda's invoke-rate cap for ${fn.node.path} (10 × ${n} = ${cap}): Lambda would throttle the excess into 500s. ` +
            `Lower it to at most ${cap} (the recipe: ${recipeRate}, burst ${n}), or leave it unset and let protect() set it`,
        );
      }
      // A full bucket lets `burst` through at once on top of the rate: together within the cap.
      const effectiveRate = rate === undefined || Token.isUnresolved(rate) ? recipeRate : rate;
      if (burst !== undefined && !Token.isUnresolved(burst) && effectiveRate + burst > cap) {
        throw new AdmissionConfigError(
          `${what} with a burst of ${burst} on top of ${effectiveRate} a second: a full bucket lets ${effectiveRate + burst} ` +
            `through in a second, above Lambda's cap for ${fn.node.path} (10 × ${n} = ${cap}). ` +
            `Lower the burst to at most ${cap - effectiveRate} (the recipe: ${n})`,
        );
      }
      if (s.resourcePath === '/*' && s.httpMethod === '*') {
        stageWide = true;
        if (rate === undefined) {
          return { ...s, throttlingRateLimit: recipeRate, throttlingBurstLimit: burst ?? n };
        }
      }
      return s;
    });
    if (!stageWide) {
      updated.push({ httpMethod: '*', resourcePath: '/*', throttlingRateLimit: recipeRate, throttlingBurstLimit: n });
    }
    stageResource.methodSettings = updated;
    // Methods can still be added after protect(): counted when the app is synthesized.
    this.node.addValidation({ validate: () => methodsOverCap(stage!, stageResource, fn, n) });
    this.throttledResponse(stage.restApi);
    return stage;
  }

  private throttledResponse(restApi: apigateway.IRestApi) {
    const existing = restApi.node
      .findAll()
      .find((c) => isCfnOf(c, 'AWS::ApiGateway::GatewayResponse') && (c as apigateway.CfnGatewayResponse).responseType === 'THROTTLED') as
      | apigateway.CfnGatewayResponse
      | undefined;
    if (existing !== undefined) {
      // Yours (or this construct's, for another function on the same API): kept.
      if (existing.statusCode !== undefined && existing.statusCode !== '429') {
        Annotations.of(existing).addWarningV2(
          'lambda-admission:throttled-status',
          `the THROTTLED gateway response of ${restApi.node.path} answers ${existing.statusCode}: clients and SDKs retry a 429 with Retry-After`,
        );
      }
      return;
    }
    new apigateway.GatewayResponse(restApi, 'LambdaAdmissionThrottled', {
      restApi,
      type: apigateway.ResponseType.THROTTLED,
      statusCode: '429',
      // The bucket refills at the stage rate: a second is the honest wait.
      responseHeaders: { 'Retry-After': "'1'" },
    });
  }

  private observe(fn: lambda.Function, observed: Observed): Protection {
    const scope = new Construct(this, `Monitor-${Names.nodeUniqueId(fn.node)}`);
    const alarms: Alarms = createAlarms(scope, observed);
    this._alarms.push(alarms.throttles, alarms.failOpen, ...(alarms.invokeRate ? [alarms.invokeRate] : []), alarms.shedShare);
    let dashboard: cw.Dashboard | undefined;
    const mode = this.props.dashboard ?? DashboardMode.PER_FUNCTION;
    if (mode === DashboardMode.PER_FUNCTION) {
      dashboard = new cw.Dashboard(scope, 'Dashboard');
      this._dashboards.push(dashboard);
    } else if (mode === DashboardMode.SHARED) {
      if (this.sharedDashboard === undefined) {
        this.sharedDashboard = new cw.Dashboard(this, 'Dashboard');
        this._dashboards.push(this.sharedDashboard);
      }
      dashboard = this.sharedDashboard;
    }
    for (const row of dashboard === undefined ? [] : widgets(observed, alarms)) {
      dashboard!.addWidgets(...row);
    }
    return {
      limit: observed.limit,
      throttlesAlarm: alarms.throttles,
      failOpenAlarm: alarms.failOpen,
      invokeRateAlarm: alarms.invokeRate,
      shedShareAlarm: alarms.shedShare,
      dashboard,
    };
  }
}

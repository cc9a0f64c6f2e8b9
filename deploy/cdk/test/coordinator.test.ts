import { strict as assert } from 'assert';
import { describe, test } from 'node:test';
import { Fn } from 'aws-cdk-lib';
import { Template, Match } from 'aws-cdk-lib/assertions';
import { Coordinator, LambdaAdmission } from '../src';
import { LAYERS, envOf, fn, stack } from './helpers';

describe('Coordinator.valkeyServerless', () => {
  test('creates one public Valkey 9 serverless cache with an IAM user limited to the admission keys', () => {
    const s = stack();
    const admission = new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless(), layerDirectory: LAYERS });
    admission.protect(fn(s, 'One', { reserved: 20 }));
    admission.protect(fn(s, 'Two', { reserved: 5 }));
    const t = Template.fromStack(s);

    t.resourceCountIs('AWS::ElastiCache::ServerlessCache', 1);
    const caches = t.findResources('AWS::ElastiCache::ServerlessCache');
    const cache = Object.values(caches)[0] as any;
    const name: string = cache.Properties.ServerlessCacheName;
    assert.match(name, /^[a-z][a-z0-9-]{0,39}$/);
    assert.equal(cache.Properties.Engine, 'valkey');
    assert.equal(cache.Properties.MajorEngineVersion, '9');
    assert.equal(cache.Properties.ConnectionType, 'public');
    assert.equal(cache.Properties.UserGroupId, name);
    assert.equal(cache.Properties.CacheUsageLimits, undefined);

    t.hasResourceProperties('AWS::ElastiCache::User', {
      Engine: 'valkey',
      UserId: name,
      UserName: name,
      AuthenticationMode: { Type: 'iam' },
      AccessString: Match.stringLikeRegexp('^on ~lambda-admission:\\* -@all .*\\+evalsha .*\\+zadd'),
    });
    t.hasResourceProperties('AWS::ElastiCache::UserGroup', { Engine: 'valkey', UserGroupId: name, UserIds: [name] });

    for (const id of ['One', 'Two']) {
      const env = envOf(t, id);
      assert.deepEqual(env.ADMISSION_COORDINATOR, {
        'Fn::Join': ['', [`rediss://${name}@`, { 'Fn::GetAtt': [Object.keys(caches)[0], 'Endpoint.Address'] }, ':', { 'Fn::GetAtt': [Object.keys(caches)[0], 'Endpoint.Port'] }]],
      });
      assert.equal(env.ADMISSION_REDIS_AUTH, 'iam');
      assert.equal(env.ADMISSION_REDIS_IAM_CACHE, name);
      assert.equal(env.ADMISSION_REDIS_IAM_SERVERLESS, 'true');
      assert.equal(env.ADMISSION_COORDINATOR_TIMEOUT_MS, '15');
      assert.equal(env.AWS_LAMBDA_EXEC_WRAPPER, '/opt/lambda-admission-wrapper');
      // Each function keeps its own pool: the extension's default, the function's name.
      assert.equal(env.ADMISSION_POOL, undefined);
    }

    const arn = (resource: string) => ({
      'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:elasticache:us-east-1:123456789012:${resource}:${name}`]],
    });
    t.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Action: 'elasticache:Connect', Effect: 'Allow', Resource: [arn('serverlesscache'), arn('user')] }),
        ]),
      },
    });
    assert.equal(admission.serverlessCache?.serverlessCacheName, name);
  });

  test('cost caps, a chosen name and a budget', () => {
    const s = stack();
    const admission = new LambdaAdmission(s, 'Admission', {
      coordinator: Coordinator.valkeyServerless({ cacheName: 'orders-admission', maxEcpuPerSecond: 5000, maxDataStorageGb: 1, timeoutMs: 20 }),
      layerDirectory: LAYERS,
    });
    admission.protect(fn(s, 'Fn', { reserved: 10 }));
    const t = Template.fromStack(s);
    t.hasResourceProperties('AWS::ElastiCache::ServerlessCache', {
      ServerlessCacheName: 'orders-admission',
      CacheUsageLimits: { ECPUPerSecond: { Maximum: 5000 }, DataStorage: { Maximum: 1, Unit: 'GB' } },
    });
    assert.equal(envOf(t, 'Fn').ADMISSION_COORDINATOR_TIMEOUT_MS, '20');
  });

  test('refuses a cache name ElastiCache would refuse', () => {
    const s = stack();
    assert.throws(
      () => new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.valkeyServerless({ cacheName: 'Orders_Cache' }), layerDirectory: LAYERS }),
      /cacheName "Orders_Cache" must be 1 to 40 lower-case/,
    );
  });
});

describe('Coordinator.redis', () => {
  test('with IAM: the URL, the cache name and elasticache:Connect on the cache and the user', () => {
    const s = stack();
    const admission = new LambdaAdmission(s, 'Admission', {
      coordinator: Coordinator.redis({ url: 'rediss://admission@orders-abc.serverless.use1.cache.amazonaws.com:6379', iamCache: 'orders' }),
      layerDirectory: LAYERS,
    });
    admission.protect(fn(s, 'Fn', { reserved: 10 }));
    const t = Template.fromStack(s);
    const env = envOf(t, 'Fn');
    assert.equal(env.ADMISSION_COORDINATOR, 'rediss://admission@orders-abc.serverless.use1.cache.amazonaws.com:6379');
    assert.equal(env.ADMISSION_REDIS_AUTH, 'iam');
    assert.equal(env.ADMISSION_REDIS_IAM_CACHE, 'orders');
    assert.equal(env.ADMISSION_COORDINATOR_TIMEOUT_MS, undefined);
    const arn = (resource: string) => ({
      'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:elasticache:us-east-1:123456789012:${resource}`]],
    });
    t.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: 'elasticache:Connect',
            Resource: [arn('serverlesscache:orders'), arn('replicationgroup:orders'), arn('user:admission')],
          }),
        ]),
      },
    });
    t.resourceCountIs('AWS::ElastiCache::ServerlessCache', 0);
  });

  test('without IAM: only the URL, no permission', () => {
    const s = stack();
    const admission = new LambdaAdmission(s, 'Admission', {
      coordinator: Coordinator.redis({ url: 'redis://10.0.0.5:6379', timeoutMs: 8 }),
      layerDirectory: LAYERS,
    });
    admission.protect(fn(s, 'Fn', { reserved: 10 }));
    const t = Template.fromStack(s);
    const env = envOf(t, 'Fn');
    assert.equal(env.ADMISSION_COORDINATOR, 'redis://10.0.0.5:6379');
    assert.equal(env.ADMISSION_COORDINATOR_TIMEOUT_MS, '8');
    assert.equal(env.ADMISSION_REDIS_AUTH, undefined);
    assert.equal(JSON.stringify(t.findResources('AWS::IAM::Policy')).includes('elasticache'), false);
  });

  test('IAM needs TLS, a user and no password in the URL', () => {
    const bind = (url: string, iamUser?: string) => () =>
      new LambdaAdmission(stack(), 'Admission', { coordinator: Coordinator.redis({ url, iamCache: 'orders', iamUser }), layerDirectory: LAYERS });
    assert.throws(bind('redis://admission@host:6379'), /must be rediss:\/\//);
    assert.throws(bind('rediss://host:6379'), /rediss:\/\/USER@host:port/);
    assert.throws(bind('rediss://admission:secret@host:6379'), /no password/);
    assert.throws(bind('rediss://admission@host:6379', 'other'), /differs from the url's user/);
  });

  test('a token URL with IAM needs iamUser', () => {
    const s = stack();
    const url = Fn.importValue('CacheUrl');
    assert.throws(
      () => new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.redis({ url, iamCache: 'orders' }), layerDirectory: LAYERS }),
      /give iamUser/,
    );
    new LambdaAdmission(s, 'Admission2', { coordinator: Coordinator.redis({ url, iamCache: 'orders', iamUser: 'admission' }), layerDirectory: LAYERS });
  });
});

describe('Coordinator.local', () => {
  test('leaves ADMISSION_COORDINATOR at its default', () => {
    const s = stack();
    new LambdaAdmission(s, 'Admission', { coordinator: Coordinator.local(), layerDirectory: LAYERS }).protect(fn(s, 'Fn', { reserved: 1 }));
    const env = envOf(Template.fromStack(s), 'Fn');
    assert.equal(env.ADMISSION_COORDINATOR, undefined);
    assert.equal(env.ADMISSION_LIMIT, '1');
    assert.equal(env.AWS_LAMBDA_EXEC_WRAPPER, '/opt/lambda-admission-wrapper');
  });
});

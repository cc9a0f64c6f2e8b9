"""Checks on deploy/sam/template.yaml that cfn-lint and `sam validate` cannot make.

cfn-lint checks types and property names; neither it nor SAM evaluates the template's Rules
against parameter values (cfn-lint only uses Rules to prune impossible condition combinations,
SAM copies them through). So this script carries a small evaluator of CloudFormation's
intrinsic functions and checks, for every N and for a set of parameter sets:

  sizes     every Sizes row is Rate = 8N, Burst = N, InvokeRateAlarm = 9.5N, and the rows and
            ReservedConcurrency's AllowedValues are the same set
  throttle  the stage throttle, the reservation, ADMISSION_LIMIT and the invoke-rate alarm all
            resolve from the same N; the methods that invoke the function, each with its own
            bucket of the stage's rate, add up to at most 8N
  rules     the parameter sets CloudFormation must refuse (local without the acknowledgement,
            redis without a URL, ...) are refused, by the Rules or the parameters' constraints,
            and the ones it must accept are accepted
  config    the function's variables under every accepted set: names exactly those of
            extension/src/config/mod.rs VARIABLES, and a combination the extension's init accepts
            (e.g. ADMISSION_REDIS_AUTH=iam only with a rediss://USER@ URL and a cache name),
            with elasticache:Connect on that cache and user, and the cache only when used
  layer     the layer attached is the one built for the function's architecture
  acl       the cache user's access string allows every command the extension sends, including
            those its Lua scripts call (Redis and Valkey check ACLs inside scripts too)
  metrics   the dashboard's body is JSON once resolved; every metric of the extension it and the
            alarms read exists (extension/src/decision/metrics.rs), with the dimension set [FunctionName],
            Sum for counts and Maximum for gauges, missing data not breaching; API Gateway's
            metrics name the API the template creates
  stages    after SAM's own transform (samtranslator, offline): every API Gateway stage that
            exists carries the throttle (SAM makes an unthrottled stage named "Stage" unless told
            not to), and the methods that invoke the function add up to at most 8N
  blocks    the README's "lambda-admission: begin/end NAME" markers pair up and stay short

`--self-test` breaks the template in memory in one way per check and fails unless each break
is caught: a check that cannot fail proves nothing. `--acl-dryrun` also gives the access string
to a real redis-server (7.0 or later, on loopback) and asks it, with ACL DRYRUN, whether each of
those commands is allowed on the extension's keys and a few others are refused.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from cfnlint.decode import decode

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TEMPLATE = HERE / "template.yaml"
CONFIG_RS = REPO / "extension" / "src" / "config" / "mod.rs"
METRICS_RS = REPO / "extension" / "src" / "decision" / "metrics.rs"
WRAPPER = REPO / "layer-build" / "lambda-admission-wrapper"

PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "admission-demo",
    "AWS::URLSuffix": "amazonaws.com",
}
NO_VALUE = object()
# Besides the commands in the extension's own source, redis-rs sends these for it: SCRIPT LOAD
# when EVALSHA answers NOSCRIPT, CLUSTER SLOTS to learn a cluster's shards (ElastiCache
# Serverless is one), ASKING to follow a slot that is moving.
CLIENT_LIBRARY_COMMANDS = {"evalsha", "script", "cluster|slots", "asking"}
BLOCK_MAX_LINES = 40


class Refused(Exception):
    """CloudFormation would refuse this parameter set."""


def load(path: Path = TEMPLATE) -> dict:
    template, matches = decode(str(path))
    if matches:
        raise SystemExit(f"{path}: cannot parse: {matches}")
    return json.loads(json.dumps(template))


class Stack:
    """The template resolved for one parameter set, as CloudFormation would see it."""

    def __init__(self, template: dict, overrides: dict[str, str]):
        self.t = template
        self.params = self._parameters(overrides)
        self._conditions: dict[str, bool] = {}

    def _parameters(self, overrides: dict[str, str]) -> dict:
        declared = self.t.get("Parameters", {})
        unknown = set(overrides) - set(declared)
        if unknown:
            raise AssertionError(f"no such parameters: {sorted(unknown)}")
        values = {}
        for name, p in declared.items():
            if name in overrides:
                raw = overrides[name]
            elif "Default" in p:
                raw = p["Default"]
            else:
                raise Refused(f"{name}: no value and no default")
            raw = str(raw)
            allowed = p.get("AllowedValues")
            if allowed is not None and raw not in [str(a) for a in allowed]:
                raise Refused(f"{name}={raw!r} is not one of {allowed}")
            if "MaxLength" in p and len(raw) > int(p["MaxLength"]):
                raise Refused(f"{name}={raw!r} is longer than {p['MaxLength']}")
            if "MinLength" in p and len(raw) < int(p["MinLength"]):
                raise Refused(f"{name}={raw!r} is shorter than {p['MinLength']}")
            pattern = p.get("AllowedPattern")
            if p["Type"] == "CommaDelimitedList":
                value = [s.strip() for s in raw.split(",")] if raw else [""]
                items = value
            else:
                value, items = raw, [raw]
            if pattern is not None:
                for item in items:
                    if not re.fullmatch(pattern, item):
                        raise Refused(f"{name}={item!r} does not match {pattern}")
            if p["Type"] == "Number":
                number = float(raw)
                if "MinValue" in p and number < float(p["MinValue"]):
                    raise Refused(f"{name}={raw} is below {p['MinValue']}")
                if "MaxValue" in p and number > float(p["MaxValue"]):
                    raise Refused(f"{name}={raw} is above {p['MaxValue']}")
            values[name] = value
        return values

    def check_rules(self) -> None:
        for name, rule in self.t.get("Rules", {}).items():
            if "RuleCondition" in rule and not self.ev(rule["RuleCondition"]):
                continue
            for assertion in rule["Assertions"]:
                if self.ev(assertion["Assert"]) is not True:
                    raise Refused(f"rule {name}: {assertion.get('AssertDescription', '')}")

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            value = self.ev(self.t["Conditions"][name])
            if not isinstance(value, bool):
                raise AssertionError(f"condition {name} is not a boolean: {value!r}")
            self._conditions[name] = value
        return self._conditions[name]

    def exists(self, logical_id: str) -> bool:
        resource = self.t["Resources"][logical_id]
        return "Condition" not in resource or self.condition(resource["Condition"])

    def ref(self, name: str):
        if name in self.params:
            return self.params[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        resource = self.t["Resources"].get(name)
        if resource is None:
            raise AssertionError(f"Ref to nothing: {name}")
        if not self.exists(name):
            raise AssertionError(f"Ref to {name}, which this parameter set does not create")
        # What Ref returns for the resources whose value the checks look at.
        naming = {
            "AWS::ElastiCache::ServerlessCache": "ServerlessCacheName",
            "AWS::ElastiCache::User": "UserId",
            "AWS::ElastiCache::UserGroup": "UserGroupId",
        }.get(resource["Type"])
        if naming:
            return self.ev(resource["Properties"][naming])
        return f"<{name}>"

    def get_att(self, name: str, attribute: str) -> str:
        if name not in self.t["Resources"]:
            raise AssertionError(f"GetAtt of nothing: {name}")
        if not self.exists(name):
            raise AssertionError(f"GetAtt of {name}, which this parameter set does not create")
        return f"<{name}.{attribute}>"

    def sub(self, text: str, variables: dict) -> str:
        def one(m: re.Match) -> str:
            key = m.group(1)
            if key.startswith("!"):
                return "${" + key[1:] + "}"
            if key in variables:
                return str(variables[key])
            if "." in key and not key.startswith("AWS::"):
                return self.get_att(*key.split(".", 1))
            value = self.ref(key)
            if isinstance(value, list):
                raise AssertionError(f"Sub of a list: {key}")
            return str(value)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def ev(self, node):
        if isinstance(node, list):
            return [v for v in (self.ev(x) for x in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (fn, arg), = node.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::If":
                name, yes, no = arg
                return self.ev(yes if self.condition(name) else no)
            if fn == "Fn::Equals":
                a, b = (self.ev(x) for x in arg)
                return _scalar(a) == _scalar(b)
            if fn == "Fn::Not":
                return not self.ev(arg[0])
            if fn == "Fn::And":
                return all(self.ev(x) for x in arg)
            if fn == "Fn::Or":
                return any(self.ev(x) for x in arg)
            if fn == "Fn::FindInMap":
                mapping, top, second = (self.ev(x) for x in arg)
                try:
                    return self.t["Mappings"][mapping][str(top)][second]
                except KeyError as e:
                    raise Refused(f"FindInMap {mapping}/{top}/{second}: no {e}") from None
            if fn == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                text, variables = arg
                return self.sub(text, {k: self.ev(v) for k, v in variables.items()})
            if fn == "Fn::GetAtt":
                name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(name, attribute)
            if fn == "Fn::Join":
                sep, items = arg
                return sep.join(str(x) for x in self.ev(items))
            if fn == "Fn::Split":
                sep, text = arg
                return str(self.ev(text)).split(sep)
            if fn == "Fn::Select":
                index, items = arg
                items = self.ev(items)
                index = int(self.ev(index))
                if index >= len(items):
                    raise AssertionError(f"Fn::Select {index} out of {items!r}")
                return items[index]
            if fn.startswith("Fn::"):
                raise AssertionError(f"the checker does not evaluate {fn}")
        return {k: v for k, v in ((k, self.ev(v)) for k, v in node.items()) if v is not NO_VALUE}


def _scalar(v):
    return v if isinstance(v, (bool, list)) else str(v)


def _sizes(t: dict) -> tuple[list[int], dict]:
    allowed = [int(v) for v in t["Parameters"]["ReservedConcurrency"]["AllowedValues"]]
    return allowed, t["Mappings"]["Sizes"]


def check_sizes(t: dict) -> list[str]:
    errors = []
    allowed, rows = _sizes(t)
    for key, row in rows.items():
        n = int(key)
        want = {"Rate": 8 * n, "Burst": n, "InvokeRateAlarm": 9.5 * n}
        got = {k: row.get(k) for k in want}
        if got != want or set(row) != set(want):
            errors.append(f"Sizes/{key}: {row} (want {want})")
    for n in allowed:
        if str(n) not in rows:
            errors.append(f"ReservedConcurrency allows {n}, but Sizes has no row {n}")
    for key in rows:
        if int(key) not in allowed:
            errors.append(f"Sizes row {key} is not among ReservedConcurrency's AllowedValues")
    return errors


def check_throttle(t: dict) -> list[str]:
    errors = []
    allowed, _ = _sizes(t)
    api_methods = [
        e for e in t["Resources"]["Function"]["Properties"].get("Events", {}).values()
        if e.get("Type") == "Api"
    ]
    for n in allowed:
        s = Stack(t, {"ReservedConcurrency": str(n)})
        settings = s.ev(t["Resources"]["Api"]["Properties"]["MethodSettings"])
        stage = [m for m in settings if m.get("ResourcePath") == "/*" and m.get("HttpMethod") == "*"]
        if len(stage) != 1:
            errors.append(f"N={n}: want one stage-wide MethodSettings entry (/*, *), got {settings}")
            continue
        rate, burst = stage[0].get("ThrottlingRateLimit"), stage[0].get("ThrottlingBurstLimit")
        if (rate, burst) != (8 * n, n):
            errors.append(f"N={n}: stage throttle {rate}/s burst {burst}, want {8 * n}/s burst {n}")
        if rate is not None and len(api_methods) * rate > 8 * n:
            errors.append(
                f"N={n}: {len(api_methods)} API methods invoke the function, each with its own "
                f"{rate}/s bucket: up to {len(api_methods) * rate}/s, over 8 x N = {8 * n}"
            )
        fn = s.ev(t["Resources"]["Function"]["Properties"])
        if str(fn.get("ReservedConcurrentExecutions")) != str(n):
            errors.append(f"N={n}: ReservedConcurrentExecutions = {fn.get('ReservedConcurrentExecutions')}")
        limit = fn["Environment"]["Variables"].get("ADMISSION_LIMIT")
        if str(limit) != str(n):
            errors.append(f"N={n}: ADMISSION_LIMIT = {limit!r}")
        alarm = s.ev(t["Resources"]["InvokeRateAlarm"]["Properties"])
        if (alarm.get("MetricName"), alarm.get("Statistic"), alarm.get("Threshold")) != ("InvokeRate", "Maximum", 9.5 * n):
            errors.append(f"N={n}: InvokeRate alarm {alarm.get('Statistic')} > {alarm.get('Threshold')}, want Maximum > {9.5 * n}")
    return errors


# (parameters, what CloudFormation must do with them: None = accept, or a word of the reason)
SCENARIOS = [
    ({}, None),
    ({"Coordinator": "local"}, "LocalCoordinatorIsAcknowledged"),
    ({"Coordinator": "local", "AcknowledgeLocalProtectsNothing": "no"}, "LocalCoordinatorIsAcknowledged"),
    ({"Coordinator": "local", "AcknowledgeLocalProtectsNothing": "yes"}, None),
    ({"Coordinator": "redis"}, "RedisCoordinatorHasUrl"),
    ({"Coordinator": "redis", "RedisUrl": ""}, "RedisCoordinatorHasUrl"),
    ({"Coordinator": "redis", "RedisUrl": "cache.example.com:6379"}, "RedisUrl"),
    ({"Coordinator": "redis", "RedisUrl": "redis://cache.internal:6379"}, None),
    ({"Coordinator": "redis", "RedisUrl": "rediss://app:secret@cache.example.com:6379"}, None),
    ({"Coordinator": "redis", "RedisUrl": "rediss://admission@orders-abc123.serverless.use1.cache.amazonaws.com:6379",
      "RedisIamCache": "orders"}, None),
    ({"Coordinator": "redis", "RedisUrl": "redis://10.0.1.20:6379",
      "VpcSubnetIds": "subnet-0a1b2c3d,subnet-4e5f6a7b", "VpcSecurityGroupIds": "sg-0123456789abcdef0"}, None),
    ({"CacheName": "Orders"}, "CacheName"),
    ({"CacheName": "orders--cache"}, "CacheName"),
    ({"CacheName": "a" * 35}, "CacheName"),
    ({"CacheName": "a" * 34}, None),
    ({"CacheMaxDataStorageGB": "0", "CacheMaxECPUPerSecond": "0"}, None),
    ({"CacheMaxECPUPerSecond": "20000"}, None),
    ({"CacheMaxECPUPerSecond": "999"}, "CacheMaxECPUPerSecond"),
    ({"CacheMaxECPUPerSecond": "15000001"}, "CacheMaxECPUPerSecond"),
    ({"CoordinatorTimeoutMs": "8"}, None),
    ({"CoordinatorTimeoutMs": "0"}, "CoordinatorTimeoutMs"),
    ({"Mode": "observe", "Architecture": "arm64"}, None),
    ({"LayerArn": "arn:aws:lambda:us-east-1:123456789012:layer:lambda-admission:3"}, None),
    ({"MetricsNamespace": "AWS/Lambda"}, "MetricsNamespace"),
    ({"ReservedConcurrency": "25"}, "ReservedConcurrency"),
]


def resolve(t: dict, params: dict) -> Stack:
    s = Stack(t, params)
    s.check_rules()
    return s


def check_rules(t: dict) -> list[str]:
    errors = []
    for params, refusal in SCENARIOS:
        try:
            resolve(t, params)
            outcome = None
        except Refused as e:
            outcome = str(e)
        if refusal is None and outcome is not None:
            errors.append(f"{params}: refused, but must be accepted: {outcome}")
        elif refusal is not None and (outcome is None or refusal not in outcome):
            errors.append(f"{params}: {'accepted' if outcome is None else outcome}; must be refused ({refusal})")
    return errors


def extension_variables() -> set[str]:
    src = CONFIG_RS.read_text()
    consts = dict(re.findall(r'pub const (\w+): &str = "(ADMISSION_\w+)";', src))
    block = re.search(r"pub const VARIABLES: &\[Variable\] = &\[(.*?)\];", src, re.S)
    if not block:
        raise SystemExit(f"{CONFIG_RS}: no VARIABLES table")
    names = {consts[i] for i in re.findall(r"var\((\w+),", block.group(1)) if i in consts}
    if len(names) < 10:
        raise SystemExit(f"{CONFIG_RS}: read only {len(names)} variables from VARIABLES")
    return names


def _connect_resources(fn: dict) -> set[str]:
    arns = set()
    for policy in fn.get("Policies", []):
        for st in policy.get("Statement", []) if isinstance(policy, dict) else []:
            actions = st.get("Action")
            actions = actions if isinstance(actions, list) else [actions]
            if st.get("Effect") == "Allow" and "elasticache:Connect" in actions:
                res = st.get("Resource")
                arns.update(res if isinstance(res, list) else [res])
    return arns


def check_config(t: dict) -> list[str]:
    errors = []
    names = extension_variables()
    arn = "arn:aws:elasticache:us-east-1:123456789012:"
    for params, refusal in SCENARIOS:
        if refusal is not None:
            continue
        where = json.dumps(params)
        s = resolve(t, params)
        fn = s.ev(t["Resources"]["Function"]["Properties"])
        env = fn["Environment"]["Variables"]
        blank = lambda k: str(env.get(k, "")) == ""  # noqa: E731 - the extension's "unset"
        for k in env:
            if k.startswith("ADMISSION_") and k not in names:
                errors.append(f"{where}: {k} is not a variable of the extension (config/mod.rs VARIABLES)")
        if env.get("AWS_LAMBDA_EXEC_WRAPPER") != f"/opt/{WRAPPER.name}" or not WRAPPER.exists():
            errors.append(f"{where}: AWS_LAMBDA_EXEC_WRAPPER = {env.get('AWS_LAMBDA_EXEC_WRAPPER')!r}, the layer ships /opt/{WRAPPER.name}")
        if env.get("ADMISSION_MODE") != s.params["Mode"]:
            errors.append(f"{where}: ADMISSION_MODE = {env.get('ADMISSION_MODE')!r}")
        if env.get("ADMISSION_METRICS_NAMESPACE") != s.params["MetricsNamespace"]:
            errors.append(f"{where}: ADMISSION_METRICS_NAMESPACE does not follow MetricsNamespace")
        coordinator = str(env.get("ADMISSION_COORDINATOR", ""))
        auth = str(env.get("ADMISSION_REDIS_AUTH", "")) or "password"
        kind = s.params["Coordinator"]
        cache_resources = ["Cache", "CacheUser", "CacheUserGroup"]
        if kind == "valkey-serverless":
            user = s.ref("CacheUser")
            want = f"rediss://{user}@<Cache.Endpoint.Address>:<Cache.Endpoint.Port>"
            if coordinator != want:
                errors.append(f"{where}: ADMISSION_COORDINATOR = {coordinator!r}, want {want!r}")
            if auth != "iam" or env.get("ADMISSION_REDIS_IAM_CACHE") != s.ref("Cache"):
                errors.append(f"{where}: valkey-serverless needs ADMISSION_REDIS_AUTH=iam and ADMISSION_REDIS_IAM_CACHE=<the cache's name>")
            if env.get("ADMISSION_REDIS_IAM_SERVERLESS") != "true":
                errors.append(f"{where}: ADMISSION_REDIS_IAM_SERVERLESS must be true for a serverless cache")
            want_timeout = s.params["CoordinatorTimeoutMs"] or "15"
            if env.get("ADMISSION_COORDINATOR_TIMEOUT_MS") != want_timeout:
                errors.append(f"{where}: ADMISSION_COORDINATOR_TIMEOUT_MS = {env.get('ADMISSION_COORDINATOR_TIMEOUT_MS')!r}, want {want_timeout}")
            props = s.ev(t["Resources"]["CacheUser"]["Properties"])
            if props.get("UserId") != props.get("UserName") or props.get("AuthenticationMode", {}).get("Type") != "iam":
                errors.append(f"{where}: an IAM user needs UserId == UserName and AuthenticationMode Type iam")
            cache = s.ev(t["Resources"]["Cache"]["Properties"])
            if (cache.get("Engine"), cache.get("MajorEngineVersion"), cache.get("ConnectionType")) != ("valkey", "9", "public"):
                errors.append(f"{where}: the cache must be valkey 9 with a public endpoint")
            if cache.get("UserGroupId") != s.ref("CacheUserGroup"):
                errors.append(f"{where}: the cache must use the stack's user group")
            group = s.ev(t["Resources"]["CacheUserGroup"]["Properties"])
            if group.get("UserIds") != [user] or group.get("Engine") != "valkey":
                errors.append(f"{where}: the user group must hold only {user} (a valkey group, no default user)")
        elif kind == "redis":
            if coordinator != s.params["RedisUrl"]:
                errors.append(f"{where}: ADMISSION_COORDINATOR = {coordinator!r}, want RedisUrl")
            if (auth == "iam") != bool(s.params["RedisIamCache"]):
                errors.append(f"{where}: ADMISSION_REDIS_AUTH = {auth!r} with RedisIamCache = {s.params['RedisIamCache']!r}")
        else:
            if coordinator not in ("", "local"):
                errors.append(f"{where}: ADMISSION_COORDINATOR = {coordinator!r} with Coordinator=local")
        for r in cache_resources:
            if s.exists(r) != (kind == "valkey-serverless"):
                errors.append(f"{where}: {r} {'created' if s.exists(r) else 'missing'} with Coordinator={kind}")
        vpc = "VpcConfig" in fn
        if vpc != (kind == "redis" and s.params["VpcSubnetIds"] != [""]):
            errors.append(f"{where}: VpcConfig {'set' if vpc else 'missing'}")
        # What the extension's init refuses (config/read.rs, `auth`): iam needs a rediss://USER@ URL
        # without a password, and a cache name; and a shared count is only a Redis URL.
        if auth not in ("password", "iam"):
            errors.append(f"{where}: ADMISSION_REDIS_AUTH = {auth!r}")
        if auth == "iam":
            m = re.match(r"rediss://([A-Za-z0-9._~-]+)@[^/@]+$", coordinator)
            cache_name = str(env.get("ADMISSION_REDIS_IAM_CACHE", ""))
            if not m or not cache_name:
                errors.append(f"{where}: ADMISSION_REDIS_AUTH=iam with ADMISSION_COORDINATOR={coordinator!r}, ADMISSION_REDIS_IAM_CACHE={cache_name!r}: the extension refuses to start")
            else:
                grants = _connect_resources(fn)
                for want in (f"{arn}user:{m.group(1)}",):
                    if want not in grants:
                        errors.append(f"{where}: no elasticache:Connect on {want} (have {sorted(grants)})")
                if not {f"{arn}serverlesscache:{cache_name}", f"{arn}replicationgroup:{cache_name}"} & grants:
                    errors.append(f"{where}: no elasticache:Connect on the cache {cache_name} (have {sorted(grants)})")
        elif _connect_resources(fn):
            errors.append(f"{where}: elasticache:Connect granted without IAM auth")
        if not blank("ADMISSION_REDIS_IAM_CACHE") and auth != "iam":
            errors.append(f"{where}: ADMISSION_REDIS_IAM_CACHE set without ADMISSION_REDIS_AUTH=iam")
    return errors


def check_layer(t: dict) -> list[str]:
    errors = []
    for arch in ("x86_64", "arm64"):
        for layer_arn in ("", "arn:aws:lambda:us-east-1:123456789012:layer:lambda-admission:3"):
            s = resolve(t, {"Architecture": arch, "LayerArn": layer_arn})
            fn = s.ev(t["Resources"]["Function"]["Properties"])
            created = [r for r, v in t["Resources"].items()
                       if v["Type"] == "AWS::Serverless::LayerVersion" and s.exists(r)]
            where = f"Architecture={arch} LayerArn={layer_arn!r}"
            if fn.get("Architectures") != [arch]:
                errors.append(f"{where}: the function's Architectures are {fn.get('Architectures')}")
            if layer_arn:
                if fn.get("Layers") != [layer_arn] or created:
                    errors.append(f"{where}: Layers {fn.get('Layers')}, created {created}")
                continue
            if len(created) != 1 or fn.get("Layers") != [f"<{created[0]}>"]:
                errors.append(f"{where}: Layers {fn.get('Layers')}, created {created}")
                continue
            props = s.ev(t["Resources"][created[0]]["Properties"])
            if props.get("CompatibleArchitectures") != [arch] or not str(props.get("ContentUri")).endswith(f"dist/lambda-admission-{arch}.zip"):
                errors.append(f"{where}: layer {created[0]} is {props.get('ContentUri')} for {props.get('CompatibleArchitectures')}")
    return errors


def extension_commands() -> set[str]:
    # Every Rust file of the extension: a script or a command may move to another module.
    src = "\n".join(p.read_text() for p in sorted((REPO / "extension" / "src").rglob("*.rs")))
    called = set(re.findall(r"""redis\.p?call\(\s*['"]([A-Za-z]+)['"]""", src))
    sent = set(re.findall(r'redis::cmd\("([A-Za-z]+)"\)', src))
    if not called or not sent:
        raise SystemExit("extension/src: found no Redis commands")
    return {c.lower() for c in called | sent} | CLIENT_LIBRARY_COMMANDS


def check_acl(t: dict) -> list[str]:
    access = str(t["Resources"]["CacheUser"]["Properties"]["AccessString"]).split()
    errors = []
    if access[:1] != ["on"] or "-@all" not in access:
        errors.append(f"the access string must start with 'on' and drop everything (-@all) before granting: {access}")
    keys = [a for a in access if a.startswith("~")]
    if keys != ["~lambda-admission:*"]:
        errors.append(f"the access string must reach only the extension's keys (~lambda-admission:*): {keys}")
    granted = {a[1:].lower() for a in access if a.startswith("+")}
    missing = sorted(extension_commands() - granted)
    if missing:
        errors.append(f"the cache user may not run {missing}, which the extension sends (its Lua scripts included)")
    broad = sorted(g for g in granted if g.startswith("@"))
    if broad:
        errors.append(f"the cache user is granted whole categories {broad}")
    # ACL rules apply in order: a grant before the -@all would be taken back by it.
    first_grant = next((i for i, a in enumerate(access) if a.startswith("+")), len(access))
    if "-@all" in access and access.index("-@all") > first_grant:
        errors.append("-@all after a grant revokes it: put it before every +command")
    return errors


# Arguments that make each command a well-formed call on one of the extension's keys.
_DRYRUN_ARGS = {
    "evalsha": ["0" * 40, "1", "{key}"], "eval": ["return 1", "1", "{key}"],
    "script": ["LOAD", "return 1"], "cluster": ["SLOTS"], "info": ["cluster"],
    "ping": [], "asking": [], "set": ["{key}", "1"], "incrby": ["{key}", "1"],
    "pexpire": ["{key}", "1"], "pexpireat": ["{key}", "1"], "hget": ["{key}", "f"],
    "hset": ["{key}", "f", "1"], "hdel": ["{key}", "f"], "hincrby": ["{key}", "f", "1"],
    "zadd": ["{key}", "1", "m"], "zrem": ["{key}", "m"], "zrangebyscore": ["{key}", "0", "1"],
    "zremrangebyscore": ["{key}", "0", "1"],
}
_MUST_REFUSE = [["GET", "other"], ["FLUSHALL"], ["CONFIG", "GET", "maxmemory"], ["KEYS", "lambda-admission:*"]]


def acl_dryrun(t: dict) -> list[str]:
    """The access string as a real Redis reads it (ACL DRYRUN: allowed or why not)."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        return ["redis-server and redis-cli are needed for --acl-dryrun"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def call(*args: str) -> str:
        out = subprocess.run([cli, "-p", str(port), *args], capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip()

    try:
        for _ in range(100):
            if call("PING") == "PONG":
                break
            time.sleep(0.05)
        else:
            return [f"redis-server did not answer on port {port}"]
        access = str(t["Resources"]["CacheUser"]["Properties"]["AccessString"]).split()
        answer = call("ACL", "SETUSER", "admission", "nopass", *access)
        if answer != "OK":
            return [f"redis-server refused the access string: {answer}"]
        errors = []
        key = "lambda-admission:{orders}"
        for command in sorted(extension_commands()):
            # A "command|subcommand" grant is tried as the command with its subcommand.
            name, _, sub = command.partition("|")
            args = [a.replace("{key}", key) for a in _DRYRUN_ARGS.get(name, ["{key}"])]
            if sub and args[:1] != [sub.upper()]:
                args = [sub.upper(), *args]
            answer = call("ACL", "DRYRUN", "admission", name.upper(), *args)
            if answer != "OK":
                errors.append(f"ACL DRYRUN {command.upper()} {' '.join(args)}: {answer}")
        for args in _MUST_REFUSE:
            if call("ACL", "DRYRUN", "admission", *args) == "OK":
                errors.append(f"ACL DRYRUN {' '.join(args)}: allowed, must be refused")
        return errors
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# The extension's counters (read as Sum); every other metric it writes is a gauge (Maximum).
COUNTERS = {"Admitted", "Shed", "WouldShed", "FailOpen", "ShedUnconfirmed", "CoordinatorErrors"}


def extension_metrics() -> set[str]:
    src = METRICS_RS.read_text()
    names = dict(re.findall(r'pub const (\w+): &str = "(\w+)";', src))
    arrays = {k: re.findall(r'"(\w+)"', v) for k, v in re.findall(r"pub const (\w+): \[&str; \d+\] = \[(.*?)\];", src, re.S)}
    table = re.search(r"pub const METRICS: &\[\(&str, &str\)\] = &\[(.*?)\];", src, re.S)
    if not table:
        raise SystemExit(f"{METRICS_RS}: no METRICS table")
    metrics = set()
    for ident, index in re.findall(r"\((\w+)(?:\[(\d+)\])?,", table.group(1)):
        metrics.add(arrays[ident][int(index)] if index else names[ident])
    if not COUNTERS <= metrics:
        raise SystemExit(f"{METRICS_RS}: counters {sorted(COUNTERS - metrics)} are gone")
    return metrics


def _metric_rule(name: str, stat: str, dims: dict, function: str, where: str, known: set[str]) -> list[str]:
    errors = []
    if name not in known:
        errors.append(f"{where}: the extension writes no metric {name}")
    want = "Sum" if name in COUNTERS else "Maximum"
    if stat != want:
        errors.append(f"{where}: {name} read as {stat}, want {want}")
    if dims != {"FunctionName": function}:
        errors.append(f"{where}: {name} with dimensions {dims}, the extension writes exactly [FunctionName]")
    return errors


def check_metrics(t: dict) -> list[str]:
    errors = []
    known = extension_metrics()
    s = resolve(t, {})
    namespace = s.params["MetricsNamespace"]
    function = s.ref("Function")
    api_name = s.ev(t["Resources"]["Api"]["Properties"]["Name"])
    stage = s.ev(t["Resources"]["Api"]["Properties"]["StageName"])
    body = s.ev(t["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    try:
        dashboard = json.loads(body)
    except json.JSONDecodeError as e:
        return [f"the dashboard's body is not JSON once resolved: {e}"]
    for widget in dashboard.get("widgets", []):
        props = widget.get("properties", {})
        title = props.get("title", widget.get("type"))
        for row in props.get("metrics", []):
            options = row[-1] if isinstance(row[-1], dict) else {}
            row = row[:-1] if options else row
            if "." in row:
                errors.append(f"dashboard {title!r}: abbreviated metric rows are not checked: {row}")
                continue
            ns, name, dims = row[0], row[1], dict(zip(row[2::2], row[3::2]))
            stat = options.get("stat", props.get("stat"))
            where = f"dashboard {title!r}"
            if ns == namespace:
                errors += _metric_rule(name, stat, dims, function, where, known)
            elif ns == "AWS/ApiGateway":
                if dims != {"ApiName": api_name, "Stage": stage}:
                    errors.append(f"{where}: {name} for {dims}, the API is {api_name!r} stage {stage!r}")
            elif ns == "AWS/Lambda":
                if dims != {"FunctionName": function}:
                    errors.append(f"{where}: {name} for {dims}")
            else:
                errors.append(f"{where}: {ns}/{name} is in no namespace this stack writes to")
    for logical_id, resource in t["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        alarm = s.ev(resource["Properties"])
        where = f"alarm {logical_id}"
        if alarm.get("TreatMissingData") != "notBreaching":
            errors.append(f"{where}: missing data must not breach (the extension writes only with activity)")
        stats = []
        if "MetricName" in alarm:
            dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
            stats.append((alarm["Namespace"], alarm["MetricName"], alarm.get("Statistic"), dims))
        for m in alarm.get("Metrics", []):
            if "MetricStat" in m:
                metric = m["MetricStat"]["Metric"]
                dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                stats.append((metric["Namespace"], metric["MetricName"], m["MetricStat"]["Stat"], dims))
        for ns, name, stat, dims in stats:
            if ns == namespace:
                errors += _metric_rule(name, stat, dims, function, where, known)
            elif ns == "AWS/Lambda" and dims != {"FunctionName": function}:
                errors.append(f"{where}: {name} for {dims}")
    return errors


def sam_transform(t: dict) -> dict:
    """The CloudFormation template SAM makes of this one, as `sam deploy` would (offline)."""
    from samtranslator.translator.transform import transform

    os.environ.setdefault("AWS_DEFAULT_REGION", PSEUDO["AWS::Region"])
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    t = copy.deepcopy(t)
    for resource in t["Resources"].values():
        for uri in ("CodeUri", "ContentUri"):
            if uri in resource.get("Properties", {}):
                resource["Properties"][uri] = "s3://bucket/key"  # what `sam package` puts there

    class NoManagedPolicies:
        def load(self):
            return {}

    return transform(t, {}, NoManagedPolicies())


def check_stages(t: dict) -> list[str]:
    errors = []
    cfn = sam_transform(t)
    resources = cfn["Resources"]
    for logical_id, r in resources.items():
        if r["Type"] == "AWS::ApiGateway::Deployment" and "StageName" in r["Properties"]:
            errors.append(f"{logical_id} creates a stage {r['Properties']['StageName']!r} of its own, "
                          "without the throttle (OpenApiVersion unset?)")
    stages = [k for k, r in resources.items() if r["Type"] == "AWS::ApiGateway::Stage"]
    if not stages:
        errors.append("SAM made no API Gateway stage")
    body = json.dumps([r["Properties"].get("Body", {}) for r in resources.values()
                       if r["Type"] == "AWS::ApiGateway::RestApi"])
    methods = body.count("${Function.Arn}")
    allowed, _ = _sizes(t)
    for n in allowed:
        stack = Stack(cfn, {"ReservedConcurrency": str(n)})
        for stage in stages:
            settings = stack.ev(resources[stage]["Properties"].get("MethodSettings", []))
            throttle = [(m.get("ThrottlingRateLimit"), m.get("ThrottlingBurstLimit")) for m in settings
                        if m.get("ResourcePath") == "/*" and m.get("HttpMethod") == "*"]
            if throttle != [(8 * n, n)]:
                errors.append(f"N={n}: stage {stage} throttles at {throttle}, want [({8 * n}, {n})]")
        if methods * 8 * n > 8 * n:
            errors.append(f"N={n}: {methods} API methods invoke the function, each with a bucket of "
                          f"{8 * n}/s: up to {methods * 8 * n}/s, over 8 x N")
    return errors


def check_blocks(text: str) -> list[str]:
    errors, open_blocks, seen = [], {}, set()
    for i, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\s*# lambda-admission: (begin|end) (\S+)\s*$", line)
        if not m:
            continue
        kind, name = m.groups()
        if kind == "begin":
            if name in seen:
                errors.append(f"line {i}: block {name} begins twice")
            seen.add(name)
            open_blocks[name] = i
        elif name not in open_blocks:
            errors.append(f"line {i}: block {name} ends without a begin")
        else:
            length = i - open_blocks.pop(name) - 1
            if length > BLOCK_MAX_LINES:
                errors.append(f"block {name}: {length} lines, longer than {BLOCK_MAX_LINES} to quote")
    errors += [f"block {n} (line {i}) never ends" for n, i in open_blocks.items()]
    for want in ("function", "function-policy", "api-throttle"):
        if want not in seen:
            errors.append(f"no block {want} for the README")
    return errors


CHECKS = {
    "sizes": check_sizes,
    "throttle": check_throttle,
    "rules": check_rules,
    "config": check_config,
    "layer": check_layer,
    "acl": check_acl,
    "metrics": check_metrics,
    "stages": check_stages,
}


def run(t: dict, text: str, only: str | None = None) -> dict[str, list[str]]:
    results = {}
    for name, check in CHECKS.items():
        if only not in (None, name):
            continue
        try:
            results[name] = check(t)
        except Exception as e:  # a template broken enough to break the checker fails the check
            results[name] = [f"{type(e).__name__}: {e}"]
    if only in (None, "blocks"):
        results["blocks"] = check_blocks(text)
    return results


def _mutations(t: dict, text: str):
    """(name, check that must fail, broken template, broken text)"""

    def edit(fn):
        m = copy.deepcopy(t)
        fn(m)
        return m

    res = lambda m: m["Resources"]  # noqa: E731
    env = lambda m: res(m)["Function"]["Properties"]["Environment"]["Variables"]  # noqa: E731
    settings = lambda m: res(m)["Api"]["Properties"]["MethodSettings"][0]  # noqa: E731
    rows = lambda m: m["Mappings"]["Sizes"]  # noqa: E731

    yield "a Rate that is not 8N", "sizes", edit(lambda m: rows(m)["20"].update(Rate=161)), text
    yield "a Burst that is not N", "sizes", edit(lambda m: rows(m)["100"].update(Burst=80)), text
    yield "an InvokeRateAlarm that is not 9.5N", "sizes", edit(lambda m: rows(m)["5"].update(InvokeRateAlarm=50)), text
    yield "an allowed N without a row", "sizes", edit(
        lambda m: m["Parameters"]["ReservedConcurrency"]["AllowedValues"].append(25)), text
    yield "a row without an allowed N", "sizes", edit(
        lambda m: rows(m).update({"40": {"Rate": 320, "Burst": 40, "InvokeRateAlarm": 320}})), text
    yield "the stage rate read from the Burst column", "throttle", edit(
        lambda m: settings(m)["ThrottlingRateLimit"]["Fn::FindInMap"].__setitem__(2, "Burst")), text
    yield "a fixed stage burst", "throttle", edit(lambda m: settings(m).update(ThrottlingBurstLimit=100)), text
    yield "a second API method on the function", "throttle", edit(
        lambda m: res(m)["Function"]["Properties"]["Events"].update(
            Root={"Type": "Api", "Properties": {"RestApiId": {"Ref": "Api"}, "Path": "/", "Method": "ANY"}})), text
    yield "ADMISSION_LIMIT not from N", "throttle", edit(lambda m: env(m).update(ADMISSION_LIMIT="100")), text
    yield "a fixed reservation", "throttle", edit(
        lambda m: res(m)["Function"]["Properties"].update(ReservedConcurrentExecutions=100)), text
    yield "no rule for local", "rules", edit(lambda m: m["Rules"].pop("LocalCoordinatorIsAcknowledged")), text
    yield "a rule for local that accepts no", "rules", edit(
        lambda m: m["Rules"]["LocalCoordinatorIsAcknowledged"]["Assertions"][0]["Assert"]["Fn::Equals"].__setitem__(1, "no")), text
    yield "no rule for redis", "rules", edit(lambda m: m["Rules"].pop("RedisCoordinatorHasUrl")), text
    yield "a redis rule on the wrong coordinator", "rules", edit(
        lambda m: m["Rules"]["RedisCoordinatorHasUrl"]["RuleCondition"]["Fn::Equals"].__setitem__(1, "valkey-serverless")), text
    yield "a misspelt variable", "config", edit(
        lambda m: env(m).update(ADMISSION_REDIS_IAM_CACH=env(m).pop("ADMISSION_REDIS_IAM_CACHE"))), text
    yield "iam auth whatever the coordinator", "config", edit(lambda m: env(m).update(ADMISSION_REDIS_AUTH="iam")), text
    yield "a coordinator URL without the user", "config", edit(
        lambda m: env(m)["ADMISSION_COORDINATOR"]["Fn::If"].__setitem__(
            1, {"Fn::Sub": "rediss://${Cache.Endpoint.Address}:${Cache.Endpoint.Port}"})), text
    yield "no elasticache:Connect on the user", "config", edit(
        lambda m: res(m)["Function"]["Properties"]["Policies"][0]["Fn::If"][1]["Statement"][0]["Resource"].pop(1)), text
    yield "a cache whatever the coordinator", "config", edit(lambda m: res(m)["Cache"].pop("Condition")), text
    yield "a vpc cache", "config", edit(lambda m: res(m)["Cache"]["Properties"].update(ConnectionType="vpc")), text
    yield "the arm64 zip for x86_64", "layer", edit(
        lambda m: res(m)["LayerX8664"]["Properties"].update(ContentUri="../../dist/lambda-admission-arm64.zip")), text
    yield "the layers swapped", "layer", edit(
        lambda m: res(m)["Function"]["Properties"]["Layers"][0]["Fn::If"][1]["Fn::If"].__setitem__(1, {"Ref": "LayerX8664"})), text
    yield "a script command not granted", "acl", edit(
        lambda m: res(m)["CacheUser"]["Properties"].update(
            AccessString=res(m)["CacheUser"]["Properties"]["AccessString"].replace(" +zadd", ""))), text
    yield "grants before -@all", "acl", edit(
        lambda m: res(m)["CacheUser"]["Properties"].update(
            AccessString=res(m)["CacheUser"]["Properties"]["AccessString"].replace("-@all +evalsha", "+evalsha -@all"))), text
    yield "every key", "acl", edit(
        lambda m: res(m)["CacheUser"]["Properties"].update(
            AccessString=res(m)["CacheUser"]["Properties"]["AccessString"].replace("~lambda-admission:*", "~*"))), text
    dashboard = lambda m: res(m)["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]  # noqa: E731

    def in_body(old, new):
        return edit(lambda m: dashboard(m).__setitem__(0, dashboard(m)[0].replace(old, new, 1)))

    yield "a metric the extension does not write", "metrics", in_body('"Admitted"', '"Admited"'), text
    yield "a gauge read as Sum", "metrics", in_body('"stat": "Maximum", "yAxis"', '"stat": "Sum", "yAxis"'), text
    yield "a dashboard that is not JSON", "metrics", in_body('"widgets": [', '"widgets": [,'), text
    yield "API metrics of another API", "metrics", edit(
        lambda m: dashboard(m)[1].update(ApiName={"Fn::Sub": "${AWS::StackName}-api"})), text
    yield "an alarm breaching on silence", "metrics", edit(
        lambda m: res(m)["FailOpenAlarm"]["Properties"].update(TreatMissingData="breaching")), text
    yield "a count read as Maximum", "metrics", edit(
        lambda m: res(m)["ShedShareAlarm"]["Properties"]["Metrics"][1]["MetricStat"].update(Stat="Maximum")), text
    yield "SAM's extra unthrottled stage", "stages", edit(lambda m: res(m)["Api"]["Properties"].pop("OpenApiVersion")), text
    yield "a second method, after SAM's transform", "stages", edit(
        lambda m: res(m)["Function"]["Properties"]["Events"].update(
            Root={"Type": "Api", "Properties": {"RestApiId": {"Ref": "Api"}, "Path": "/", "Method": "ANY"}})), text
    yield "no stage throttle", "stages", edit(lambda m: res(m)["Api"]["Properties"].pop("MethodSettings")), text
    yield "an unpaired block marker", "blocks", t, text.replace("# lambda-admission: end api-throttle", "# end", 1)


def self_test(t: dict, text: str) -> int:
    failed = 0
    for name, check, broken_t, broken_text in _mutations(t, text):
        caught = run(broken_t, broken_text, only=check)[check]
        status = "caught" if caught else "MISSED"
        failed += not caught
        print(f"  self-test: {name:45} -> {check}: {status}")
    return failed


def main(argv: list[str]) -> int:
    text = TEMPLATE.read_text()
    t = load()
    results = run(t, text)
    bad = 0
    for name, errors in results.items():
        print(f"  {name:8} {'ok' if not errors else 'FAILED'}")
        for e in errors:
            print(f"    - {e}")
        bad += bool(errors)
    if "--acl-dryrun" in argv:
        errors = acl_dryrun(t)
        print(f"  {'acl-dryrun':8} {'ok' if not errors else 'FAILED'}")
        for e in errors:
            print(f"    - {e}")
        bad += bool(errors)
    if "--self-test" in argv:
        missed = self_test(t, text)
        if missed:
            print(f"check_template: {missed} broken template(s) passed the checks")
            bad += missed
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

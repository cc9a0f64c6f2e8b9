#!/usr/bin/env bash
# lambda-admission with the AWS CLI: protects an existing function behind an existing REST API.
#
# The function needs reserved concurrency N first (it is the limit the layer keeps, and what the
# stage throttle is computed from). Then:
#
#   aws lambda put-function-concurrency --function-name my-api --reserved-concurrent-executions 100
#   deploy/cli/protect.sh --function my-api --rest-api abc123 --stage prod
#
# What it does, each step idempotent (run it again after changing N):
#   1. the fleet-wide count: deploys deploy/cli/cache.yaml as the stack "lambda-admission-cache"
#      (ElastiCache Serverless for Valkey, public endpoint, IAM auth, a Connect policy), unless
#      --cache-endpoint names an existing one;
#   2. lets the function's role connect to it (attaches the Connect policy);
#   3. the layer: --layer-arn, or the zip from dist/ published for the function's architecture
#      (scripts/publish-layer.sh);
#   4. the function: the layer added (another version of it replaced), AWS_LAMBDA_EXEC_WRAPPER and
#      the ADMISSION_* variables merged into its environment;
#   5. the stage: a THROTTLED gateway response (429 with Retry-After: 1; a customised one keeps
#      its headers and templates) and a deployment so that it takes effect (which also deploys
#      any other change to the API not yet deployed); the throttle, 8 x N requests/s, burst N.
#
# Options:
#   --function NAME        the function (required)
#   --rest-api ID          the REST API in front of it (required)
#   --stage NAME           its stage (required)
#   --mode MODE            ADMISSION_MODE: enforce (default) or observe (count WouldShed only)
#   --layer-arn ARN        an already published layer version for the function's architecture
#   --cache-stack NAME     the cache's stack (default lambda-admission-cache)
#   --cache-endpoint H:P   an existing cache instead, with --cache-name, --cache-user and
#                          --cache-policy-arn (a policy allowing elasticache:Connect to both)
#   --cache-serverless Y   yes (default: a public endpoint is a serverless cache's) or no (a
#                          replication group): what the IAM token is signed for
#   --region REGION        default: the AWS CLI's
# Needs the AWS CLI and python3 (to merge the function's variables); honours AWS_ENDPOINT_URL.
set -euo pipefail
cd "$(dirname "$0")/../.."

function="" api="" stage="" mode="enforce" layer_arn="" cache_stack="lambda-admission-cache"
endpoint="" cache_name="" cache_user="" policy_arn="" serverless=yes region=""
region_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --function) function="${2:-}"; shift 2 ;;
        --rest-api) api="${2:-}"; shift 2 ;;
        --stage) stage="${2:-}"; shift 2 ;;
        --mode) mode="${2:-}"; shift 2 ;;
        --layer-arn) layer_arn="${2:-}"; shift 2 ;;
        --cache-stack) cache_stack="${2:-}"; shift 2 ;;
        --cache-endpoint) endpoint="${2:-}"; shift 2 ;;
        --cache-name) cache_name="${2:-}"; shift 2 ;;
        --cache-user) cache_user="${2:-}"; shift 2 ;;
        --cache-policy-arn) policy_arn="${2:-}"; shift 2 ;;
        --cache-serverless) serverless="${2:-}"; shift 2 ;;
        --region) region="${2:-}"; shift 2 ;;
        -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
        *) echo "protect: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
fail() { echo "protect: $*" >&2; exit 1; }
if [ -z "$function" ] || [ -z "$api" ] || [ -z "$stage" ]; then
    echo "protect: --function, --rest-api and --stage are required (see --help)" >&2
    exit 2
fi
case "$mode" in enforce|observe) ;; *) echo "protect: --mode is enforce or observe, not $mode" >&2; exit 2 ;; esac
case "$serverless" in yes) serverless=true ;; no) serverless=false ;;
    *) echo "protect: --cache-serverless is yes or no, not $serverless" >&2; exit 2 ;; esac
if [ -n "$endpoint" ] && { [ -z "$cache_name" ] || [ -z "$cache_user" ] || [ -z "$policy_arn" ]; }; then
    echo "protect: --cache-endpoint needs --cache-name, --cache-user and --cache-policy-arn" >&2
    exit 2
fi
# The region the AWS CLI would use, resolved once: the layer is published where the function is.
region=${region:-${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region 2>/dev/null || true)}}}
if [ -n "$region" ]; then region_args=(--region "$region"); fi
# (bash 3.2, macOS's, calls an empty array under set -u unbound)
aws_() { aws ${region_args[@]+"${region_args[@]}"} "$@"; }

n=$(aws_ lambda get-function-concurrency --function-name "$function" \
    --query ReservedConcurrentExecutions --output text)
if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ]; then
    fail "$function has no reserved concurrency: the limit and the stage throttle follow from it. Set it first:
  aws lambda put-function-concurrency --function-name $function --reserved-concurrent-executions N"
fi
echo "protect: $function, reserved concurrency N = $n" >&2

# 1. The count.
if [ -z "$endpoint" ]; then
    echo "protect: the cache (stack $cache_stack) ..." >&2
    aws_ cloudformation deploy --stack-name "$cache_stack" --template-file deploy/cli/cache.yaml \
        --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset >&2
    output() {
        aws_ cloudformation describe-stacks --stack-name "$cache_stack" \
            --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
    }
    endpoint=$(output Endpoint) cache_name=$(output CacheName)
    cache_user=$(output CacheUser) policy_arn=$(output ConnectPolicyArn)
fi

# 2. The role may connect.
role=$(aws_ lambda get-function-configuration --function-name "$function" --query Role --output text)
aws_ iam attach-role-policy --role-name "${role##*/}" --policy-arn "$policy_arn"

# 3. The layer.
arch=$(aws_ lambda get-function-configuration --function-name "$function" \
    --query 'Architectures[0]' --output text)
[ "$arch" = "None" ] && arch=x86_64
if [ -z "$layer_arn" ]; then
    [ -n "$region" ] || fail "no region: pass --region"
    layer_arn=$(scripts/publish-layer.sh --regions "$region" --arch "$arch" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["arn"])')
fi

# 4. The function: our layer in place of any other version of it, our variables over its own.
read -r -d '' merge <<'PY' || true
import json, sys
layer, n, mode, url, cache, serverless = sys.argv[1:7]
current = json.load(sys.stdin)
name = layer.rsplit(":", 1)[0]
layers = [l["Arn"] for l in current.get("Layers") or [] if l["Arn"].rsplit(":", 1)[0] != name]
variables = (current.get("Environment") or {}).get("Variables") or {}
variables.update({
    "AWS_LAMBDA_EXEC_WRAPPER": "/opt/lambda-admission-wrapper",
    "ADMISSION_LIMIT": n,
    "ADMISSION_MODE": mode,
    "ADMISSION_COORDINATOR": url,
    "ADMISSION_REDIS_AUTH": "iam",
    "ADMISSION_REDIS_IAM_CACHE": cache,
    # A public endpoint's host need not say ".serverless.": the token must say it, or AUTH fails.
    "ADMISSION_REDIS_IAM_SERVERLESS": serverless,
    # A public endpoint is a longer path than one inside a VPC: 15 ms until CoordinatorLatencyP99
    # is known (docs/fleet.md, "The budget over a public endpoint").
    "ADMISSION_COORDINATOR_TIMEOUT_MS": variables.get("ADMISSION_COORDINATOR_TIMEOUT_MS", "15"),
})
print(json.dumps({"Layers": layers + [layer], "Environment": {"Variables": variables}}))
PY
settings=$(aws_ lambda get-function-configuration --function-name "$function" --output json \
    | python3 -c "$merge" "$layer_arn" "$n" "$mode" "rediss://$cache_user@$endpoint" "$cache_name" "$serverless")
aws_ lambda update-function-configuration --function-name "$function" \
    --cli-input-json "$settings" --query LastUpdateStatus --output text >&2
aws_ lambda wait function-updated --function-name "$function"

# 5. The gateway: the stage throttle applies to each method alone, so every method invoking the
# function adds up to 8 x N; one proxy method keeps the sum under Lambda's 10 x N.
methods=$(aws_ apigateway get-resources --rest-api-id "$api" --embed methods --output json \
    | python3 -c 'import json,sys; print(sum(len(r.get("resourceMethods") or {}) for r in json.load(sys.stdin)["items"]))')
if [ "$methods" -gt 1 ]; then
    echo "protect: WARNING: $methods methods on this API each get the stage throttle of $((8 * n))/s: if more than one invokes $function, Lambda's cap of $((10 * n))/s can be passed; give each its share with per-method throttles" >&2
fi
# A THROTTLED response already customised (CORS headers, a body) keeps what it has; it gets the
# status 429 and, unless it has one, Retry-After.
read -r -d '' throttled <<'PY' || true
import json, sys
api = sys.argv[1]
existing = json.loads(sys.stdin.read() or "{}")
custom = existing and not existing.get("defaultResponse", True)
parameters = dict(existing.get("responseParameters") or {}) if custom else {}
parameters.setdefault("gatewayresponse.header.Retry-After", "'1'")
response = {"restApiId": api, "responseType": "THROTTLED", "statusCode": "429",
            "responseParameters": parameters}
if custom and existing.get("responseTemplates"):
    response["responseTemplates"] = existing["responseTemplates"]
print(json.dumps(response))
PY
response=$( (aws_ apigateway get-gateway-response --rest-api-id "$api" --response-type THROTTLED \
    --output json 2>/dev/null || true) | python3 -c "$throttled" "$api")
aws_ apigateway put-gateway-response --cli-input-json "$response" --query responseType --output text >&2
aws_ apigateway create-deployment --rest-api-id "$api" --stage-name "$stage" \
    --description "lambda-admission: THROTTLED as 429 with Retry-After" --query id --output text >&2
# Stage settings take effect at once; after the deployment, which some emulators rebuild the
# stage on.
aws_ apigateway update-stage --rest-api-id "$api" --stage-name "$stage" --patch-operations \
    "op=replace,path=/*/*/throttling/rateLimit,value=$((8 * n))" \
    "op=replace,path=/*/*/throttling/burstLimit,value=$n" --query stageName --output text >&2
echo "protect: $function protected: limit $n, layer $layer_arn, count at $endpoint, stage $stage throttled at $((8 * n))/s burst $n" >&2

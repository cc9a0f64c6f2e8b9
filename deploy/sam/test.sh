#!/usr/bin/env bash
# Checks deploy/sam/template.yaml offline: no AWS account, no credentials, no Docker.
#   1. sam validate --lint   (SAM CLI's own lint: cfn-lint on the template, SAM transform included)
#   2. sam validate          (SAM CLI's translation of the template into CloudFormation)
#   3. cfn-lint              (strict: any finding, informational included, fails the run)
#   4. a control: both linters must reject a broken copy, or a green run proves nothing
#   5. check_template.py     (what no linter evaluates: the Sizes table, the Rules against
#                             parameter sets, the variables the extension reads, the cache
#                             user's ACL, the metrics read, the throttle on every stage SAM
#                             makes), then --self-test, which breaks the template in
#                             memory once per check and fails unless every break is caught;
#                             with redis-server present, --acl-dryrun asks a real Redis whether
#                             the cache user may run each command the extension sends
# The tools live in a venv under target/ (git-ignored), pinned by deploy/sam/requirements.txt,
# and are reinstalled only when that file changes.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/venv/sam
requirements=deploy/sam/requirements.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -x "$venv/bin/sam" ] || [ ! -x "$venv/bin/cfn-lint" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "deploy/sam: installing the pinned tools into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    echo "$want" > "$stamp"
fi

# Offline: SAM needs a Region for its translation, nothing else (no credentials are read).
# Telemetry off: it would try to reach AWS.
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 SAM_CLI_TELEMETRY=0
template=deploy/sam/template.yaml
# Regions to lint against: the resource types and their properties differ by Region.
regions=(us-east-1 us-east-2 us-west-2 eu-west-1 eu-central-1 ap-northeast-1 ap-southeast-2)
# cfn-lint findings ignored, each with its reason: none so far. Add "-i RULE" here, with a
# comment saying why, rather than loosening --non-zero-exit-code.
ignored=()

echo "deploy/sam: sam validate --lint"
"$venv/bin/sam" validate --lint --template "$template"
echo "deploy/sam: sam validate"
# (It also prints a line about a feature toggle it has no config for: noise, dropped.)
if ! out=$("$venv/bin/sam" validate --template "$template" --region us-east-1 2>&1); then
    echo "$out" >&2
    exit 1
fi
grep -v "not available in Feature Toggle Config" <<<"$out"
echo "deploy/sam: cfn-lint ${regions[*]}"
"$venv/bin/cfn-lint" --non-zero-exit-code informational --regions "${regions[@]}" "${ignored[@]}" -- "$template"

echo "deploy/sam: the linters must reject a broken template"
broken=$(mktemp -d)
trap 'rm -rf "$broken"' EXIT
cp -r deploy/sam/app "$broken/app"
sed 's/ConnectionType: public/ConnectionType: publik/' "$template" > "$broken/template.yaml"
grep -q 'ConnectionType: publik' "$broken/template.yaml"
if "$venv/bin/cfn-lint" --regions us-east-1 -- "$broken/template.yaml" >/dev/null 2>&1; then
    echo "deploy/sam: cfn-lint accepted ConnectionType: publik" >&2
    exit 1
fi
if "$venv/bin/sam" validate --lint --template "$broken/template.yaml" >/dev/null 2>&1; then
    echo "deploy/sam: sam validate --lint accepted ConnectionType: publik" >&2
    exit 1
fi

checks=(--self-test)
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    checks+=(--acl-dryrun)
else
    echo "deploy/sam: no redis-server here: the cache user's ACL is checked statically only, not by ACL DRYRUN"
fi
echo "deploy/sam: check_template.py ${checks[*]}"
"$venv/bin/python" -B deploy/sam/check_template.py "${checks[@]}"
echo "deploy/sam: all checks passed"

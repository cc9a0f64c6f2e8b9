#!/usr/bin/env bash
# Builds and tests lambda-admission-cdk, the CDK construct library, end to end and offline (no AWS
# account): installs its npm dependencies (npm ci) and two Python virtualenvs under target/venv,
# compiles with jsii, runs the unit tests (real synthesis, cdk-nag), synthesizes the TypeScript
# example to example/cdk.out/, builds the Python wheel with jsii-pacmak, synthesizes the Python
# example with it, and runs cfn-lint on every template. Needs Node 20+, npm and Python 3.
#
#   deploy/cdk/test.sh
#
# The layer zip the examples package comes from the repository's dist/ (layer-build/build.sh
# x86_64); when there is none, a stand-in zip in a temporary directory takes its place
# (LAMBDA_ADMISSION_LAYER_DIR, which you may also set yourself). dist/ is never written.
set -euo pipefail
cd "$(dirname "$0")"
REPO=$(cd ../.. && pwd)
VENVS="$REPO/target/venv"

# The Python side pins what package.json pins: one version of each, tested in both languages.
CDK_VERSION=$(node -p "require('./package.json').devDependencies['aws-cdk-lib']")
CONSTRUCTS_VERSION=$(node -p "require('./package.json').devDependencies['constructs']")
CFN_LINT_VERSION=1.58.0
# jsii 6 announces on every run that it no longer supports Node 20; it works on it (this script
# targets the Node 20 machines), and the banner would bury the output.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20
# Every template passes cfn-lint without errors. W3005 (a DependsOn already implied by a GetAtt)
# is what aws-cdk-lib's lambda.Function always writes for its role, not ours to change.
CFN_LINT_IGNORE=W3005

timings=()
started=$(date +%s%N)
step_start=0
seconds() { # NANOSECONDS -> "  12.3 s"
    local tenths=$(($1 / 100000000))
    printf '%4d.%d s' $((tenths / 10)) $((tenths % 10))
}
step() {
    finish_step
    step_name=$1
    step_start=$(date +%s%N)
    echo "=== $step_name"
}
finish_step() {
    if [ "$step_start" != 0 ]; then
        timings+=("$(seconds $(($(date +%s%N) - step_start)))  $step_name")
        step_start=0
    fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "${LAMBDA_ADMISSION_LAYER_DIR:-}" ]; then
    if [ -f "$REPO/dist/lambda-admission-x86_64.zip" ]; then
        LAMBDA_ADMISSION_LAYER_DIR="$REPO/dist"
    else
        # The smallest valid zip (an empty archive): synthesis only hashes and copies it.
        LAMBDA_ADMISSION_LAYER_DIR="$tmp/layer"
        mkdir -p "$LAMBDA_ADMISSION_LAYER_DIR"
        { printf 'PK\005\006'; head -c 18 /dev/zero; } >"$LAMBDA_ADMISSION_LAYER_DIR/lambda-admission-x86_64.zip"
        echo "no $REPO/dist/lambda-admission-x86_64.zip: the examples use a stand-in zip"
    fi
fi
export LAMBDA_ADMISSION_LAYER_DIR

python_venv() { # DIR: a virtualenv of this machine's python3, created once
    if ! python3 -c 'import ensurepip' 2>/dev/null; then
        # Debian's own python3 keeps venv's pip bootstrap in a separate package.
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    fi
    [ -x "$1/bin/python" ] || python3 -m venv "$1"
}

step "npm ci"
npm ci --no-audit --no-fund --loglevel=error

step "jsii: compile the library (lib/, .jsii)"
npx jsii

step "tsc: compile the tests and the example (build/)"
npx tsc -p tsconfig.dev.json

step "unit tests"
node --test build/test/*.test.js

step "synthesize the TypeScript example"
rm -rf example/cdk.out
(cd example && CDK_OUTDIR=cdk.out node ../build/example/app.js)
test -s example/cdk.out/LambdaAdmissionExample.template.json

step "synthesize the lint fixtures (every option)"
node build/test/fixtures.js "$tmp/fixtures"

step "cfn-lint $CFN_LINT_VERSION: the TypeScript example and the fixtures"
python_venv "$VENVS/cfn-lint"
"$VENVS/cfn-lint/bin/cfn-lint" --version 2>/dev/null | grep -qx "cfn-lint $CFN_LINT_VERSION" ||
    "$VENVS/cfn-lint/bin/pip" install -q --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION"
"$VENVS/cfn-lint/bin/cfn-lint" --ignore-checks "$CFN_LINT_IGNORE" -- \
    example/cdk.out/LambdaAdmissionExample.template.json "$tmp"/fixtures/*.template.json

step "jsii-pacmak: the Python wheel (dist/python/)"
rm -rf dist
npx jsii-pacmak -t python
wheel=$(ls dist/python/lambda_admission_cdk-*.whl)

step "Python virtualenv: aws-cdk-lib $CDK_VERSION, constructs $CONSTRUCTS_VERSION, the wheel"
python_venv "$VENVS/cdk-python"
"$VENVS/cdk-python/bin/pip" install -q --disable-pip-version-check \
    "aws-cdk-lib==$CDK_VERSION" "constructs==$CONSTRUCTS_VERSION" "$wheel"
# Same version number, new build: replace the installed copy.
"$VENVS/cdk-python/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"

step "synthesize the Python example"
rm -rf example-python/cdk.out
(cd example-python && CDK_OUTDIR=cdk.out "$VENVS/cdk-python/bin/python" app.py)

step "cfn-lint: the Python example; same template as the TypeScript one"
"$VENVS/cfn-lint/bin/cfn-lint" --ignore-checks "$CFN_LINT_IGNORE" -- example-python/cdk.out/LambdaAdmissionExample.template.json
node -e '
const strip = (file) => {
  const t = JSON.parse(require("fs").readFileSync(file, "utf8"));
  delete t.Resources.CDKMetadata;
  if (t.Conditions) delete t.Conditions.CDKMetadataAvailable;
  for (const r of Object.values(t.Resources)) delete r.Metadata;
  return JSON.stringify(t);
};
if (strip(process.argv[1]) !== strip(process.argv[2])) {
  console.error("the Python example synthesizes a different template from the TypeScript one");
  process.exit(1);
}' example/cdk.out/LambdaAdmissionExample.template.json example-python/cdk.out/LambdaAdmissionExample.template.json

finish_step
echo
echo "=== timings"
printf '%s\n' "${timings[@]}"
echo "$(seconds $(($(date +%s%N) - started)))  total"

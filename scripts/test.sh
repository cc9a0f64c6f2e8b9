#!/usr/bin/env bash
# The test suite: formatting and lints, unit tests, the extension run for real behind a local
# Lambda emulator with real runtimes (awslambdaric, lambda_runtime), and the layer's size budget.
# Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# What the code declares, enforced: formatting, and every lint (unwrap on a request path) an error.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The shipped layer: static musl, within its size budget.
layer-build/build.sh x86_64
# The integration tests start these binaries as processes, as Lambda would.
cargo build --workspace --bins
cargo test --workspace --no-fail-fast

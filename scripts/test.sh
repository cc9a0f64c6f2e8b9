#!/usr/bin/env bash
# The test suite: unit tests, and the extension run for real behind a local Lambda emulator with
# real runtimes (awslambdaric, lambda_runtime). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The integration tests start these binaries as processes, as Lambda would.
cargo build --workspace --bins
cargo test --workspace --no-fail-fast

#!/usr/bin/env bash
# The benchmark (not a test): builds the x86_64 layer and release binaries, then measures the
# shipped musl extension against a direct runtime and a bare pass-through hop in one run.
# BENCH_ROUNDS / BENCH_PER_ROUND scale it. Results: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
layer-build/build.sh x86_64 >/dev/null
cargo build --release --workspace --bins
LAMBDA_EMULATOR_LAMBDA_ADMISSION="$PWD/target/x86_64-unknown-linux-musl/release/lambda-admission" \
    target/release/bench "$@"


echo
target/release/bench-coordinator
echo
target/release/bench-capacity
echo
target/release/bench-shards
if [ "${BENCH_FLEET:-1}" = 1 ]; then
    echo
    target/release/fleet-bench
fi

#!/usr/bin/env bash
# The small-function benchmark (not a test): the shipped musl extension, two floors and no
# layer at all, with AWS's Python and Node.js runtime clients and Rust's lambda_runtime, each
# environment under a CPU quota matching 128 MB, 512 MB and 1,769 MB. Needs root (cgroups).
# SMALL_BASELINE=<folder with another build's lambda-admission and lambda-admission-wrapper>
# measures that build in the same run. Results: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
layer-build/build.sh x86_64 >/dev/null
cargo build --release --workspace --bins
LAMBDA_EMULATOR_LAMBDA_ADMISSION="$PWD/target/x86_64-unknown-linux-musl/release/lambda-admission" \
    target/release/bench-small "$@"

#!/usr/bin/env bash
# The demo: builds the layer and runs lambda-admission behind a local Lambda, printing what it
# adds to each invocation, how fast it sheds, how fast it starts and how small it is.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_ROUNDS="${BENCH_ROUNDS:-5}" BENCH_PER_ROUND="${BENCH_PER_ROUND:-200}" scripts/bench.sh "$@"

#!/usr/bin/env bash
# The reliability table (not a test): every injected fault, RELIABILITY_RUNS times (default 20),
# against the real extension, redis-server and the emulated Runtime API. Table: docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --workspace --bins --quiet
RELIABILITY_RUNS="${RELIABILITY_RUNS:-20}" target/release/reliability

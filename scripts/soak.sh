#!/usr/bin/env bash
# The soak (not a test; CI runs a minute of it): a fleet of the layer's own release binary,
# counting in a real redis-server, under clients that retry at 2–5× its capacity while faults
# strike Redis and the platform at random. SOAK_SECONDS (default 600), SOAK_SEED (printed; replays
# the same draws), SOAK_ENVIRONMENTS (4). Writes target/soak/summary.json and prints a verdict;
# fails if any check fails. What it checks and a 30-minute run: docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --workspace --bins --quiet
layer-build/build.sh x86_64 >/dev/null
export LAMBDA_EMULATOR_LAMBDA_ADMISSION="${LAMBDA_EMULATOR_LAMBDA_ADMISSION:-$PWD/target/x86_64-unknown-linux-musl/release/lambda-admission}"
target/debug/soak

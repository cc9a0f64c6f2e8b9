#!/usr/bin/env bash
# The demo: an on-demand function behind API Gateway pushed to 10× its capacity, without the
# layer and with it (Redis coordinator), side by side. About a minute once built. Prints the
# table and writes target/demo/overload.svg. Installs redis-server if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "building (release) ..."
cargo build --release --workspace --bins --quiet
exec target/release/demo "$@"

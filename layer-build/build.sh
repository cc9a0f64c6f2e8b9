#!/usr/bin/env bash
# Builds the Lambda layer: dist/lambda-admission-<arch>.zip holding
#   extensions/lambda-admission   the extension (static musl binary)
#   lambda-admission-wrapper      AWS_LAMBDA_EXEC_WRAPPER target
# Usage: layer-build/build.sh [x86_64|arm64|all]   (default: all)
# Fails when a zip is over LAYER_BUDGET_BYTES (default 3000000).
#
# Static musl binaries run on every Amazon Linux runtime (AL2's glibc 2.26, AL2023's 2.34).
# ring (rustls's crypto) has C and assembly: zig, through cargo-zigbuild, is the C cross compiler
# and linker for both targets. Both come from PyPI, pinned to versions known to build ring.
set -euo pipefail
cd "$(dirname "$0")/.."
arch="${1:-all}"
# The layer counts against the function's 250 MB unzipped size and is fetched on cold starts.
budget="${LAYER_BUDGET_BYTES:-3000000}"
case "$arch" in
    x86_64) arches=(x86_64) ;;
    arm64) arches=(arm64) ;;
    all) arches=(x86_64 arm64) ;;
    *) echo "usage: $0 [x86_64|arm64|all]" >&2; exit 2 ;;
esac
command -v zip >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zip >/dev/null; }
if ! command -v cargo-zigbuild >/dev/null || ! python3 -m ziglang version 2>/dev/null | grep -qx 0.15.2; then
    python3 -m pip install -q cargo-zigbuild==0.24.1 ziglang==0.15.2
fi
mkdir -p dist
for a in "${arches[@]}"; do
    case "$a" in
        x86_64) target=x86_64-unknown-linux-musl ;;
        arm64) target=aarch64-unknown-linux-musl ;;
    esac
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
    cargo zigbuild --release --locked -p lambda-admission --target "$target"
    stage=$(mktemp -d)
    mkdir -p "$stage/extensions"
    install -m 0755 "target/$target/release/lambda-admission" "$stage/extensions/lambda-admission"
    install -m 0755 layer-build/lambda-admission-wrapper "$stage/lambda-admission-wrapper"
    rm -f "dist/lambda-admission-$a.zip"
    (cd "$stage" && zip -q -9 -X -r "$OLDPWD/dist/lambda-admission-$a.zip" extensions lambda-admission-wrapper)
    rm -rf "$stage"
    size=$(stat -c %s "dist/lambda-admission-$a.zip")
    echo "dist/lambda-admission-$a.zip: $size bytes (budget $budget)"
    if [ "$size" -gt "$budget" ]; then
        echo "layer-build: dist/lambda-admission-$a.zip is $size bytes, over the budget of $budget" >&2
        exit 1
    fi
done

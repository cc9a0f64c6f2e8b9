#!/usr/bin/env bash
# Builds the Lambda layer: dist/lambda-admission-<arch>.zip holding
#   extensions/lambda-admission   the extension (static musl binary)
#   lambda-admission-wrapper      AWS_LAMBDA_EXEC_WRAPPER target
# Usage: layer-build/build.sh [x86_64|arm64|all]   (default: all)
#
# Static musl binaries run on every Amazon Linux runtime (AL2's glibc 2.26, AL2023's 2.34).
# The extension is pure Rust, so rust-lld links both targets without a C cross toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
arch="${1:-all}"
case "$arch" in
    x86_64) arches=(x86_64) ;;
    arm64) arches=(arm64) ;;
    all) arches=(x86_64 arm64) ;;
    *) echo "usage: $0 [x86_64|arm64|all]" >&2; exit 2 ;;
esac
command -v zip >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zip >/dev/null; }
mkdir -p dist
for a in "${arches[@]}"; do
    case "$a" in
        x86_64) target=x86_64-unknown-linux-musl ;;
        arm64) target=aarch64-unknown-linux-musl ;;
    esac
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
    env_target=$(echo "$target" | tr 'a-z-' 'A-Z_')
    env "CARGO_TARGET_${env_target}_LINKER=rust-lld" \
        cargo build --release --locked -p lambda-admission --target "$target"
    stage=$(mktemp -d)
    mkdir -p "$stage/extensions"
    install -m 0755 "target/$target/release/lambda-admission" "$stage/extensions/lambda-admission"
    install -m 0755 layer-build/lambda-admission-wrapper "$stage/lambda-admission-wrapper"
    rm -f "dist/lambda-admission-$a.zip"
    (cd "$stage" && zip -q -X -r "$OLDPWD/dist/lambda-admission-$a.zip" extensions lambda-admission-wrapper)
    rm -rf "$stage"
    echo "dist/lambda-admission-$a.zip: $(stat -c %s "dist/lambda-admission-$a.zip") bytes"
done

#!/usr/bin/env bash
# Installs what lambda-admission's tests, benchmark and demo need on a fresh Debian machine:
# redis-server, AWS's Python and Node.js runtime clients, moto, the AWS CLI, rustfmt and clippy.
# Skips what is there. (The deploy checks install their own tools: deploy/*/test.sh.)
set -euo pipefail
# apt-get as root, or through sudo where the machine runs as a user (GitHub's runners).
apt_get() {
    if [ "$(id -u)" -eq 0 ]; then apt-get "$@"; else sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"; fi
}
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v zip >/dev/null || need_apt+=(zip)
command -v openssl >/dev/null || need_apt+=(openssl)   # test certificates for Redis TLS
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}"
    apt_get update -qq
    DEBIAN_FRONTEND=noninteractive apt_get install -y -qq "${need_apt[@]}" >/dev/null
fi
for component in rustfmt clippy; do
    rustup component list --installed | grep -q "^$component" || rustup component add "$component"
done
# botocore (a dependency of moto) checks the IAM tokens in the tests' TLS front.
if ! python3 -c 'import awslambdaric, moto, botocore' 2>/dev/null; then
    echo "setup: pip install awslambdaric moto[server]"
    python3 -m pip install -q awslambdaric 'moto[server]'
fi
# The layer's publishing script calls the AWS CLI; its test runs it against moto.
if ! command -v aws >/dev/null; then
    echo "setup: pip install awscli"
    python3 -m pip install -q awscli
fi
# AWS's Node.js runtime client builds a native addon (aws-lambda-cpp, curl) on install.
cd "$(dirname "$0")/../tests/node"
if [ ! -f node_modules/aws-lambda-ric/dist/rapid-client.node ]; then
    missing=()
    for tool in cmake autoconf automake libtoolize make g++; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: apt-get install cmake autoconf automake libtool make g++"
        apt_get update -qq
        DEBIAN_FRONTEND=noninteractive apt_get install -y -qq cmake autoconf automake libtool make g++ >/dev/null
    fi
    echo "setup: npm install aws-lambda-ric (builds its native client)"
    npm install --no-audit --no-fund --loglevel=error >/dev/null
fi

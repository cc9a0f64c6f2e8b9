#!/usr/bin/env bash
# Publishes the lambda-admission layer: each architecture to each region, as a new layer version.
#
# Usage: scripts/publish-layer.sh --regions us-east-1,eu-west-1 [--arch all|x86_64|arm64]
#                                 [--public] [--layer-name NAME] [--dist DIR]
#
#   --regions     comma-separated regions (required)
#   --arch        which zips to publish (default: all)
#   --public      grant lambda:GetLayerVersion to every account (a public layer)
#   --layer-name  default: lambda-admission-<arch> (one name per architecture, so that an ARN
#                 says which binary it holds)
#   --dist        where the zips are (default: dist/); missing ones are built first with
#                 layer-build/build.sh
#
# Needs the AWS CLI and credentials allowed lambda:PublishLayerVersion (and, with --public,
# lambda:AddLayerVersionPermission). AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_LAMBDA) sends the calls
# elsewhere, as the AWS CLI does by itself. Prints, on stdout, one JSON array:
#   [{"region": "...", "arch": "...", "arn": "...", "version": N}, ...]
# Progress goes to stderr. Fails on the first call that fails, naming the region and arch.
set -euo pipefail
cd "$(dirname "$0")/.."

regions="" arch="all" public=false layer_name="" dist="dist"
while [ $# -gt 0 ]; do
    case "$1" in
        --regions) regions="${2:-}"; shift 2 ;;
        --arch) arch="${2:-}"; shift 2 ;;
        --public) public=true; shift ;;
        --layer-name) layer_name="${2:-}"; shift 2 ;;
        --dist) dist="${2:-}"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "publish-layer: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$regions" ] || { echo "publish-layer: --regions is required, e.g. --regions us-east-1,eu-west-1" >&2; exit 2; }
case "$arch" in
    all) arches=(x86_64 arm64) ;;
    x86_64|arm64) arches=("$arch") ;;
    *) echo "publish-layer: --arch must be all, x86_64 or arm64, not $arch" >&2; exit 2 ;;
esac
command -v aws >/dev/null || { echo "publish-layer: the AWS CLI (aws) is not installed" >&2; exit 2; }

# Wrapper scripts run on every managed runtime; provided.* runtimes use the layer through their
# bootstrap (README). Lambda accepts at most 15 compatible runtimes.
runtimes=(python3.11 python3.12 python3.13 nodejs20.x nodejs22.x java17 java21 dotnet8
          ruby3.3 ruby3.4 provided.al2023 provided.al2)
version=$(git describe --tags --always --dirty 2>/dev/null || echo unknown)

for a in "${arches[@]}"; do
    zip="$dist/lambda-admission-$a.zip"
    if [ ! -f "$zip" ]; then
        [ "$dist" = dist ] || { echo "publish-layer: $zip is missing" >&2; exit 1; }
        echo "publish-layer: $zip is missing; building it" >&2
        layer-build/build.sh "$a" >&2
    fi
done

# Printed at the end, so that stdout holds the whole array or nothing.
entries=()
IFS=',' read -r -a region_list <<< "$regions"
for region in "${region_list[@]}"; do
    region="${region//[[:space:]]/}"
    [ -n "$region" ] || continue
    for a in "${arches[@]}"; do
        name="${layer_name:-lambda-admission-$a}"
        echo "publish-layer: $name ($a) to $region ..." >&2
        if ! published=$(aws lambda publish-layer-version --region "$region" \
            --layer-name "$name" \
            --description "lambda-admission $version ($a)" \
            --license-info Apache-2.0 \
            --zip-file "fileb://$dist/lambda-admission-$a.zip" \
            --compatible-architectures "$a" \
            --compatible-runtimes "${runtimes[@]}" \
            --query '[LayerVersionArn, Version]' --output text); then
            echo "publish-layer: publishing $a to $region failed" >&2
            exit 1
        fi
        read -r arn number <<< "$published"
        if $public; then
            if ! aws lambda add-layer-version-permission --region "$region" \
                --layer-name "$name" --version-number "$number" \
                --statement-id public --action lambda:GetLayerVersion --principal '*' \
                --output text >/dev/null; then
                echo "publish-layer: granting public access to $arn failed" >&2
                exit 1
            fi
        fi
        entries+=("$(printf '{"region": "%s", "arch": "%s", "arn": "%s", "version": %s}' \
            "$region" "$a" "$arn" "$number")")
    done
done
[ ${#entries[@]} -gt 0 ] || { echo "publish-layer: no region in --regions" >&2; exit 2; }
printf '[\n'
for i in "${!entries[@]}"; do
    sep=","
    [ "$i" -eq $((${#entries[@]} - 1)) ] && sep=""
    printf '  %s%s\n' "${entries[$i]}" "$sep"
done
printf ']\n'

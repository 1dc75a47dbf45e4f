#!/usr/bin/env bash
# Builds the statically linked dfsd and the dfsd:latest image from a small staging
# context. Pulls nothing: the image is FROM scratch.
#   docker/build-image.sh [TAG...]    (default: dfsd:latest)
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
if [[ "${DFSD_SKIP_BUILD:-0}" != 1 ]]; then
    RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release --locked --target "$target" --bin dfsd
fi
bin="$CARGO_TARGET_DIR/$target/release/dfsd"
if command -v file >/dev/null && ! file "$bin" | grep -qE 'statically linked|static-pie linked'; then
    echo "build-image: $bin is not statically linked" >&2
    exit 1
fi
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp docker/Dockerfile docker/passwd docker/group "$stage/"
cp "$bin" "$stage/dfsd"
strip "$stage/dfsd" 2>/dev/null || true
mkdir "$stage/data"
tags=("$@")
[[ ${#tags[@]} -gt 0 ]] || tags=(dfsd:latest)
args=()
for t in "${tags[@]}"; do args+=(-t "$t"); done
docker build --pull=false "${args[@]}" "$stage"
docker image inspect -f '{{.Size}}' "${tags[0]}" |
    awk -v t="${tags[0]}" '{ printf "build-image: %s is %.1f MB\n", t, $1 / 1e6 }'

#!/usr/bin/env bash
# Creates the TLS material docker/compose.yml mounts at /certs: a cluster CA and the
# coordinator's and the datanodes' certificates. Runs dfsd from the dfsd:latest image (no
# host binary needed), as the image's user (uid 65532), so the keys are readable inside
# the containers and nowhere else.
#   docker/make-certs.sh [DIR] [IMAGE]      (default: docker/certs, dfsd:latest)
set -euo pipefail
dir="${1:-$(dirname "$0")/certs}"
image="${2:-dfsd:latest}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
if [[ -e "$dir/ca.pem" ]]; then
    echo "make-certs: $dir already holds a CA; nothing to do"
    exit 0
fi
# The image's user must be able to write here.
chown 65532:65532 "$dir" 2>/dev/null || chmod 777 "$dir"
run() { docker run --rm -v "$dir:/certs" "$image" "$@"; }
run cert init --dir /certs
run cert issue --dir /certs --coord coordinator --san coordinator
run cert issue --dir /certs --node node
run cert issue --dir /certs --client client
echo "make-certs: CA and certificates in $dir"

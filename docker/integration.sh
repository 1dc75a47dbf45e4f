#!/usr/bin/env bash
# The Docker suite end to end: build the static binary and the dfsd:latest image, bring
# up the test cluster (docker/compose.yml + docker/compose.test.yml: 1 coordinator,
# 6 datanodes, short timeouts), run tests/docker.rs against it, and tear everything down
# (containers, network, volumes, the work dir) whether the tests pass or not.
#
#   docker/integration.sh            (also `just integration`)
#   DFSD_KEEP=1 docker/integration.sh    leaves the cluster up for a look afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
start=$(date +%s)

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    echo "integration: neither 'docker compose' nor 'docker-compose' is available" >&2
    exit 1
fi
project="${DFSD_COMPOSE_PROJECT:-dfsdit}"
files=(-f "$root/docker/compose.yml" -f "$root/docker/compose.test.yml")
dc() { "${compose[@]}" "${files[@]}" -p "$project" "$@"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/dfsd-docker-work.XXXXXX")"
chmod 777 "$work"

teardown() {
    local rc=$?
    if [[ "${DFSD_KEEP:-0}" == 1 ]]; then
        echo "integration: DFSD_KEEP=1, leaving project $project up (work dir $work)"
    else
        echo "== teardown"
        if [[ $rc != 0 ]]; then
            echo "== last log lines of the cluster"
            dc logs --no-color --tail=40 2>&1 || true
        fi
        dc down -v --remove-orphans >/dev/null 2>&1 || true
        rm -rf "$work"
    fi
    echo "integration: exit $rc after $(( $(date +%s) - start )) s"
    exit $rc
}
trap teardown EXIT
trap 'exit 130' INT TERM

echo "== image"
docker/build-image.sh dfsd:latest dfsd:test

echo "== certificates and admin key"
docker/make-certs.sh "$work/certs" dfsd:test
export DFSD_CERTS="$work/certs"
export DFSD_ADMIN_KEY_ID="DKINTEGRATIONTEST000"
DFSD_ADMIN_SECRET="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export DFSD_ADMIN_SECRET

echo "== cluster up (${compose[*]}, project $project)"
# Free loopback ports for the published coordinator and admin ports, below the kernel's
# ephemeral range (32768 and up here), where outgoing connections of the tests that ran
# before take their local ports: a port chosen there can be busy for a moment (seen as
# "bind: address already in use" from docker-proxy).
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$(( 20000 + RANDOM % 12000 ))
        if ! ss -Htan "( sport = :$p )" 2>/dev/null | grep -q .; then
            echo "$p"
            return
        fi
    done
    echo "$p"
}
# The coordinator's port, its admin port and the six datanodes' ports, all distinct.
taken=" "
for var in DFSD_PORT DFSD_ADMIN_PORT DFSD_DN1_PORT DFSD_DN2_PORT DFSD_DN3_PORT \
    DFSD_DN4_PORT DFSD_DN5_PORT DFSD_DN6_PORT; do
    p="${!var:-}"
    while [[ -z "$p" || "$taken" == *" $p "* ]]; do
        p=$(free_port)
    done
    taken+="$p "
    export "$var=$p"
done
echo "   ports: coordinator $DFSD_PORT, admin $DFSD_ADMIN_PORT, datanodes $DFSD_DN1_PORT..."
dc down -v --remove-orphans >/dev/null 2>&1 || true
dc up -d

echo "== suite (tests/docker.rs)"
export DFSD_DOCKER_TESTS=1 DFSD_COMPOSE="${compose[*]}" DFSD_COMPOSE_PROJECT="$project" \
    DFSD_DOCKER_WORK="$work" DFSD_IMAGE=dfsd:test
suite_start=$(date +%s)
# The test binary itself need not be static: the host build is the one `cargo test --release`
# already made, so in CI only the image's static dfsd is compiled a second time.
cargo test --release --locked --test docker -- --test-threads=1 --nocapture
echo "integration: suite took $(( $(date +%s) - suite_start )) s"

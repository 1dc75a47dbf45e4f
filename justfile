# dfsd tasks. Each recipe is a plain cargo command, so machines without `just` can run
# the same thing by hand.

# List the recipes.
default:
    @just --list

# Release build of the dfsd binary.
build:
    cargo build --release

# Unit and integration tests (release: the integration tests move real data).
test:
    cargo test --release

# Formatting and clippy, warnings as errors.
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# Cluster benchmark: 3 datanodes, replication 2; plus S3 gateway phases when python3 has
# boto3. DFSD_BENCH_SIZE_MIB=256 for a quick run, 5120 for the 5 GiB memory check.
bench:
    cargo bench --bench cluster

# Repair benchmark: SIGKILL a datanode holding 1 GiB of replicas (4 nodes, default
# timeouts); prints detection time, time to full redundancy and repair throughput.
bench-repair:
    cargo bench --bench repair

# An all-in-one local cluster to try dfsd.
dev:
    cargo run --release -- dev

# The Docker suite: static binary, dfsd:latest image, a 7-container cluster, tests/docker.rs,
# teardown (also on failure). Needs a Docker engine; pulls nothing.
integration:
    docker/integration.sh

# Build the dfsd:latest image (FROM scratch, static binary).
image:
    docker/build-image.sh

# workshop-cli tasks. On a machine without `just`, use the shim next to this file: ./just <recipe>
# (it installs just from PyPI, rust-just, into .services/ on first use).

set dotenv-load := false
set positional-arguments := true
set shell := ["bash", "-euo", "pipefail", "-c"]

# Show the recipes
default:
    @{{ just_executable() }} --justfile {{ quote(justfile()) }} --list --unsorted

# ---------------------------------------------------------------- services
# Services: MariaDB :3306, PostgreSQL :5432, Valkey :6379 (all on 127.0.0.1; db/user/password `workshop`).
# Without Docker: scripts/services.sh installs (Debian/Ubuntu, root) and starts them. With Docker: docker compose up -d

# Install (if needed) and start MariaDB, PostgreSQL and Valkey; does nothing for those already answering
up:
    scripts/services.sh up

# Stop the services that `up` started (listed in .services/started); others are left alone
down:
    scripts/services.sh down

# One line per service; fails unless all three answer with the workshop logins
status:
    scripts/services.sh status

# ---------------------------------------------------------------- build & workshop
# Build the release binary
build:
    cargo build --release --quiet

# Load the workshop data set into the database (args go to `workshop-cli seed`)
seed *ARGS: up build
    ./target/release/workshop-cli seed "$@"

# Undo what the workshop wrote to the configured database and delete its keys (args go to `workshop-cli clean`, e.g. --dry-run)
clean *ARGS: up build
    ./target/release/workshop-cli clean "$@"

# Check configuration and connectivity (args go to `workshop-cli check-env`)
check-env *ARGS: up build
    ./target/release/workshop-cli check-env "$@"

# Exercise 0: check the environment
exercise-0: up build
    ./target/release/workshop-cli check-env

# Exercise 1: cache-aside
exercise-1: up seed
    ./target/release/workshop-cli cache-aside --id 3797

# Exercise 2: write-through
exercise-2: up seed
    ./target/release/workshop-cli write-through

# ---------------------------------------------------------------- checks
# Run all tests against the local services (started first); WORKSHOP_TEST_* variables already set win
test: up
    #!/usr/bin/env bash
    set -euo pipefail
    export WORKSHOP_TEST_MYSQL_URL="${WORKSHOP_TEST_MYSQL_URL:-mysql://workshop:workshop@127.0.0.1:3306/workshop}"
    export WORKSHOP_TEST_POSTGRES_URL="${WORKSHOP_TEST_POSTGRES_URL:-postgres://workshop:workshop@127.0.0.1:5432/workshop}"
    export WORKSHOP_TEST_VALKEY_URL="${WORKSHOP_TEST_VALKEY_URL:-redis://127.0.0.1:6379}"
    # Absolute path of the valkey-server in use (a test starts its own on a free port).
    export WORKSHOP_VALKEY_SERVER="${WORKSHOP_VALKEY_SERVER:-$(scripts/services.sh valkey-bin)}"
    cargo test --all-targets

# Formatting and clippy, warnings are errors
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# What CI runs (.ci/run): lint, then test
ci: lint test

# ---------------------------------------------------------------- more recipes
# Other recipes go below this line, each with a `#` doc comment above it.
# `seed` loads the default database (MariaDB); the bench reads PostgreSQL too, so it is seeded here as well
# (a no-op once loaded); `build` (via seed) made the binary. A report, not a gate: a missed target still exits 0.
# WORKSHOP_BIN=path measures another binary; other knobs (BENCH_ROUNDS, BENCH_RUNS, ...) are at the top of scripts/bench.sh.
# Benchmark workshop-cli against redis-benchmark, pgbench and sysbench on the same work; prints ratios, writes BENCHMARKS.md
bench: up seed up-cluster
    ./target/release/workshop-cli --database-url postgres://workshop:workshop@127.0.0.1:5432/workshop seed
    WORKSHOP_BIN="${WORKSHOP_BIN:-./target/release/workshop-cli}" scripts/bench.sh

# Exercise 4: two-level cache (in-process L1, Valkey L2), warming, invalidation across processes
exercise-4: up seed
    ./target/release/workshop-cli multi-level --l1-capacity 100

# Exercise 5: write-behind (acknowledge from Valkey, a flusher stores the writes in batches)
exercise-5: up seed
    ./target/release/workshop-cli write-behind

# Exercise 3: cache statistics (hit rates and latency per layer, Valkey's INFO, timeline; --format prometheus, --maxmemory)
exercise-3: up seed
    ./target/release/workshop-cli stats

# Exercise 6: cache stampede (100 requests for one cold key: none, single flight, Valkey lock; then XFetch on an expiring key)
exercise-6: up seed
    ./target/release/workshop-cli stampede

# Exercise 9: leaderboard (a sorted set next to the SQL aggregate; new bookings update both)
exercise-9: up seed
    ./target/release/workshop-cli leaderboard

# Exercise 8: cache-aside around a slow HTTP API (a built-in fake upstream): calls avoided, stale-if-error, stampede modes
exercise-8: up build
    ./target/release/workshop-cli api-cache

# Exercise 10: a session store: hashes with a sliding expiry versus a database table
exercise-10: up build
    ./target/release/workshop-cli session

# Exercise 11: rate limiting (fixed window, sliding log, token bucket) under three times the allowed load
exercise-11: up build
    ./target/release/workshop-cli rate-limit
# Exercise 12: TTL and jitter (500 keys expire together, then spread by ± 50 %)
exercise-12: up seed
    ./target/release/workshop-cli ttl --ttl 3
# Exercise 13: client-side caching with CLIENT TRACKING (default, BCAST) next to pub/sub (single Valkey node)
exercise-13: up seed
    ./target/release/workshop-cli tracking
# Exercise 7: the catalogue as an HTTP service: starts serve, reads a product with curl, runs load for 20 s, stops serve
exercise-7: up seed
    #!/usr/bin/env bash
    set -euo pipefail
    ./target/release/workshop-cli serve --listen 127.0.0.1:8080 & server=$!
    trap 'kill -TERM $server 2>/dev/null; wait $server' EXIT
    for _ in $(seq 50); do curl -fs http://127.0.0.1:8080/healthz >/dev/null && break; sleep 0.1; done
    for _ in 1 2 3; do curl -si http://127.0.0.1:8080/products/42 | grep -iE '^(x-cache|server-timing):'; done
    echo "the service is at http://127.0.0.1:8080 (/stats, /metrics, /healthz); load runs for 20 s"
    echo "watch it live: open the dashboard at http://127.0.0.1:8080/ in a browser"
    ./target/release/workshop-cli load --url http://127.0.0.1:8080 --duration 20 --read-ratio 95
# Start a local Valkey Cluster (3 primaries + 3 replicas on 127.0.0.1:7001-7006) and wait for cluster_state:ok
up-cluster:
    scripts/services.sh cluster up

# Stop the cluster nodes that `up-cluster` started; others are left alone
down-cluster:
    scripts/services.sh cluster down

# Exercise 14: Valkey Cluster (keys per primary, hash tags, CROSSSLOT, a primary frozen under load); starts the cluster
exercise-14: up seed up-cluster
    VALKEY_URL=redis://127.0.0.1:7001 ./target/release/workshop-cli cluster

# The integration suite against the local Valkey Cluster (started first) instead of the single node
test-cluster: up up-cluster
    #!/usr/bin/env bash
    set -euo pipefail
    export WORKSHOP_TEST_MYSQL_URL="${WORKSHOP_TEST_MYSQL_URL:-mysql://workshop:workshop@127.0.0.1:3306/workshop}"
    export WORKSHOP_TEST_POSTGRES_URL="${WORKSHOP_TEST_POSTGRES_URL:-postgres://workshop:workshop@127.0.0.1:5432/workshop}"
    export WORKSHOP_TEST_VALKEY_URL=redis://127.0.0.1:7001
    export WORKSHOP_VALKEY_SERVER="${WORKSHOP_VALKEY_SERVER:-$(scripts/services.sh valkey-bin)}"
    cargo test --tests

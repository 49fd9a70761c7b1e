#!/usr/bin/env bash
# Online expand of a sharded cluster: a coordinator and two data groups
# (each a primary + a synchronous standby) holding MB megabytes in 64
# shards, 4 writers through the coordinator (INSERT/UPDATE/DELETE, each
# audited); a third group added, the shards moved onto it. Figures, all from
# one run (crates/cli/tests/shard.rs, ignored test `expand_figures`, release
# build):
#   - the write pause of every move (server side: lock request to commit)
#     p50/p99/max, and the writers' op latency over the run;
#   - the copy rate of sampled moves against a bare
#     `psql -c 'COPY .. TO STDOUT' | psql -c 'COPY .. FROM STDIN'` of the same
#     shard between the same two primaries;
#   - rows lost or duplicated (the audit replayed against the data);
#   - the whole expand against a pg_basebackup of one data node (the first
#     step of AntDB's EXPAND DATANODE).
#   bench/expand.sh              # MB=1000
#   MB=100 bench/expand.sh       # a quick smoke run
# Prints Markdown (stdout). Every server it starts is stopped by PID when it
# ends, also on failure (the test kit's cleanup).
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${MB:-1000}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo build -q --release --all-features --tests -p pgscale >&2
PGSCALE_BENCH_MB=$MB PGSCALE_BENCH_OUT=$out \
  cargo test -q --release --all-features -p pgscale --test shard -- --ignored --exact expand_figures --nocapture >&2
echo "### Expand 2 → 3 groups ($(date -u +%Y-%m-%d), $(git rev-parse --short HEAD), MB=$MB)"
echo
cat "$out"

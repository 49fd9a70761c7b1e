#!/usr/bin/env bash
# `pgscale init` of a primary and two standbys (one sync, one cascaded) from
# one file, against `init` of the primary followed by one `scale-out` of the
# two, measured in the same run on this machine, on loopback only.
#   bench/init.sh            # RUNS=3 by default
# Prints a Markdown table (stdout); progress on stderr. Every server it starts
# is stopped by PID (postmaster.pid) when it exits, also on failure.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
cargo build --release -q
B=$PWD/target/release/pgscale
W=$(mktemp -d /tmp/pgscale-bench-XXXXXX)
chmod 755 "$W"
export PGSCALE_HOME=$W/home
. bench/lib.sh
trap stop_servers EXIT
PORT=$(free_port 3)
{ echo "name: bench"; echo "nodes:"; node pg1 127.0.0.1; node pg2 127.0.0.2 "sync: sync"; node pg3 127.0.0.3 "upstream: pg2"; } > "$W/all.yaml"
{ echo "name: bench"; echo "nodes:"; node pg1 127.0.0.1; } > "$W/primary.yaml"
{ echo "nodes:"; node pg2 127.0.0.2 "sync: sync"; node pg3 127.0.0.3 "upstream: pg2"; } > "$W/add.yaml"
check_ok() { "$B" check -n bench >/dev/null || { log "check found problems"; "$B" check -n bench >&2; exit 1; }; }

one=(); two=()
for i in $(seq "$RUNS"); do
  log "run $i: init of three nodes from one file"
  t0=$(now); "$B" init -c "$W/all.yaml" 2>/dev/null; t1=$(now)
  check_ok
  one+=("$(secs "$t0" "$t1")")
  "$B" destroy -n bench --yes 2>/dev/null
  log "run $i: init of the primary, then scale-out of two"
  t0=$(now); "$B" init -c "$W/primary.yaml" 2>/dev/null; "$B" scale-out -n bench -c "$W/add.yaml" 2>/dev/null; t1=$(now)
  check_ok
  two+=("$(secs "$t0" "$t1")")
  "$B" destroy -n bench --yes 2>/dev/null
done
m1=$(median "${one[@]}"); m2=$(median "${two[@]}")
ratio=$(python3 -c "print(f'{$m1 / $m2:.2f}')")
echo "| figure | pgscale init (3 nodes, one file) | init + scale-out, same run | ratio |"
echo "| --- | --- | --- | --- |"
echo "| primary + sync standby + cascaded standby, until every standby streams and check is clean | $m1 s | $m2 s | ${ratio}x |"
echo
echo "Raw seconds: one file ${one[*]} / init + scale-out ${two[*]}."

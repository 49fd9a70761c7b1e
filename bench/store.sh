#!/usr/bin/env bash
# The cost of keeping a cluster's state in etcd: `status` and a scale-out
# (then scale-in) of one standby, with a 3-member etcd against the same with
# the home store, in the same run, alternating; and the lock hand-over after
# a holder's crash (kill -9 mid scale-out, then `resume` from another home
# with --lock-wait: the time until its pid holds the lock in etcd).
#   bench/store.sh            # RUNS=11
#   RUNS=1 bench/store.sh     # a quick smoke run
# Prints a Markdown table (stdout); progress on stderr. Every server and
# etcd member it starts is stopped by PID when it exits, also on failure.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
RUNS=${RUNS:-11}
cargo build --release -q
B=$PWD/target/release/pgscale
W=$(mktemp -d /tmp/pgscale-bench-XXXXXX)
chmod 755 "$W"
. bench/lib.sh
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  stop_servers
}
trap cleanup EXIT

start_etcd

home() { env -u PGSCALE_ETCD PGSCALE_HOME="$W/home" "$B" "$@"; }
etcd_() { PGSCALE_HOME="$W/home" PGSCALE_ETCD="$EPS" "$B" "$@"; }
PORT=$(free_port 3)
{ echo "name: hb"; echo "nodes:"; node h1 127.0.0.1; } >"$W/hb.yaml"
{ echo "name: eb"; echo "nodes:"; node e1 127.0.0.2; } >"$W/eb.yaml"
{ echo "nodes:"; node h2 127.0.0.3; } >"$W/h2.yaml"
{ echo "nodes:"; node e2 127.0.0.3; } >"$W/e2.yaml"
home init -c "$W/hb.yaml" 2>/dev/null
etcd_ init -c "$W/eb.yaml" 2>/dev/null

timed() { local t0; t0=$(now); "$@" >/dev/null 2>&1; secs "$t0" "$(now)"; }
sh_=(); se=(); soh=(); soe=()
for r in $(seq "$RUNS"); do
  for _ in 1 2 3; do
    sh_+=("$(timed home status -n hb)"); se+=("$(timed etcd_ status -n eb)")
  done
  soh+=("$(timed home scale-out -n hb -c "$W/h2.yaml")")
  home scale-in -n hb --node h2 --clear-dir --yes >/dev/null 2>&1
  soe+=("$(timed etcd_ scale-out -n eb -c "$W/e2.yaml")")
  etcd_ scale-in -n eb --node e2 --clear-dir --yes >/dev/null 2>&1
  log "run $r: scale-out home ${soh[-1]} s, etcd ${soe[-1]} s"
done
ms() { python3 -c "print(f'{float(\"$1\") * 1000:.0f}')"; }
stH=$(median "${sh_[@]}"); stE=$(median "${se[@]}")
soH=$(median "${soh[@]}"); soE=$(median "${soe[@]}")
# Runs are alternated and paired: the median of the per-run differences is
# steadier than the difference of medians on a noisy machine.
diffs=(); for i in "${!soh[@]}"; do diffs+=("$(python3 -c "print(f'{${soe[$i]} - ${soh[$i]}:.3f}')")"); done
soD=$(median "${diffs[@]}")

# Lock hand-over: a scale-out copying ~40 MB at 4 MB/s, killed with -9 while
# it holds the lock; `resume` from another home waits for the lock.
PGPASSFILE=$W/home/eb/pgpass "$(ls -d /usr/lib/postgresql/*/bin | sort -t/ -k5 -n | tail -1)/psql" \
  -h 127.0.0.2 -p "$PORT" -U postgres -d postgres -Atqc \
  "create table big as select g, repeat(md5(g::text), 20) as pad from generate_series(1, 60000) g"
LOCK=/pgscale/clusters/eb/lock
# Every change of the lock key, stamped as it arrives (a poll misses a short hold).
"${ETCDCTL[@]}" watch "$LOCK" > >(while IFS= read -r l; do echo "$(now) $l"; done >"$W/watch.log") 2>/dev/null &
PIDS+=("$!")
etcd_ scale-out -n eb --max-rate 4M -c "$W/e2.yaml" >/dev/null 2>&1 &
SO=$!; PIDS+=("$SO")
for _ in $(seq 200); do grep -q "\"pid\":$SO" "$W/watch.log" 2>/dev/null && break; sleep 0.05; done
sleep 1
kill -9 "$SO"
t0=$(now)
PGSCALE_HOME="$W/home2" PGSCALE_ETCD="$EPS" PGSCALE_ETCD_KEY_FILE="$W/home/etcd.key" \
  "$B" resume -n eb --yes --lock-wait 30s >"$W/resume.log" 2>&1 &
RS=$!; PIDS+=("$RS")
wait "$RS" || { cat "$W/resume.log" >&2; exit 1; }
sleep 0.5
got=$(grep -m1 "\"pid\":$RS" "$W/watch.log" | cut -d' ' -f1)
[ -n "$got" ] || { echo "the watch never saw resume (pid $RS) take the lock" >&2; cat "$W/watch.log" >&2; exit 1; }
handover=$(secs "$t0" "$got")
log "lock handed over after $handover s; resume finished the scale-out"

echo "| figure (median of $RUNS runs; status: of $((RUNS * 3))) | home store | etcd store | etcd − home | ratio |"
echo "| --- | --- | --- | --- | --- |"
echo "| \`status\` of a 1-node cluster | $(ms "$stH") ms | $(ms "$stE") ms | $(python3 -c "print(f'{($stE - $stH) * 1000:.0f}')") ms | $(python3 -c "print(f'{$stE / $stH:.2f}')")x |"
echo "| \`scale-out\` of one standby | $soH s | $soE s | $soD s (median of paired runs) | $(python3 -c "print(f'{($soH + $soD) / $soH:.2f}')")x |"
echo
echo "| lock hand-over after kill -9 of the holder (TTL 5 s) |"
echo "| --- |"
echo "| $handover s from the kill until \`resume\` on another home holds the lock |"

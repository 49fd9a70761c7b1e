#!/usr/bin/env bash
# Automatic failover by the agents: the time from a fault on the primary to
# the first acknowledged commit on the new primary, N runs per fault, each
# fault injected at a uniformly random phase in [0, TTL) by the probe
# (crates/cli/examples/failover_probe.rs: one writer per node every 10 ms,
# acknowledgements and the fault stamped on CLOCK_MONOTONIC). Faults:
#   crash  kill -9 of the primary's postmaster and every process under it
#   hang   SIGSTOP of the primary's postmaster (fresh connections hang)
#   node   kill -9 of the primary's agent and PostgreSQL (the agent comes back)
#   partition  the primary's host cut off (both links down), then healed
#   switchover           `pgscale switchover` to the synchronous standby,
#                        agents running (the same probe; the "fault" is the command)
#   switchover-noagents  the same with no agent running (HA disabled, agents
#                        stopped for these rounds, started again after)
#   etcdcut    the primary's host cut from etcd only (replication and clients
#              still reach it), then healed
# The last two need root: they run on the network-namespace bed of
# crates/cli/tests/partition.rs (three namespaces, each with PostgreSQL,
# sshd, an agent and an etcd member; a writer beside every node), through
# its ignored test `partition_figures`, in a release build, with PROFILE.
# Setup: a 3-member etcd (500 ms election), pg1 primary, pg2 sync, pg3 async,
# an agent per node with the default profile (2 s lease). Between runs the
# agents rejoin the old primary; the next run faults whoever is primary.
#   bench/doctor.sh                 # N=20
#   N=3 bench/doctor.sh             # a quick smoke run
#   PROFILE=fast FAULTS=node bench/doctor.sh   # node death with the 1 s lease profile
#   FAULTS="partition etcdcut" bench/doctor.sh   # the namespace faults only
#   PEERS=/tmp/peers-out bench/doctor.sh   # add ../shared/peers figures from that run's output
#   KEEP_LOGS=1 N=3 FAULTS=crash bench/doctor.sh   # keep the agents' and servers' logs
#   PEERS=run bench/doctor.sh   # run the peers (repmgr, pg_auto_failover, Patroni) first, same machine
# Prints a Markdown table (stdout); progress on stderr. Every process it
# starts is stopped by PID when it exits, also on failure.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
N=${N:-20}
PROFILE=${PROFILE:-default}   # the agents' lease profile: default (2 s) or fast (1 s)
FAULTS=${FAULTS:-crash hang node switchover switchover-noagents partition etcdcut}
if [ "${PEERS:-}" = run ]; then
  # The peers' own harness, before pgscale's runs, on the same machine.
  PEERS=$(mktemp -d /tmp/peers-out-XXXXXX)
  OUTDIR=$PEERS SWITCHOVER_ROUNDS=0 FAILOVER_ROUNDS=${PEER_ROUNDS:-3} ../shared/peers/run_all.sh repmgr pgautofailover patroni >&2 || true
fi
LOOPBACK=() NETNS=()
for f in $FAULTS; do
  case $f in
    partition | etcdcut) NETNS+=("$f") ;;
    *) LOOPBACK+=("$f") ;;
  esac
done
cargo build --release -q
cargo build --release -q --example failover_probe
B=$PWD/target/release/pgscale
PROBE=$PWD/target/release/examples/failover_probe
W=$(mktemp -d /tmp/pgscale-bench-XXXXXX)
chmod 755 "$W"
. bench/lib.sh
PIDS=()
declare -A AGENT HTTP
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}" "${AGENT[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "$rc" != 0 ]; then
    mkdir -p "$W.logs" && cp "$W"/*.log "$W"/*/log/*.log "$W.logs/" 2>/dev/null || true
    cp "$W"/home/af/*.log "$W.logs/" 2>/dev/null || true
    log "logs kept in $W.logs"
  fi
  # The fence guards (started by the agents) name their FIFO under $W.
  for d in /proc/[0-9]*; do
    if { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -q -- "--fifo $W/"; then kill -9 "${d#/proc/}" 2>/dev/null || true; fi
  done
  stop_servers
}
trap cleanup EXIT

if [ ${#LOOPBACK[@]} -gt 0 ]; then
start_etcd
export PGSCALE_HOME=$W/home PGSCALE_ETCD=$EPS
PORT=$(free_port 3)
{ echo "name: af"; echo "nodes:"; node pg1 127.0.0.1; node pg2 127.0.0.2 "sync: sync"; node pg3 127.0.0.3; } >"$W/af.yaml"
"$B" init -c "$W/af.yaml" >/dev/null 2>&1
"$B" ha -n af enable 2>/dev/null
"$B" psql -n af -- -qc "CREATE TABLE probe (id bigint PRIMARY KEY)"
awk -F: '$4 == "postgres" { print $5 }' "$W/home/af/pgpass" >"$W/pw"
chmod 600 "$W/pw"
start_agent() { # node
  local i=${1#pg}
  [ -n "${HTTP[$1]:-}" ] || HTTP[$1]="127.0.0.$i:$(free_port "$i")"
  "$B" agent -n af --node "$1" --http "${HTTP[$1]}" --profile "$PROFILE" >>"$W/agent-$1.log" 2>&1 &
  AGENT[$1]=$!
}
for n in pg1 pg2 pg3; do start_agent "$n"; done
status() { "$B" ha -n af status --output json 2>/dev/null; }
leader() {
  if [ "$AGENTS" = on ]; then
    status | python3 -c 'import json,sys; print(json.load(sys.stdin).get("leader") or "")' 2>/dev/null || true
  else # no agents, no leader key: the node that runs as a primary
    for n in pg1 pg2 pg3; do
      [ "$("$B" psql -n af --node "$n" -- -Atc "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ] && echo "$n" && return
    done
  fi
}
AGENTS=on
sync_of() { "$B" psql -n af --node "$1" -- -Atc "SELECT application_name FROM pg_stat_replication WHERE sync_state = 'sync' LIMIT 1"; }
# Healthy: a leader, both others streaming from it, one of them synchronous.
healthy() {
  local l; l=$(leader); [ -n "$l" ] || return 1
  [ "$("$B" psql -n af --node "$l" -- -Atc "SELECT count(*) FILTER (WHERE state = 'streaming') || ':' || count(*) FILTER (WHERE sync_state = 'sync') FROM pg_stat_replication" 2>/dev/null)" = "2:1" ]
}
wait_healthy() {
  for _ in $(seq 600); do healthy && return 0; sleep 0.2; done
  log "the cluster did not become healthy"; tail -n 20 "$W"/agent-*.log >&2; return 1
}
addr() { echo "127.0.0.${1#pg}:$PORT"; }

for fault in "${LOOPBACK[@]}"; do
  : >"$W/$fault.jsonl"
  if [ "$fault" = switchover-noagents ]; then
    # Disabled first, so that the guards are disarmed before the agents go.
    "$B" ha -n af disable >/dev/null 2>&1; sleep 2
    for n in pg1 pg2 pg3; do kill "${AGENT[$n]}" 2>/dev/null || true; wait "${AGENT[$n]}" 2>/dev/null || true; done
    AGENTS=off
  fi
  for i in $(seq "$N"); do
    wait_healthy
    l=$(leader)
    pm=$(head -1 "$W/$l/postmaster.pid")
    case $fault in
      # The postmaster and every process under it (it is not always a
      # process-group leader: a server restarted by a rejoin is not).
      crash) f=(sh -c 'kill -9 "$1" $(ps -o pid= --ppid "$1")' sh "$pm") ;;
      hang) f=(kill -STOP "$pm") ;;
      node) f=(sh -c 'kill -9 "$2" "$1" $(ps -o pid= --ppid "$1")' sh "$pm" "${AGENT[$l]}") ;;
      switchover*) f=("$B" switchover -n af --to "$(sync_of "$l")" --yes) ;;
    esac
    ttl_ms=$([ "$PROFILE" = fast ] && echo 1000 || echo 2000)
    phase=$(python3 -c "import random; print(int(random.uniform(0, $ttl_ms)))")
    if out=$("$PROBE" --nodes "$(addr pg1),$(addr pg2),$(addr pg3)" --password-file "$W/pw" --old "$(addr "$l")" --phase-ms "$phase" -- "${f[@]}"); then
      echo "$out" >>"$W/$fault.jsonl"
      log "$fault $i/$N on $l: $out"
    else
      log "$fault $i/$N on $l: no failover: $out"; tail -n 30 "$W"/agent-*.log >&2; exit 1
    fi
    if [ "$fault" = node ]; then start_agent "$l"; fi
  done
  if [ "$AGENTS" = off ]; then
    for n in pg1 pg2 pg3; do start_agent "$n"; done
    "$B" ha -n af enable >/dev/null 2>&1
    AGENTS=on
  fi
done
fi

for fault in "${NETNS[@]}"; do
  if [ "$(id -u)" != 0 ]; then log "$fault: the namespace bed needs root: skipped"; continue; fi
  # The bed's test stops every process it starts and deletes its namespaces.
  PGSCALE_BENCH_N=$N PGSCALE_BENCH_FAULT=$fault PGSCALE_BENCH_OUT=$W/$fault.jsonl PGSCALE_BENCH_PROFILE=$PROFILE \
    cargo test -q --release --all-features -p pgscale --test partition -- --ignored --exact partition_figures --nocapture >&2
done

echo "| fault (N=$N each, profile $PROFILE: lease TTL $([ "$PROFILE" = fast ] && echo 1 || echo 2) s, random phase) | time to first commit on the new primary p50 / p95 / max | longest write gap p50 / p95 / max | dual-ack overlap | acknowledged ids lost |"
echo "| --- | --- | --- | --- | --- |"
for fault in $FAULTS; do
  [ -s "$W/$fault.jsonl" ] || continue
  python3 - "$W/$fault.jsonl" "$fault" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def q(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p * (len(v) - 1))))]
def f(k):
    v = [r[k] for r in rows]
    return f"{statistics.median(v):.2f} / {q(v, 0.95):.2f} / {max(v):.2f} s"
name = {"crash": "PostgreSQL crash on the primary (kill -9)", "hang": "hung primary (SIGSTOP of the postmaster)",
        "node": "the primary's agent and PostgreSQL killed (node death without a partition)",
        "switchover": "`pgscale switchover` with the agents running (write downtime = the gap)",
        "switchover-noagents": "`pgscale switchover` without agents",
        "partition": "the primary's host cut off (links down; namespace bed)",
        "etcdcut": "the primary's host cut from etcd only (namespace bed)"}[sys.argv[2]]
print(f"| {name} | {f('rto_s')} | {f('gap_s')} | {max(r['dual_ack_s'] for r in rows):.3f} s max | {sum(r['lost'] for r in rows)} of {sum(r['acked'] for r in rows)} |")
PY
done
if [ -n "${PEERS:-}" ] && [ -d "$PEERS" ]; then
  echo
  echo "Peers, same machine, from \`../shared/peers/run_all.sh\` output in $PEERS (write downtime after SIGKILL of the primary's manager and PostgreSQL):"
  echo
  grep -hE 'failover.*(downtime_max|rto)' "$PEERS"/*.txt | sed 's/^/    /' || true
fi

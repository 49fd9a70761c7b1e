#!/usr/bin/env bash
# pgscale switchover / failover / rejoin figures, with a write probe, against
# the bare PostgreSQL floor measured in the same run; loopback only.
#   bench/ha.sh                  # RUNS=3 SCALE=10
# Prints a Markdown table (stdout); progress on stderr. Every server it starts
# is stopped by PID (postmaster.pid) when it exits, also on failure.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SCALE=${SCALE:-10}
cargo build --release -q
cargo build --release -q --example write_probe
B=$PWD/target/release/pgscale
PROBE=$PWD/target/release/examples/write_probe
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -t/ -k5 -n | tail -1)
W=$(mktemp -d /tmp/pgscale-bench-XXXXXX)
chmod 755 "$W"
export PGSCALE_HOME=$W/home
if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); OSU=postgres; else AS=(); OSU=$(id -un); fi
chown "$OSU" "$W"
. bench/lib.sh
PROBE_PID=
cleanup() {
  [ -n "$PROBE_PID" ] && kill "$PROBE_PID" 2>/dev/null || true
  stop_servers
}
trap cleanup EXIT
PORT=$(free_port 7)
mkcluster() { # name, primary address
  { echo "name: $1"; echo "nodes:"; node "${1}1" "$2"; } > "$W/$1.yaml"
  "$B" init -c "$W/$1.yaml" >/dev/null 2>&1
}

# --- the probe ----------------------------------------------------------------
probe_start() { # cluster, hosts(comma) -> starts the probe
  local pw; pw=$(grep ':postgres:' "$PGSCALE_HOME/$1/pgpass" | awk -F: '{print $5}')
  rm -f "$W/stop"
  PROBE_CONNINFO="host=$2 port=$(echo "$2" | tr ',' '\n' | sed "s/.*/$PORT/" | paste -sd,) user=postgres dbname=postgres password=$pw target_session_attrs=read-write connect_timeout=1" \
    "$PROBE" "$W/probe.out" "$W/stop" 120 &
  PROBE_PID=$!
  sleep 2
}
probe_stop() { touch "$W/stop"; wait "$PROBE_PID" || true; PROBE_PID=; }
# longest gap between successful commits that ended in [t0, t1+2]; first
# commit after t0; missing ids are checked separately.
gap() { python3 - "$W/probe.out" "$1" "$2" <<'PY'
import sys
rows=[l.split() for l in open(sys.argv[1])]
t0,t1=float(sys.argv[2])*1e9,float(sys.argv[3])*1e9
ok=[int(r[2]) for r in rows if r[3]=="1"]
before=[t for t in ok if t<t0]; after=[t for t in ok if t>=t0]
prev=before[-1] if before else t0
g=0.0
for t in after:
    if t>t1+2e9: break
    g=max(g,(t-prev)/1e9); prev=t
# first commit of an insert that STARTED after t0: one in flight when the
# old primary died may still be acknowledged a moment later, by the old one
fresh=[int(r[2]) for r in rows if r[3]=="1" and int(r[1])>=t0]
first=(min(fresh)-t0)/1e9 if fresh else -1
print(f"{g:.3f} {first:.3f}")
PY
}
missing() { # cluster node -> committed ids absent from node
  local ids; ids=$(awk '$4==1{print $1}' "$W/probe.out" | paste -sd,)
  [ -n "$ids" ] || { log "the probe committed nothing: see $W/probe.out"; exit 1; }
  local n; n=$(awk '$4==1' "$W/probe.out" | wc -l)
  local found; found=$("$B" psql -n "$1" --node "$2" -- -Atc "select count(*) from probe where id in ($ids)")
  echo $((n - found))
}

# --- bare floor: pg_ctl stop -m fast, then pg_ctl promote ------------------------
floor=()
for r in $(seq "$RUNS"); do
  log "bare floor $r/$RUNS"
  mkcluster f 127.0.0.6
  { echo "nodes:"; node f2 127.0.0.7; } > "$W/f-add.yaml"
  "$B" scale-out -n f -c "$W/f-add.yaml" >/dev/null 2>&1
  probe_start f 127.0.0.6,127.0.0.7
  t0=$(now)
  "${AS[@]}" "$BIN/pg_ctl" stop -D "$W/f1" -m fast -w >/dev/null
  "${AS[@]}" "$BIN/pg_ctl" promote -D "$W/f2" -w >/dev/null
  t1=$(now); sleep 1; probe_stop
  floor+=("$(gap "$t0" "$t1" | cut -d' ' -f1)")
  "$B" destroy -n f --yes >/dev/null 2>&1
done

# --- pgscale --------------------------------------------------------------------
mkcluster ha 127.0.0.1
{ echo "nodes:"; node ha2 127.0.0.2 "sync: sync"; node ha3 127.0.0.3 "sync: potential"; } > "$W/ha-add.yaml"
"$B" scale-out -n ha -c "$W/ha-add.yaml" >/dev/null 2>&1
log "pgbench -i -s $SCALE"
PGPASSFILE=$PGSCALE_HOME/ha/pgpass "$BIN/pgbench" -i -s "$SCALE" -q -h 127.0.0.1 -p "$PORT" -U postgres postgres 2>/dev/null
HOSTS=127.0.0.1,127.0.0.2,127.0.0.3
sw=(); swmiss=0; fo=(); fomiss=0; rj=(); rc=()
primary=ha1; other=ha2
for r in $(seq "$RUNS"); do
  log "switchover $r/$RUNS"
  probe_start ha "$HOSTS"
  t0=$(now); "$B" switchover -n ha --to "$other" --yes >/dev/null 2>"$W/last.log" || { cat "$W/last.log" >&2; exit 1; }; t1=$(now)
  sleep 1; probe_stop
  sw+=("$(gap "$t0" "$t1" | cut -d' ' -f1)"); swmiss=$((swmiss + $(missing ha "$other")))
  tmp=$primary; primary=$other; other=$tmp

  log "failover $r/$RUNS"
  probe_start ha "$HOSTS"
  pid=$(head -1 "$W/$primary/postmaster.pid"); kill -9 -- "-$pid"
  t0=$(now); "$B" failover -n ha --yes >/dev/null 2>"$W/last.log" || { cat "$W/last.log" >&2; exit 1; }; t1=$(now)
  sleep 1; probe_stop
  newp=$("$B" status -n ha --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["primary"])')
  fo+=("$(gap "$t0" "$t1" | cut -d' ' -f2)"); fomiss=$((fomiss + $(missing ha "$newp")))
  t0=$(now); "$B" rejoin -n ha --node "$primary" --yes >/dev/null 2>"$W/last.log" || { cat "$W/last.log" >&2; exit 1; }; t1=$(now)
  rj+=("$(secs "$t0" "$t1")")
  t0=$(now); "$B" rejoin -n ha --node "$primary" --reclone --yes >/dev/null 2>"$W/last.log" || { cat "$W/last.log" >&2; exit 1; }; t1=$(now)
  rc+=("$(secs "$t0" "$t1")")
  other=$primary; primary=$newp
done
SIZE=$("$B" psql -n ha -- -Atc "select pg_size_pretty(pg_database_size('postgres'))")
cat <<MD
Measured $(date -u +%Y-%m-%d) on $(nproc) cores, PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'), $RUNS runs, loopback; a write probe inserts an id every ~20 ms through host=$HOSTS with target_session_attrs=read-write and reconnects on error. Database $SIZE (pgbench -s $SCALE).

| figure | pgscale (median / max) | bare floor, same run | target |
| --- | --- | --- | --- |
| switchover write downtime (longest gap between commits) | $(median "${sw[@]}") s / $(maxof "${sw[@]}") s | $(median "${floor[@]}") s / $(maxof "${floor[@]}") s (pg_ctl stop -m fast, then pg_ctl promote) | <= 0.5 s |
| committed ids missing after switchover | $swmiss | - | 0 |
| failover: command start to first commit on the new primary | $(median "${fo[@]}") s / $(maxof "${fo[@]}") s | - | <= 1 s |
| committed ids missing after failover (sync standby) | $fomiss | - | 0 |
| rejoin of the old primary (pg_rewind) | $(median "${rj[@]}") s | a fresh copy (rejoin --reclone): $(median "${rc[@]}") s | - |

Raw: switchover ${sw[*]}; floor ${floor[*]}; failover ${fo[*]}; rejoin ${rj[*]}; reclone ${rc[*]}.
MD

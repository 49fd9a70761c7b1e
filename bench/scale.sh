#!/usr/bin/env bash
# pgscale scale-out / scale-in figures against the bare PostgreSQL operation,
# measured in the same run on this machine, on loopback only.
#   bench/scale.sh              # RUNS=3 SCALE=50 by default
#   RUNS=1 SCALE=5 bench/scale.sh   # a quick smoke run
# Prints a Markdown table (stdout); progress on stderr. Every server it starts
# is stopped by PID (postmaster.pid) when it exits, also on failure.
set -euo pipefail
shopt -s inherit_errexit   # a failure inside $(...) stops the run too
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SCALE=${SCALE:-50}
cargo build --release -q
B=$PWD/target/release/pgscale
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -t/ -k5 -n | tail -1)
W=$(mktemp -d /tmp/pgscale-bench-XXXXXX)
chmod 755 "$W"
export PGSCALE_HOME=$W/home
if [ "$(id -u)" = 0 ]; then AS=(runuser -u postgres --); OSU=postgres; else AS=(); OSU=$(id -un); fi
# the bare copies run as the OS user and create their directories here
chown "$OSU" "$W"
. bench/lib.sh
cleanup() {
  [ -n "${PGB:-}" ] && kill "$PGB" 2>/dev/null || true
  stop_servers
}
trap cleanup EXIT
PORT=$(free_port 9)
{ echo "name: bench"; echo "nodes:"; node pg1 127.0.0.1; } > "$W/c.yaml"
"$B" init -c "$W/c.yaml" 2>/dev/null
PSQL=("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -Atq)
export PGPASSFILE=$PGSCALE_HOME/bench/pgpass
log "pgbench -i -s $SCALE"
"$BIN/pgbench" -i -s "$SCALE" -q -h 127.0.0.1 -p "$PORT" -U postgres postgres 2>/dev/null
SIZE=$("${PSQL[@]}" -c "select pg_size_pretty(sum(pg_database_size(datname))::bigint) from pg_database")
# the replication password, readable by the OS user, for the bare copies
cp "$PGPASSFILE" "$W/repl.pgpass"; chown "$OSU" "$W/repl.pgpass"; chmod 600 "$W/repl.pgpass"

wait_streaming() { # application_name; gives up after 300 s
  local until=$(( $(date +%s) + 300 ))
  until [ "$("${PSQL[@]}" -c "select count(*) from pg_stat_replication where application_name = '$1' and state = 'streaming'")" = 1 ]; do
    [ "$(date +%s)" -lt "$until" ] || { log "$1 did not stream within 300 s"; exit 1; }
    sleep 0.02
  done
}
bare_copy() { # name address -> seconds on stdout
  local d=$W/$1 t0 t1
  mkdir -p "$W/$1.sock"; chown "$OSU" "$W/$1.sock"
  t0=$(now)
  (cd / && "${AS[@]}" env PGPASSFILE="$W/repl.pgpass" "$BIN/pg_basebackup" -D "$d" -h 127.0.0.1 -p "$PORT" -U pgscale_repl --no-password -X stream -c fast)
  "${AS[@]}" sh -c "printf \"listen_addresses = '%s'\nunix_socket_directories = '%s'\nprimary_conninfo = 'host=127.0.0.1 port=%s user=pgscale_repl application_name=%s passfile=%s'\n\" '$2' '$W/$1.sock' '$PORT' '$1' '$W/repl.pgpass' >> '$d/postgresql.auto.conf' && touch '$d/standby.signal'"
  "${AS[@]}" "$BIN/pg_ctl" start -D "$d" -w -l "$W/$1.sock/log" >/dev/null
  wait_streaming "$1"
  t1=$(now)
  "${AS[@]}" "$BIN/pg_ctl" stop -D "$d" -m immediate >/dev/null
  rm -rf "$d" "$W/$1.sock"
  secs "$t0" "$t1"
}
scale_out() { # file -> seconds
  local t0 t1
  t0=$(now); "$B" scale-out -n bench -c "$1" >/dev/null 2>"$W/last.log" || { cat "$W/last.log" >&2; exit 1; }; t1=$(now)
  secs "$t0" "$t1"
}
scale_in() { "$B" scale-in -n bench "$@" --yes >/dev/null 2>"$W/last.log" || { cat "$W/last.log" >&2; exit 1; }; }

{ echo "nodes:"; node pg2 127.0.0.2; } > "$W/one.yaml"
{ echo "nodes:"; node pg2 127.0.0.2; node pg3 127.0.0.3; node pg4 127.0.0.4; } > "$W/three.yaml"
bare1=(); ours1=(); bare3=(); ours3=()
for r in $(seq "$RUNS"); do
  log "run $r/$RUNS: one standby"
  bare1+=("$(bare_copy bare 127.0.0.9)")
  ours1+=("$(scale_out "$W/one.yaml")")
  scale_in --node pg2 --clear-dir
  log "run $r/$RUNS: three standbys"
  a=$(bare_copy b1 127.0.0.7); b=$(bare_copy b2 127.0.0.8); c=$(bare_copy b3 127.0.0.9)
  bare3+=("$(python3 -c "print(f'{$a+$b+$c:.2f}')")")
  ours3+=("$(scale_out "$W/three.yaml")")
  scale_in --node pg2 --node pg3 --node pg4 --clear-dir
done
B1=$(median "${bare1[@]}"); O1=$(median "${ours1[@]}"); B3=$(median "${bare3[@]}"); O3=$(median "${ours3[@]}")

log "remove a synchronous standby under pgbench -c 4 -T 30"
{ echo "nodes:"; node pg2 127.0.0.2 "sync: sync"; node pg3 127.0.0.3 "sync: potential"; } > "$W/sync.yaml"
scale_out "$W/sync.yaml" >/dev/null
(cd "$W" && exec "$BIN/pgbench" -c 4 -T 30 -l --log-prefix=pgblog -h 127.0.0.1 -p "$PORT" -U postgres postgres > "$W/pgbench.out" 2>&1) &
PGB=$!
sleep 10
R0=$(now); scale_in --node pg2 --clear-dir; R1=$(now)
wait "$PGB"; PGB_RC=$?; PGB=
read -r FAILED MAXLAT BASELAT < <(python3 - "$W" "$R0" "$R1" <<'PY'
import glob, re, sys
w, r0, r1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
out = open(f"{w}/pgbench.out").read()
m = re.search(r"number of failed transactions: (\d+)", out)
failed = int(m.group(1)) if m else 0
m = re.search(r"number of transactions actually processed: (\d+)", out)
win, base = [], []
for f in glob.glob(f"{w}/pgblog.*"):
    for line in open(f):
        p = line.split()
        lat_ms, end = int(p[2]) / 1000, int(p[4]) + int(p[5]) / 1e6
        if r0 <= end <= r1 + 0.5:
            win.append(lat_ms)
        elif end < r0:
            base.append(lat_ms)
print(failed, f"{max(win) if win else 0:.1f}", f"{max(base) if base else 0:.1f}")
PY
)
TPS=$(grep -oE 'tps = [0-9.]+' "$W/pgbench.out" | head -1 | cut -d' ' -f3)
REMOVE=$(secs "$R0" "$R1")

log "remove a frozen node with --timeout 5s"
{ echo "nodes:"; node pg4 127.0.0.4; } > "$W/frozen.yaml"
scale_out "$W/frozen.yaml" >/dev/null
FPID=$(head -1 "$W/pg4/postmaster.pid")
kill -STOP "$FPID"
F0=$(now); scale_in --node pg4 --timeout 5s; F1=$(now)
kill -CONT "$FPID"
FROZEN=$(secs "$F0" "$F1")

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
cat <<MD
Measured $(date -u +%Y-%m-%d) on $(nproc) cores, PostgreSQL $("$BIN/postgres" --version | awk '{print $3}'), database $SIZE (pgbench -s $SCALE), medians of $RUNS runs, all on loopback.

| figure | pgscale | bare PostgreSQL, same run | ratio | target |
| --- | --- | --- | --- | --- |
| add one standby (copy + start until streaming) | $O1 s | $B1 s (pg_basebackup -X stream -c fast, config, pg_ctl start -w, until streaming) | $(ratio "$O1" "$B1")x | <= 1.15x |
| add three standbys | $O3 s (parallel) | $B3 s (three bare copies in a row) | $(ratio "$O3" "$B3")x | - |
| remove the sync standby under pgbench -c 4 -T 30 | $REMOVE s; failed transactions: $FAILED; longest commit during the removal: $MAXLAT ms (before it: $BASELAT ms); $TPS tps; pgbench exit $PGB_RC | - | - | 0 failed; no commit waits on the leaving node |
| remove a frozen (SIGSTOP) node, --timeout 5s | $FROZEN s | - | - | <= 7 s |

Raw seconds: one standby pgscale ${ours1[*]} / bare ${bare1[*]}; three standbys pgscale ${ours3[*]} / bare ${bare3[*]}.
MD

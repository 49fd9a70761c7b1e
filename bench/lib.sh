# Shared by the bench scripts (sourced, not run). Expects $W (the bench's
# temp dir) to be set before `free_port`/`node`/`stop_servers` are used.
log() { echo "bench: $*" >&2; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" "$@"; }
maxof() { python3 -c "import sys; print(f'{max(map(float, sys.argv[1:])):.2f}')" "$@"; }
# A port free on 127.0.0.1 up to 127.0.0.$1 (every node its own address).
free_port() {
  python3 -c 'import socket, sys
last = int(sys.argv[1])
for _ in range(50):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    try:
        [socket.socket().bind((f"127.0.0.{i}", p)) for i in range(2, last + 1)]; print(p); break
    except OSError: pass' "$1"
}
# An inventory node entry: name address [extra field]
node() {
  printf '  - name: %s\n    host: %s\n    port: %s\n    data_dir: %s\n' "$1" "$2" "$PORT" "$W/$1"
  if [ -n "${3:-}" ]; then printf '    %s\n' "$3"; fi
}
# Kill every server started under $W by its PID (postmaster.pid), then remove $W
# (with KEEP_LOGS=1 its *.log files are copied to $W.logs first).
stop_servers() {
  for f in "$W"/*/postmaster.pid; do
    [ -f "$f" ] || continue
    pid=$(head -1 "$f")
    kill -CONT "$pid" 2>/dev/null || true
    kill -9 -- "-$pid" 2>/dev/null || true
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ "${KEEP_LOGS:-}" = 1 ]; then
    mkdir -p "$W.logs" && cp "$W"/*.log "$W"/*/log/*.log "$W.logs/" 2>/dev/null || true
    echo "logs kept in $W.logs" >&2
  fi
  rm -rf "$W"
}
# A 3-member etcd on loopback with short election timeouts; its PIDs go to
# PIDS (the caller stops them), its client endpoints to EPS, etcdctl to ETCDCTL.
start_etcd() {
  local eps=() init=() peer=() c p i cluster
  for i in 0 1 2; do
    c=$(free_port 1); p=$(free_port 1)
    eps+=("127.0.0.1:$c"); init+=("e$i=http://127.0.0.1:$p"); peer[$i]=$p
  done
  cluster=$(IFS=,; echo "${init[*]}")
  for i in 0 1 2; do
    etcd --name "e$i" --data-dir "$W/etcd$i" \
      --listen-client-urls "http://${eps[$i]}" --advertise-client-urls "http://${eps[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${peer[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${peer[$i]}" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token bench \
      --heartbeat-interval 50 --election-timeout 500 >"$W/etcd$i.log" 2>&1 &
    PIDS+=($!)
  done
  EPS=$(IFS=,; echo "${eps[*]}")
  ETCDCTL=(etcdctl --endpoints "$EPS" --command-timeout=2s)
  for _ in $(seq 100); do "${ETCDCTL[@]}" endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
  log "etcd up: $EPS"
}

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
# Kill every server started under $W by its PID (postmaster.pid), then remove $W.
stop_servers() {
  for f in "$W"/*/postmaster.pid; do
    [ -f "$f" ] || continue
    pid=$(head -1 "$f")
    kill -CONT "$pid" 2>/dev/null || true
    kill -9 -- "-$pid" 2>/dev/null || true
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$W"
}

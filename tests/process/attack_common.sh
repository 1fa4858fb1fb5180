# Shared by the attack_*_test.sh process tests (sourced, not run): a scratch
# directory, cleanup of every process started, a server on free ports, metrics,
# RSS. The attack clients are Python (tests/process/h2_raw.py: raw HTTP/2 and gRPC frames),
# independent of the project's clients; the project's clients play the normal user.
# Waits scale with FLEXGS_TIMEOUT_SCALE (sanitizer builds run several times slower).
set -euo pipefail
SCALE=${FLEXGS_TIMEOUT_SCALE:-1}
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONPATH="$TESTS_DIR${PYTHONPATH:+:$PYTHONPATH}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/flexgs-attack.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2> /dev/null; then
      kill -KILL "$pid" 2> /dev/null || true
      { wait "$pid"; } 2> /dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
# FLEXGS_ATTACK_SOFT=1 (to measure an older build): a failed assertion is reported
# and the test goes on; fatal() always stops.
FAILED=0
fail() {
  if [[ ${FLEXGS_ATTACK_SOFT:-0} == 1 ]]; then
    echo "WOULD FAIL: $*" >&2
    FAILED=1
    return 0
  fi
  fatal "$@"
}
fatal() {
  echo "FAIL: $*" >&2
  for f in "$WORK"/*.log "$WORK"/*.err; do
    [[ -f $f ]] && { echo "--- $(basename "$f") (tail) ---" >&2; tail -n 15 "$f" | cut -c1-400 >&2; }
  done
  exit 1
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
# Tests that attack from a second loopback address need 127.0.0.2 to be usable.
need_second_loopback() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.2", 0))' 2> /dev/null ||
    { echo "SKIP: cannot bind 127.0.0.2 (needed as the attacker's address)"; exit 77; }
}

# make_synth_scene: the scene every attack test serves, $WORK/scenes/synth.ply (3,000
# Gaussians, SH 1), made with "$FLEXGS" generate.
make_synth_scene() {
  mkdir -p "$WORK/scenes"
  "$FLEXGS" generate --out "$WORK/scenes/synth.ply" --count 3000 --sh-degree 1 > /dev/null
}

# start_server NAME ARGS...: sets PORT, METRICS_PORT and SERVER_PID once the server is
# SERVING (--host, --port, --metrics-port are set here; the metrics host is the default).
SERVER_PID="" PORT="" METRICS_PORT=""
start_server() {
  local name=$1
  shift
  METRICS_PORT=$(free_port)
  "$SERVER" --host 127.0.0.1 --port 0 --metrics-port "$METRICS_PORT" --rescan-interval 0 --gi-views 4 --gi-size 64 \
    "$@" > "$WORK/$name.out" 2> "$WORK/$name.log" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  PORT=""
  for _ in $(seq 1 $((300 * SCALE))); do
    PORT=$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$WORK/$name.out" 2> /dev/null || true)
    [[ -n "$PORT" ]] && grep -q "SERVING [0-9]* scene" "$WORK/$name.log" 2> /dev/null && return 0
    kill -0 "$SERVER_PID" 2> /dev/null || fatal "$name: server exited during startup"
    sleep 0.1
  done
  fatal "$name: server not SERVING within $((30 * SCALE)) s"
}
# metric REGEX: the value of the first sample line matching (0 when absent).
metric() {
  python3 - "$METRICS_PORT" "$1" << 'EOF'
import re, sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=20).read().decode()
for line in text.splitlines():
    if re.match("^" + sys.argv[2] + " ", line):
        print(int(float(line.split()[-1])))
        break
else:
    print(0)
EOF
}
rss_mib() { awk '/^VmRSS:/ {printf "%d\n", $2 / 1024}' "/proc/$1/status"; }
# rss_bound GROWTH_MIB LIMIT_MIB WHAT: fails when GROWTH_MIB >= LIMIT_MIB. Sanitizer
# builds (FLEXGS_TIMEOUT_SCALE > 1) keep freed memory in quarantine and shadow it, so
# there the numbers are only reported.
rss_bound() {
  if (( SCALE > 1 )); then
    echo "(sanitizer build: RSS not checked: $3 grew by $1 MiB)"
  elif (( $1 >= $2 )); then
    fail "$3: RSS grew by $1 MiB (limit $2 MiB)"
  fi
}
# normal_client NAME SCENE ARGS...: flexgs-client from 127.0.0.1, must succeed; prints its wall time.
normal_client() {
  local name=$1 scene=$2
  shift 2
  local t0=$SECONDS
  "$CLIENT" --server "127.0.0.1:$PORT" --scene "$scene" --budget-ratio 0.3 --no-render --json --quiet \
    --give-up-after $((20 * SCALE)) --out "$WORK/$name" "$@" > /dev/null 2> "$WORK/$name.err" ||
    { fail "normal client $name: $(tail -c 400 "$WORK/$name.err")"; echo -1; return 0; }
  echo $((SECONDS - t0))
}
# pass: the last line of every test.
pass() {
  [[ $FAILED == 0 ]] || { echo "FAILED (soft mode)"; exit 1; }
  echo "PASS"
}

# Shared by the attack_*_test.sh process tests (sourced, not run), on top of lib.sh:
# soft failures, a server with the flags every attack server shares, metrics, RSS. The
# attack clients are Python (tests/process/h2_raw.py: raw HTTP/2 and gRPC frames),
# independent of the project's clients; the project's clients play the normal user.
# Waits scale with FLEXGS_TIMEOUT_SCALE (sanitizer builds run several times slower).
set -euo pipefail
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$TESTS_DIR/lib.sh"
export PYTHONPATH="$TESTS_DIR${PYTHONPATH:+:$PYTHONPATH}"
flexgs_tmpdir attack
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
# Tests that attack from a second loopback address need 127.0.0.2 to be usable.
need_second_loopback() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.2", 0))' 2> /dev/null ||
    skip "cannot bind 127.0.0.2 (needed as the attacker's address)"
}

# make_synth_scene: the scene every attack test serves, $WORK/scenes/synth.ply (3,000
# Gaussians, SH 1), made with "$FLEXGS" generate.
make_synth_scene() {
  mkdir -p "$WORK/scenes"
  "$FLEXGS" generate --out "$WORK/scenes/synth.ply" --count 3000 --sh-degree 1 > /dev/null
}

# serve NAME ARGS...: start_server (lib.sh) with --host, --port, --metrics-port and the
# GI settings every attack server shares; sets PORT, METRICS_PORT and SERVER_PID once it
# is SERVING (the metrics host is the default).
METRICS_PORT=""
serve() {
  local name=$1
  shift
  METRICS_PORT=$(free_port)
  start_server "$name" --host 127.0.0.1 --port 0 --metrics-port "$METRICS_PORT" --rescan-interval 0 --gi-views 4 \
    --gi-size 64 "$@"
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

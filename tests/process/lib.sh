# The plumbing the process tests share (sourced, not run; bench/soak.sh uses it too):
# a scratch directory, one EXIT trap that cleans up everything, a flexgs-server started
# in the background and waited for, failure reports, counted checks for the CLI tests.
# It sets no shell options: the server tests run under `set -euo pipefail`, the CLI tests
# under `set -u` only (they count failed checks instead of stopping), and every function
# here works under both.
#
# Waits scale with FLEXGS_TIMEOUT_SCALE (sanitizer builds run several times slower).
# Globals: WORK (the scratch directory), SCALE, PIDS (processes killed at exit), SERVER
# (the flexgs-server binary, set by the test), SERVER_PID and PORT (the last server
# started), METRICS_PORT (read by metric).
SCALE=${FLEXGS_TIMEOUT_SCALE:-1}
PIDS=()
AT_EXIT=()
declare -A SERVER_PIDS=()
SERVER_PID="" PORT="" WORK=""
# Commands that prefix the server and the metrics reader, e.g. (ip netns exec "$NS"); a
# function may set its own with `local SERVER_WRAP=(...)` around one start.
SERVER_WRAP=() METRICS_WRAP=()
# How long a server may take to print its port and log SERVING (x SCALE).
SERVER_START_S=${SERVER_START_S:-30}
# What fail shows: globs under WORK, the tail of each file.
FAIL_LOGS=('*.log' '*.err')

# flexgs_tmpdir TAG: WORK=a new directory ${TMPDIR:-/tmp}/flexgs-TAG.XXXXXX, and the EXIT
# trap that, in order, kills every process in PIDS still running, runs the at_exit
# functions (last registered first) and removes WORK.
flexgs_tmpdir() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/flexgs-$1.XXXXXX")
  trap flexgs_cleanup EXIT
}
# at_exit FUNCTION: run FUNCTION (no arguments) at exit; its failures are ignored.
at_exit() { AT_EXIT+=("$1"); }
flexgs_cleanup() {
  local pid ppid i
  for pid in "${PIDS[@]}"; do
    # Only a child still there: the PID of one reaped earlier may be another process's now.
    ppid=$(ps -o ppid= -p "$pid" 2> /dev/null) || continue
    ((ppid == $$)) || continue
    kill -KILL "$pid" 2> /dev/null || true
    { wait "$pid"; } 2> /dev/null || true
  done
  for ((i = ${#AT_EXIT[@]} - 1; i >= 0; i--)); do
    "${AT_EXIT[i]}" || true
  done
  if [[ -n $WORK ]]; then rm -rf "$WORK"; fi
}

# fatal MESSAGE: reports a failure with the tail of the FAIL_LOGS files and exits 1.
# fail MESSAGE: a failed assertion; the same unless a test softens it (attack_common.sh).
fatal() {
  echo "FAIL: $*" >&2
  show_logs >&2
  exit 1
}
fail() { fatal "$@"; }
show_logs() {
  local pattern f
  [[ -n $WORK ]] || return 0
  for pattern in "${FAIL_LOGS[@]}"; do
    for f in "$WORK"/$pattern; do
      if [[ -f $f ]]; then
        echo "--- ${f#"$WORK"/} (tail) ---"
        tail -n 20 "$f" | cut -c1-400
      fi
    done
  done
}
# skip REASON: the test cannot run here (ctest's SKIP_RETURN_CODE 77).
skip() {
  echo "SKIP: $*"
  exit 77
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
json() {  # json FILE PYTHON-EXPR-ON-j
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}
# metric REGEX: the value of the first sample line of http://127.0.0.1:METRICS_PORT/metrics
# that matches (0 when none does); fails when the endpoint does not answer.
metric() {
  "${METRICS_WRAP[@]}" python3 - "$METRICS_PORT" "$1" << 'EOF'
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

# launch_server NAME ARGS...: "$SERVER" ARGS (after SERVER_WRAP) in the background, stdout
# (where it prints "listening on PORT") in $WORK/NAME.out, its log in $WORK/NAME.log; both
# files exist before it starts, so a wait never reads a missing file. Sets SERVER_PID and
# SERVER_PIDS[NAME]; the process is killed at exit if still running.
launch_server() {
  local name=$1
  shift
  : > "$WORK/$name.out"
  : > "$WORK/$name.log"
  "${SERVER_WRAP[@]}" "$SERVER" "$@" > "$WORK/$name.out" 2> "$WORK/$name.log" &
  SERVER_PID=$!
  SERVER_PIDS[$name]=$SERVER_PID
  PIDS+=("$SERVER_PID")
}
# wait_listening NAME: until server NAME has printed its port (sets PORT); fatal when it
# exits first or takes over SERVER_START_S x SCALE seconds.
wait_listening() { server_wait "$1" listening; }
# wait_serving NAME: as wait_listening, and until its log says "SERVING N scene(s)" (a
# bare "SERVING" would also match "NOT_SERVING until scenes are loaded").
wait_serving() { server_wait "$1" serving; }
server_wait() {
  local name=$1 what=$2 pid=${SERVER_PIDS[$1]} limit=$((SERVER_START_S * SCALE))
  local deadline=$((SECONDS + limit))
  PORT=""
  while ((SECONDS <= deadline)); do
    [[ -n $PORT ]] || PORT=$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$WORK/$name.out" 2> /dev/null || true)
    if [[ -n $PORT ]]; then
      [[ $what == listening ]] && return 0
      grep -q "SERVING [0-9]* scene" "$WORK/$name.log" 2> /dev/null && return 0
    fi
    kill -0 "$pid" 2> /dev/null || fatal "$name: server exited during startup"
    sleep 0.05
  done
  PORT=""
  fatal "$name: server not $what within $limit s"
}
# start_server NAME ARGS...: launch_server, then wait_serving.
start_server() {
  launch_server "$@"
  wait_serving "$1"
}
# stop_server [SIGNAL]: sends SIGNAL (TERM) to the last server started and waits for it
# to end, at most 30 s x SCALE (then KILL); its exit status is not checked.
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill -"${1:-TERM}" "$SERVER_PID" 2> /dev/null || true
  wait_exit "$SERVER_PID" $((30 * SCALE)) || true
  SERVER_PID=""
}
# wait_exit PID SECONDS: waits for a child process; KILLs it after SECONDS. Returns its
# exit status (137 when it had to be killed). `wait`, not polling `kill -0`: an exited
# child stays visible to kill -0 until the shell reaps it.
wait_exit() {
  local pid=$1 limit=$2 timer rc
  (
    exec > /dev/null 2>&1
    sleep "$limit"
    kill -KILL "$pid"
  ) &
  timer=$!
  { wait "$pid"; } 2> /dev/null && rc=0 || rc=$?
  pkill -P "$timer" 2> /dev/null || true
  kill "$timer" 2> /dev/null || true
  wait "$timer" 2> /dev/null || true
  return "$rc"
}

# retry SECONDS CMD...: runs CMD every 0.1 s until it succeeds, for at most SECONDS x
# SCALE; returns 1 when it never did.
retry() {
  local deadline=$((SECONDS + $1 * SCALE))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# netns_setup NS VETH_HERE VETH_THERE NET: a network namespace NS joined to this one by a
# veth pair, on a /30 of NET (198.18 or 198.19: the benchmarking range) derived from the
# PID so that parallel runs do not clash; sets CLIENT_IP (here) and SERVER_IP (in NS), and
# removes both at exit. Skips without root or iproute2, or where the kernel refuses.
NS="" VC="" VS=""
netns_setup() {
  [[ $(id -u) == 0 ]] || skip "needs root to create a network namespace"
  command -v ip > /dev/null && command -v tc > /dev/null || skip "iproute2 (ip, tc) is not installed"
  ip netns add "$1" 2> /dev/null || skip "cannot create a network namespace (no CAP_SYS_ADMIN?)"
  NS=$1 VC=$2 VS=$3
  at_exit netns_teardown
  local n=$(($$ % 16000)) net
  net=$4.$((n / 64)).$(((n % 64) * 4))
  CLIENT_IP=${net%.*}.$((${net##*.} + 1))
  SERVER_IP=${net%.*}.$((${net##*.} + 2))
  ip link add "$VC" type veth peer name "$VS" || skip "cannot create a veth pair"
  ip link set "$VS" netns "$NS"
  ip addr add "$CLIENT_IP/30" dev "$VC"
  ip link set "$VC" up
  ip netns exec "$NS" ip addr add "$SERVER_IP/30" dev "$VS"
  ip netns exec "$NS" ip link set "$VS" up
  ip netns exec "$NS" ip link set lo up
}
netns_teardown() {
  ip link del "$VC" 2> /dev/null || true
  ip netns del "$NS" 2> /dev/null || true
}

# Counted checks (the CLI tests): check NAME CMD... passes when CMD succeeds, else prints
# "FAIL: NAME"; checks_done prints the counts and returns non-zero when any failed.
CHECKS_PASSED=0 CHECKS_FAILED=0
check() {
  local name=$1
  shift
  if "$@"; then
    CHECKS_PASSED=$((CHECKS_PASSED + 1))
  else
    echo "FAIL: $name"
    CHECKS_FAILED=$((CHECKS_FAILED + 1))
  fi
}
checks_done() {
  echo "${1:+$1: }$CHECKS_PASSED checks passed, $CHECKS_FAILED failed"
  ((CHECKS_FAILED == 0))
}
# check_report FILE PYTHON-EXPRESSIONS...: fails unless every expression is true, with `r`
# the JSON report in FILE and ordered(s) true for a latency summary whose percentiles are
# all present and in order (flexgs-loadgen's reports).
check_report() {
  local file=$1
  shift
  python3 - "$file" "$@" << 'EOF' || fail "report check failed for $file: $(cat "$file")"
import json, sys
r = json.load(open(sys.argv[1]))
def ordered(s):
    return s["n"] > 0 and all(s[k] is not None for k in ("p50", "p90", "p99", "max")) and \
        0 <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
for expr in sys.argv[2:]:
    if not eval(expr, {"r": r, "ordered": ordered}):
        print("not true:", expr, file=sys.stderr)
        sys.exit(1)
EOF
}
# expect_exit1 NAME PATTERN CMD...: two checks, CMD exits 1 and its stderr (left in
# $WORK/err.txt) holds PATTERN; shows that stderr when either fails.
expect_exit1() {
  local name=$1 pattern=$2 rc
  shift 2
  "$@" > "$WORK/err.out" 2> "$WORK/err.txt" && rc=0 || rc=$?
  check "$name exits 1 (got $rc)" test "$rc" -eq 1
  check "$name message" grep -q -- "$pattern" "$WORK/err.txt"
  [ "$rc" -eq 1 ] && grep -q -- "$pattern" "$WORK/err.txt" || echo "  stderr: $(cat "$WORK/err.txt")"
}

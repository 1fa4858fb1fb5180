#!/usr/bin/env bash
# deploy/nginx/flexgs.conf for real: two flexgs-server replicas on loopback behind
# nginx (grpc_pass, HTTP/2 both sides), run unprivileged-style in a scratch prefix.
#   - health (grpc.health.v1) answers SERVING through nginx;
#   - flexgs-loadgen: 64 verified streams over 32 HTTP/2 connections to nginx, all
#     complete; the replicas' own Prometheus counters show both served streams and
#     that they add up to 64 (nginx's access log agrees, with grpc-status 0);
#   - one replica drained with SIGTERM: the next streams all go to the other one;
#   - no replica left: nginx answers UNAVAILABLE (its error_page), not a bare 502.
# Skips (77) only when nginx is not installed.
#   nginx_lb_test.sh FLEXGS FLEXGS_SERVER FLEXGS_LOADGEN HEALTH_PROBE
set -euo pipefail
FLEXGS=$1 SERVER=$2 LOADGEN=$3 PROBE=$4
HERE=$(cd "$(dirname "$0")" && pwd)
TEMPLATE=$HERE/../../deploy/nginx/flexgs.conf

# FLEXGS_NGINX: another nginx binary (its absence makes the test skip, as here).
NGINX=${FLEXGS_NGINX:-$(command -v nginx || true)}
[[ -z "$NGINX" && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
if [[ -z "$NGINX" || ! -x "$NGINX" ]]; then
  echo "SKIP: nginx is not installed (deploy/install-deps.sh installs nginx-light)"
  exit 77
fi
[[ -f $TEMPLATE ]] || { echo "FAIL: $TEMPLATE missing" >&2; exit 1; }

source "$HERE/lib.sh"
flexgs_tmpdir nginx-lb
FAIL_LOGS=('replica*.log' nginx/error.log nginx/access.log)
NGINX_PID=""
stop_nginx() {
  if [[ -n "$NGINX_PID" ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
    # Stop the master so it cannot respawn workers, kill its workers (orphans would
    # keep the port), then the master.
    kill -STOP "$NGINX_PID" 2>/dev/null || true
    pkill -KILL -P "$NGINX_PID" 2>/dev/null || true
    kill -KILL "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
  fi
}
at_exit stop_nginx
# metrics PORT: the replica's /metrics text (curl may be missing: bash /dev/tcp).
metrics() {
  local port=$1
  if command -v curl > /dev/null; then
    curl -sf "http://127.0.0.1:$port/metrics"
  else
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    cat <&3
    exec 3<&-
  fi
}
# streams_ok PORT: StreamScene calls the replica finished with OK.
# prometheus-cpp sorts labels by name: grpc_code, grpc_method, grpc_service, grpc_type.
streams_ok() {
  local text
  text=$(metrics "$1") || fail "metrics on port $1"
  sed -n 's/^grpc_server_handled_total{grpc_code="OK",grpc_method="StreamScene",[^}]*} \([0-9.e+]*\)$/\1/p' \
    <<< "$text" | python3 -c 'import sys; v = sys.stdin.read().split(); print(int(float(v[0])) if v else -1)'
}
# A small scene: streams are a few hundred KB, so 64 of them take seconds.
mkdir -p "$WORK/scenes" "$WORK/nginx/tmp"
"$FLEXGS" generate --out "$WORK/synth.ply" --count 20000 --sh-degree 3 > /dev/null
"$FLEXGS" elasticize "$WORK/synth.ply" --out "$WORK/scenes/synth.flexgs" --orbit 4 --width 64 --height 64 > /dev/null

# Two replicas of the same scenes directory, each with its own metrics port; started
# together, then waited for.
REPLICAS=2
GRPC_PORTS=() METRICS_PORTS=()
for i in $(seq 1 $REPLICAS); do
  mport=$(free_port)
  FLEXGS_DRAIN_SECONDS=2 launch_server "replica$i" --host 127.0.0.1 --port 0 --scenes "$WORK/scenes" \
    --metrics-host 127.0.0.1 --metrics-port "$mport" --max-streams 256
  METRICS_PORTS+=("$mport")
done
for i in $(seq 1 $REPLICAS); do
  wait_serving "replica$i"
  GRPC_PORTS+=("$PORT")
done
echo "replicas SERVING on ports ${GRPC_PORTS[*]} (metrics ${METRICS_PORTS[*]})"

# Render the template: exactly its three placeholders, nothing else touched.
LB_PORT=$(free_port)
UPSTREAMS=""
for port in "${GRPC_PORTS[@]}"; do UPSTREAMS+="server 127.0.0.1:$port max_fails=1 fail_timeout=5s; "; done
FLEXGS_LB_LISTEN="127.0.0.1:$LB_PORT" FLEXGS_LB_UPSTREAMS="$UPSTREAMS" FLEXGS_LB_ACCESS_LOG="$WORK/nginx/access.log" \
  python3 - "$TEMPLATE" "$WORK/nginx/flexgs.conf" <<'EOF' || fail "cannot render $TEMPLATE"
import os, re, sys
text = open(sys.argv[1]).read()
names = {"FLEXGS_LB_LISTEN", "FLEXGS_LB_UPSTREAMS", "FLEXGS_LB_ACCESS_LOG"}
found = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
if found != names:
    sys.exit(f"template placeholders {sorted(found)}, want {sorted(names)}")
for name in names:
    text = text.replace("${" + name + "}", os.environ[name])
open(sys.argv[2], "w").write(text)
EOF
# The main configuration a packaged nginx would have, with every path in WORK.
T=$WORK/nginx/tmp
cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes 2;
events { worker_connections 1024; }
http {
    client_body_temp_path $T/client_body;
    proxy_temp_path $T/proxy;
    fastcgi_temp_path $T/fastcgi;
    uwsgi_temp_path $T/uwsgi;
    scgi_temp_path $T/scgi;
    include $WORK/nginx/flexgs.conf;
}
EOF
GLOBALS="pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log info;"
# As root, nginx would switch its workers to `nobody`; keep them as the current user.
[[ $(id -u) == 0 ]] && GLOBALS+=" user root;"
NGINX_ARGS=(-p "$WORK/nginx/" -c "$WORK/nginx/nginx.conf")
"$NGINX" "${NGINX_ARGS[@]}" -g "$GLOBALS" -t > "$WORK/nginx/check.out" 2>&1 ||
  fail "nginx -t: $(cat "$WORK/nginx/check.out")"
"$NGINX" "${NGINX_ARGS[@]}" -g "daemon off; $GLOBALS" > "$WORK/nginx/stdout.log" 2>&1 &
NGINX_PID=$!
LB=127.0.0.1:$LB_PORT

nginx_serving() {  # health SERVING through nginx; fails the test when nginx has exited
  kill -0 "$NGINX_PID" 2>/dev/null || fail "nginx exited: $(cat "$WORK/nginx/stdout.log")"
  "$PROBE" --addr "$LB" --timeout-ms 500 > /dev/null 2>&1
}
retry 30 nginx_serving || fail "health through nginx never SERVING"
"$PROBE" --addr "$LB" --service flexgs.v1.SceneService > /dev/null || fail "SceneService not SERVING through nginx"
set +e
"$PROBE" --addr "$LB" --service no.such.Service > /dev/null 2>&1; rc=$?
set -e
[[ $rc == 3 ]] || fail "unknown service through nginx: probe exit $rc, want 3 (NOT_FOUND passed on)"
echo "health SERVING through nginx on $LB"

# 64 verified streams, 32 at a time, over 32 client connections to nginx.
set +e
"$LOADGEN" --target "$LB" --scene synth --concurrency 32 --total 64 --channels 32 \
  --budgets ratio:0.05,ratio:0.15 --json --progress-s 0 > "$WORK/lb.json" 2> "$WORK/lb.err"
rc=$?
set -e
[[ $rc == 0 ]] || fail "loadgen through nginx: exit $rc: $(cat "$WORK/lb.json" "$WORK/lb.err")"
check_report "$WORK/lb.json" \
  'r["counts"]["started"] == 64 and r["counts"]["completed"] == 64' \
  'r["counts"]["failed"] == 0 and r["counts"]["verification_failures"] == 0 and r["verify"] is True' \
  'r["channels"]["fast"] == 32 and r["channels"]["not_ready"] == 0'

# A replica counts a call in OnDone, which may run just after the client saw the
# status: poll briefly until the counts add up.
sum=0
for _ in $(seq 1 50); do
  COUNTS=() sum=0
  for mport in "${METRICS_PORTS[@]}"; do COUNTS+=("$(streams_ok "$mport")"); done
  for c in "${COUNTS[@]}"; do sum=$((sum + c)); done
  [[ $sum -ge 64 ]] && break
  sleep 0.1
done
echo "StreamScene OK per replica: ${COUNTS[*]} (sum $sum)"
for i in $(seq 1 $REPLICAS); do
  [[ ${COUNTS[$((i - 1))]} -gt 0 ]] || fail "replica $i served no stream (counts ${COUNTS[*]})"
done
[[ $sum == 64 ]] || fail "replicas served $sum streams in all, want 64 (counts ${COUNTS[*]})"
# nginx's view: 64 StreamScene lines with grpc-status 0 in the trailers, on both replicas.
python3 - "$WORK/nginx/access.log" "${GRPC_PORTS[@]}" <<'EOF' || fail "access log check"
import collections, re, sys, time
want = {f"127.0.0.1:{p}" for p in sys.argv[2:]}
for _ in range(50):  # nginx logs a call when it finalizes it: allow a moment
    lines = [l for l in open(sys.argv[1]) if "/flexgs.v1.SceneService/StreamScene" in l]
    ok = [l for l in lines if " 200 " in l and "grpc_status=0 " in l]
    by = collections.Counter(re.search(r"upstream=(\S+)", l).group(1) for l in ok)
    if len(lines) >= 64:
        break
    time.sleep(0.1)
print("nginx access log: StreamScene grpc_status=0 per upstream:", dict(by))
sys.exit(0 if len(lines) == 64 and len(ok) == 64 and set(by) == want else 1)
EOF

# Benchmark mode (FLEXGS_LB_BENCH=1; not part of the test): the same load straight to
# one replica and through nginx to both, back to back, for bench/RESULTS.md.
if [[ "${FLEXGS_LB_BENCH:-0}" == 1 ]]; then
  for target in "127.0.0.1:${GRPC_PORTS[0]}" "$LB"; do
    "$LOADGEN" --target "$target" --scene synth --concurrency 64 --total "${FLEXGS_LB_BENCH_TOTAL:-1024}" \
      --channels 16 --budgets ratio:0.05,ratio:0.15,bytes:2MiB --no-verify --json --progress-s 0 \
      > "$WORK/bench.json" 2> "$WORK/bench.err" || fail "bench loadgen to $target: $(cat "$WORK/bench.err")"
    python3 - "$WORK/bench.json" "$target" "$LB" <<'EOF'
import json, sys
r, target, lb = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
t, l = r["throughput"], r["latency_ms"]
name = "2 replicas behind nginx" if target == lb else "1 replica, direct"
print(f"BENCH | {name} | {r['counts']['completed']}/{r['counts']['started']} | {t['streams_per_s']:.1f} | "
      f"{t['mb_per_s']:.1f} | {l['first_chunk']['p50']:.1f} / {l['first_chunk']['p99']:.1f} | "
      f"{l['completion']['p50']:.1f} / {l['completion']['p99']:.1f} |")
EOF
  done
  # The bench's streams change the per-replica counts the rest of the test asserts on.
  echo "bench done"
  exit 0
fi

# Drain replica 2 (SIGTERM: health NOT_SERVING, listener closed, GOAWAY): nginx sends
# the next streams to replica 1, none fail.
before=${COUNTS[0]}
kill -TERM "${SERVER_PIDS[replica2]}"
wait_exit "${SERVER_PIDS[replica2]}" 15 || fail "replica 2 exit code $? after SIGTERM"
set +e
"$LOADGEN" --target "$LB" --scene synth --concurrency 8 --total 16 --channels 4 --budgets ratio:0.05 \
  --json --progress-s 0 > "$WORK/drained.json" 2> "$WORK/drained.err"
rc=$?
set -e
[[ $rc == 0 ]] || fail "loadgen with replica 2 drained: exit $rc: $(cat "$WORK/drained.json" "$WORK/drained.err")"
check_report "$WORK/drained.json" 'r["counts"]["completed"] == 16 and r["counts"]["failed"] == 0'
for _ in $(seq 1 50); do
  after=$(streams_ok "${METRICS_PORTS[0]}")
  [[ $after -ge $((before + 16)) ]] && break
  sleep 0.1
done
[[ $after == $((before + 16)) ]] || fail "replica 1 OK streams $before -> $after, want +16"
echo "replica 2 drained: 16/16 streams completed on replica 1 ($before -> $after)"

# No replica left: nginx's error_page turns its 502 into grpc-status UNAVAILABLE.
kill -TERM "${SERVER_PIDS[replica1]}"
wait_exit "${SERVER_PIDS[replica1]}" 15 || fail "replica 1 exit code $? after SIGTERM"
set +e
"$PROBE" --addr "$LB" --timeout-ms 2000 > /dev/null 2>&1; rc=$?
"$LOADGEN" --target "$LB" --scene synth --concurrency 4 --total 4 --json --progress-s 0 \
  > "$WORK/down.json" 2> "$WORK/down.err"
lg_rc=$?
set -e
[[ $rc == 3 ]] || fail "health through nginx with no replica: probe exit $rc, want 3 (RPC failed)"
[[ $lg_rc == 2 ]] || fail "loadgen with no replica: exit $lg_rc, want 2"
check_report "$WORK/down.json" \
  'r["counts"]["failed_by_code"].get("UNAVAILABLE", 0) == 4' \
  '"no replica available" in r["errors"].get("UNAVAILABLE", "")'
echo "no replica: UNAVAILABLE from nginx's error_page"

kill -QUIT "$NGINX_PID"  # graceful stop
wait_exit "$NGINX_PID" 10 || fail "nginx exit code $? after SIGQUIT"
NGINX_PID=""
echo "PASS"

#!/usr/bin/env bash
# Issue 19's goal as a load: 1,000 streams with 1,000 distinct memory budgets (0.5 to
# 3.0 MB, one each), 64 at a time over 64 connections, against a server that warmed its
# scene's default script at load. flexgs-loadgen is the client (2 completion-queue
# threads, sequence/CRC/count checks only), so the load generator takes little of the
# cores the server runs on. Prints loadgen's report and the plan cache's hits and misses.
#   bench/distinct_budgets.sh [BUILD_DIR] [DATA_DIR] [RUNS]
set -euo pipefail
BUILD=${1:-build}
DATA=${2:-$(dirname "$0")/../../shared/data}
RUNS=${3:-3}
FLEXGS=$BUILD/tools/flexgs SERVER=$BUILD/server/flexgs-server LOADGEN=$BUILD/loadgen/flexgs-loadgen
WORK=$(mktemp -d "${TMPDIR:-/tmp}/flexgs-budgets.XXXXXX")
SERVER_PID=""
trap '[[ -n $SERVER_PID ]] && kill -KILL $SERVER_PID 2>/dev/null; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/scenes"
"$FLEXGS" elasticize "$DATA/guitar.ply" --out "$WORK/scenes/guitar.flexgs" --orbit 16 --width 256 --height 256 \
  > /dev/null 2>&1
BUDGETS=$(python3 -c "print(','.join('bytes:%d' % (500000 + 2500 * i) for i in range(1000)))")

for run in $(seq 1 "$RUNS"); do
  MPORT=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  "$SERVER" --host 127.0.0.1 --port 0 --scenes "$WORK/scenes" --metrics-port "$MPORT" --max-streams 256 \
    --drain-seconds 1 --log-level info > "$WORK/server.out" 2> "$WORK/server.log" &
  SERVER_PID=$!
  for _ in $(seq 1 600); do grep -q "SERVING" "$WORK/server.log" 2>/dev/null && break; sleep 0.1; done
  ADDR=127.0.0.1:$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$WORK/server.out")
  METRICS=http://127.0.0.1:$MPORT/metrics
  sleep 1  # the default script, started at load, is built
  echo "== run $run"
  "$LOADGEN" --target "$ADDR" --scene guitar --concurrency 64 --total 1000 --channels 64 --threads 2 --no-verify \
    --progress-s 0 --budgets "$BUDGETS" | grep -E "^streams|^throughput|first chunk|level 0 LEVEL_END|completion"
  python3 - "$METRICS" << 'PY'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
print(" ".join(l for l in text.splitlines() if l.startswith("flexgs_plan_cache_") and "_total" in l))
PY
  kill "$SERVER_PID"
  wait "$SERVER_PID" 2> /dev/null || true
  SERVER_PID=""
done

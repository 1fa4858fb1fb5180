#!/usr/bin/env bash
# Time to first frame over slow links: flexgs-server on loopback, flexgs-client with
# --max-bandwidth (token bucket on consumption + a small HTTP/2 window, so the server
# sends at that rate), budget 15% (levels 1/5/10/15%), one 512x512 view rendered per
# level on the CPU. Compared with downloading the whole PLY at the same rate.
#   bench/client_ttff.sh [BUILD_DIR] [DATA_DIR]     (prints a Markdown table)
set -euo pipefail
BUILD=${1:-build}
DATA=${2:-$(dirname "$0")/../../shared/data}
FLEXGS=$BUILD/tools/flexgs SERVER=$BUILD/server/flexgs-server CLIENT=$BUILD/client/flexgs-client
WORK=$(mktemp -d "${TMPDIR:-/tmp}/flexgs-ttff.XXXXXX")
SERVER_PID=""
trap '[[ -n $SERVER_PID ]] && kill -KILL $SERVER_PID 2>/dev/null; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/scenes"
declare -A PLY
if [[ -f $DATA/guitar.ply ]]; then
  "$FLEXGS" elasticize "$DATA/guitar.ply" --out "$WORK/scenes/guitar.flexgs" --orbit 24 --width 256 --height 256 \
    > /dev/null
  PLY[guitar]=$DATA/guitar.ply
fi
"$FLEXGS" generate --out "$WORK/synth1m.ply" --count 1000000 > /dev/null
"$FLEXGS" elasticize "$WORK/synth1m.ply" --out "$WORK/scenes/synth1m.flexgs" --orbit 8 --width 256 --height 256 \
  > /dev/null
PLY[synth1m]=$WORK/synth1m.ply

"$SERVER" --host 127.0.0.1 --port 0 --scenes "$WORK/scenes" --metrics-port 0 \
  > "$WORK/server.out" 2> "$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 1 600); do grep -q "^listening on" "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
ADDR=127.0.0.1:$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$WORK/server.out")
# Wait until every scene is loaded (GetScene answers).
for scene in "${!PLY[@]}"; do
  for _ in $(seq 1 600); do
    "$CLIENT" --server "$ADDR" --scene "$scene" --budget-ratio 0.01 --no-render --quiet --out "$WORK/probe" \
      2>/dev/null && break
    sleep 0.5
  done
done

echo "| scene | Gaussians | link | cache | first level (1%) bytes | time to first frame | all 4 levels (15%) |" \
  "whole PLY download |"
echo "|---|---:|---|---|---:|---:|---:|---:|"
for scene in $(printf '%s\n' "${!PLY[@]}" | sort); do
  ply=${PLY[$scene]}
  ply_bytes=$(stat -c %s "$ply")
  for rate in 10 100; do
    for cache in cold warm; do
      # Cold: a chunk size not asked for before, so the server plans this request anew.
      chunk=$([[ $cache == cold ]] && echo $(( 200000 + rate * 10 + RANDOM % 1000 )) || echo 0)
      [[ $cache == warm ]] && "$CLIENT" --server "$ADDR" --scene "$scene" --budget-ratio 0.15 --no-render --quiet \
        --out "$WORK/warmup" 2>/dev/null
      "$CLIENT" --server "$ADDR" --scene "$scene" --budget-ratio 0.15 --orbit 1 --width 512 --height 512 --json \
        --quiet --max-bandwidth "${rate}Mbit" --max-chunk-bytes "$chunk" --out "$WORK/run" 2>/dev/null
      python3 - "$WORK/run/stats.json" "$scene" "$rate" "$cache" "$ply_bytes" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
scene, rate, cache, ply = sys.argv[2], float(sys.argv[3]), sys.argv[4], int(sys.argv[5])
lv = j["levels"]
n = j["model_gaussians"]
print(f"| {scene} | {n:,} | {rate:.0f} Mbit/s | {cache} | {lv[0]['bytes']:,} | {j['time_to_first_frame_s']:.2f} s | "
      f"{lv[-1]['completed_s']:.2f} s | {ply * 8 / (rate * 1e6):.1f} s |")
PY
    done
  done
done

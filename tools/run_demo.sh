#!/usr/bin/env bash
# The main job end to end on the project's own default scene (nothing downloaded):
# install dependencies, build, generate the synthetic default scene, make it elastic
# (Global Importance -> heuristic model bundle), show the nested streaming plan, serve
# it with flexgs-server, and run flexgs-client with a budget of 15%: it receives the
# levels 1% -> 5% -> 10% -> 15%, renders each as soon as it is complete
# (level-<k>-view-<i>.png), writes stats.json and prints a summary. Output: out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
OUT="${OUT:-out/demo}"
bash deploy/install-deps.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target flexgs flexgs-server flexgs-health-probe flexgs-client
FLEXGS="$BUILD_DIR/tools/flexgs"
mkdir -p "$OUT"
rm -rf "$OUT/default.flexgs"
"$FLEXGS" generate --out "$OUT/default.ply" --count 200000 --sh-degree 1
"$FLEXGS" inspect "$OUT/default.ply"
"$FLEXGS" elasticize "$OUT/default.ply" --out "$OUT/default.flexgs" --orbit 24 --width 256 --height 256
"$FLEXGS" plan "$OUT/default.flexgs" --budget-ratio 0.15
# The full model, for comparison with the levels the client renders.
"$FLEXGS" render "$OUT/default.flexgs" --ratio 1 --orbit 4 --index 1 --width 640 --height 480 \
  --background 0.05,0.05,0.08 --out "$OUT/full-view-1.png"

# Serve the model; the client's budget of 15% gives the levels 1 -> 5 -> 10 -> 15%.
mkdir -p "$OUT/scenes"
rm -rf "$OUT/scenes/default.flexgs"
cp -r "$OUT/default.flexgs" "$OUT/scenes/"
"$BUILD_DIR/server/flexgs-server" --scenes "$OUT/scenes" --port 0 --metrics-port 0 \
  > "$OUT/server.out" 2> "$OUT/server.log" &
SERVER_PID=$!
trap 'kill -TERM $SERVER_PID 2>/dev/null || true' EXIT
PORT=""
for _ in $(seq 1 100); do
  PORT=$(grep -oE '[0-9]+' "$OUT/server.out" 2>/dev/null | head -1 || true)
  [ -n "$PORT" ] && "$BUILD_DIR/client/flexgs-health-probe" --addr "127.0.0.1:$PORT" >/dev/null 2>&1 && break
  sleep 0.2
done
[ -n "$PORT" ] || { echo "demo: server did not start; see $OUT/server.log" >&2; exit 1; }
echo "demo: flexgs-server listening on 127.0.0.1:$PORT"
rm -rf "$OUT/client"
"$BUILD_DIR/client/flexgs-client" --server "127.0.0.1:$PORT" --scene default --budget-ratio 0.15 \
  --orbit 4 --width 640 --height 480 --background 0.05,0.05,0.08 --out "$OUT/client" --json
python3 - "$OUT/client/stats.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print("demo summary:")
for l in j["levels"]:
    print(f"  level {l['index']}: {100 * l['ratio']:5.1f}%  {l['gaussians']:7d} Gaussians  "
          f"{l['bytes'] / 1e6:6.2f} MB  complete at {l['completed_s']:.2f} s  rendered in {l['render_s']:.2f} s")
print(f"  time to first frame {j['time_to_first_frame_s']:.2f} s, {j['payload_bytes'] / 1e6:.2f} MB in "
      f"{j['total_s']:.2f} s, resident {j['resident_bytes']['peak_total'] / 2**20:.1f} MiB, retries {j['retries']}")
PY
kill -TERM $SERVER_PID
wait $SERVER_PID || true
trap - EXIT
echo "demo: scene, model bundle, per-level renders and stats.json in $OUT/ (client output in $OUT/client/)"

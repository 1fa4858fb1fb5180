#!/usr/bin/env bash
# The main job end to end on the project's own default scene (nothing downloaded):
# install dependencies, build, generate the synthetic default scene, make it elastic
# (Global Importance -> heuristic model bundle), show the nested streaming plan and
# render the elastic levels 1% -> 5% -> 10% -> 15% next to the full scene, then serve
# the model with flexgs-server and stream it to a verifying client with a budget of
# 15%. Output goes to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
OUT="${OUT:-out/demo}"
bash deploy/install-deps.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target flexgs flexgs-server flexgs-health-probe flexgs-stream-client
FLEXGS="$BUILD_DIR/tools/flexgs"
mkdir -p "$OUT"
rm -rf "$OUT/default.flexgs"
"$FLEXGS" generate --out "$OUT/default.ply" --count 200000 --sh-degree 1
"$FLEXGS" inspect "$OUT/default.ply"
"$FLEXGS" elasticize "$OUT/default.ply" --out "$OUT/default.flexgs" --orbit 24 --width 256 --height 256
"$FLEXGS" plan "$OUT/default.flexgs" --budget-ratio 0.15
for ratio in 0.01 0.05 0.10 0.15 1; do
  "$FLEXGS" render "$OUT/default.flexgs" --ratio "$ratio" --orbit 4 --index 1 --width 640 --height 480 \
    --background 0.05,0.05,0.08 --out "$OUT/ratio-$ratio.png"
done

# Serve the model and stream it with a budget of 15% (levels 1 -> 5 -> 10 -> 15%).
mkdir -p "$OUT/scenes"
rm -rf "$OUT/scenes/default.flexgs"
cp -r "$OUT/default.flexgs" "$OUT/scenes/"
"$BUILD_DIR/server/flexgs-server" --scenes "$OUT/scenes" --port 0 --metrics-port 0 > "$OUT/server.out" 2> "$OUT/server.log" &
SERVER_PID=$!
trap 'kill -TERM $SERVER_PID 2>/dev/null || true' EXIT
PORT=""
for _ in $(seq 1 100); do
  PORT=$(grep -oE '[0-9]+' "$OUT/server.out" 2>/dev/null | head -1 || true)
  [ -n "$PORT" ] && "$BUILD_DIR/server/flexgs-health-probe" --addr "127.0.0.1:$PORT" >/dev/null 2>&1 && break
  sleep 0.2
done
[ -n "$PORT" ] || { echo "demo: server did not start; see $OUT/server.log" >&2; exit 1; }
echo "demo: flexgs-server listening on 127.0.0.1:$PORT"
"$BUILD_DIR/server/flexgs-stream-client" --addr "127.0.0.1:$PORT" --scene default --ratio 0.15 \
  --payload-out "$OUT/stream.bin"
kill -TERM $SERVER_PID
wait $SERVER_PID || true
trap - EXIT
echo "demo: scene, model bundle, renders and streamed payload in $OUT/"

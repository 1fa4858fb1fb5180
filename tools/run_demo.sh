#!/usr/bin/env bash
# The main job end to end on the project's own default scene (nothing downloaded):
# install dependencies, build, generate the synthetic default scene, make it elastic
# (Global Importance -> heuristic model bundle), show the nested streaming plan and
# render the elastic levels 1% -> 5% -> 10% -> 15% next to the full scene.
# Output goes to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
OUT="${OUT:-out/demo}"
bash deploy/install-deps.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target flexgs
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
echo "demo: scene, model bundle and renders in $OUT/"

#!/usr/bin/env bash
# The main job end to end on the project's own default scene (nothing downloaded):
# install dependencies, build, generate the synthetic default scene, inspect it and
# render orbit views. Output goes to out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
OUT="${OUT:-out/demo}"
bash deploy/install-deps.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)" --target flexgs
FLEXGS="$BUILD_DIR/tools/flexgs"
mkdir -p "$OUT"
"$FLEXGS" generate --out "$OUT/default.ply" --count 200000 --sh-degree 1
"$FLEXGS" inspect "$OUT/default.ply"
for i in 0 1 2 3; do
  "$FLEXGS" render "$OUT/default.ply" --orbit 4 --index "$i" --width 800 --height 600 \
    --background 0.05,0.05,0.08 --out "$OUT/view-$i.png"
done
echo "demo: images in $OUT/"

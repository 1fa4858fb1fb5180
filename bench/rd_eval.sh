#!/usr/bin/env bash
# Quality per byte from all around: trains one elastic model per recipe on a scene and
# scores its nested levels on sphere views (close-ups included) against splat-transform
# decimation (SOG, SPZ) and its LOD pyramid, bytes counted as the server sends them.
# The figures in bench/RESULTS.md ("View-robust quality and bytes") come from this.
#
#   bench/rd_eval.sh SCENE.ply OUT_DIR [RECIPE...]
#   RECIPE: refined | refined-share | merged | insertion | per-level | tuned-sphere | orbit-tuned
#           (default: refined merged)
#
# refined: merged levels (elasticize --levels merged --coverage-share 1) trained with
# `flexgs refine` (about a minute for guitar); refined-share: the same with
# --replacement-share 0.15 (fewer bytes per Gaussian); merged: the merge alone. The
# GsNet + field recipes run 1000 steps at 256x256, 15-30 minutes each on 2 cores.
# splat-transform must be on PATH for the baselines (FLEXGS_EXTRAS=1
# deploy/install-deps.sh installs it).
set -euo pipefail
SCENE="$1"
OUT="$2"
shift 2
RECIPES=("$@")
[ ${#RECIPES[@]} -gt 0 ] || RECIPES=(refined merged)
FLEXGS="${FLEXGS:-build/tools/flexgs}"
ITERS="${ITERS:-1000}"
VIEWS="${VIEWS:-sphere:12}"
mkdir -p "$OUT"
for recipe in "${RECIPES[@]}"; do
  model="$OUT/$recipe.flexgs"
  case "$recipe" in
    refined | refined-share | merged)
      flags=()
      [[ $recipe == refined-share ]] && flags=(--replacement-share 0.15)
      "$FLEXGS" elasticize "$SCENE" --out "$OUT/$recipe.merge.flexgs" --width 256 --height 256 --threads 2 \
        --coverage-share 1 --levels merged > "$OUT/$recipe.train.log" 2>&1
      if [[ $recipe == merged ]]; then
        rm -rf "$model" && mv "$OUT/$recipe.merge.flexgs" "$model"
      else
        "$FLEXGS" refine "$OUT/$recipe.merge.flexgs" --out "$model" --threads 2 "${flags[@]}" \
          >> "$OUT/$recipe.train.log" 2>&1
      fi
      ;;
    insertion) flags=(--nested --pose insertion) ;;
    per-level) flags=() ;;
    tuned-sphere) flags=(--tune-gaussians --views sphere) ;;
    orbit-tuned) flags=(--tune-gaussians --views orbit --orbit 24) ;;
    *) echo "unknown recipe '$recipe'" >&2; exit 2 ;;
  esac
  if [[ $recipe != refined* && $recipe != merged ]]; then
    "$FLEXGS" train "$SCENE" --out "$model" --width 256 --iters "$ITERS" --threads 2 --checkpoint-every 0 \
      "${flags[@]}" 2> "$OUT/$recipe.train.log"
  fi
  "$FLEXGS" plan "$model" --budget-ratio 0.15 > "$OUT/$recipe.plan.txt"
  # --original: the reference is the input scene even where training moved the Gaussians.
  "$FLEXGS" eval "$model" --original "$SCENE" --views "$VIEWS" --width 256 --height 256 --background 0,0,0 \
    --ratios 0.01,0.05,0.10,0.15 --methods full,elastic-nested,gi-topk,splat-transform --threads 2 \
    --out "$OUT/$recipe.eval" 2> "$OUT/$recipe.eval.log"
  echo "$recipe: $(grep -h 'elastic-nested:' "$OUT/$recipe.eval.log" | sed 's/.*elastic-nested: //')"
done

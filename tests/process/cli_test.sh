#!/usr/bin/env bash
# Acceptance behaviour of the `flexgs` binary: inspect/render on the shared guitar
# scene, and clear non-zero failures on bad input.
#   usage: cli_test.sh <path-to-flexgs> <shared-data-dir>
set -u
FLEXGS="$1"
DATA="${FLEXGS_DATA_DIR:-$2}"
source "$(dirname "$0")/lib.sh"
flexgs_tmpdir cli
TMP=$WORK

# Synthetic scene: generate, inspect, render (always available).
"$FLEXGS" generate --out "$TMP/synth.ply" --count 5000 --sh-degree 1 >/dev/null
check "generate writes a PLY" test -s "$TMP/synth.ply"
"$FLEXGS" inspect "$TMP/synth.ply" --json > "$TMP/synth.json"
check "inspect --json counts" grep -q '"gaussians": 5000' "$TMP/synth.json"
check "inspect --json sh" grep -q '"sh_degree": 1' "$TMP/synth.json"
"$FLEXGS" render "$TMP/synth.ply" --orbit 4 --index 1 --width 96 --height 64 --out "$TMP/s.png" --device cpu \
  > "$TMP/render.txt"
check "render writes PNG" test -s "$TMP/s.png"
check "render prints time" grep -q " ms" "$TMP/render.txt"

# Elastic model: elasticize -> plan -> render a ratio.
"$FLEXGS" elasticize "$TMP/synth.ply" --out "$TMP/synth.flexgs" --orbit 4 --width 64 --height 64 > /dev/null 2>&1
check "elasticize writes a bundle" test -s "$TMP/synth.flexgs/manifest.json"
"$FLEXGS" plan "$TMP/synth.flexgs" --budget-ratio 0.12 --json > "$TMP/plan.json"
# The server's stream cut at 12%: rungs 1/5/10% and the stops of 2^(1/4) between them
# (1 + 9 + 4), then 11.9%.
check "plan has 15 levels" test "$(grep -c '"ratio"' "$TMP/plan.json")" -eq 15
check "plan reports wire bytes" grep -q '"encoded_bytes"' "$TMP/plan.json"
"$FLEXGS" render "$TMP/synth.flexgs" --ratio 0.05 --orbit 4 --width 64 --height 64 --out "$TMP/r5.png" \
  > "$TMP/r5.txt" 2>&1
check "render at 5% keeps 250 Gaussians" grep -q "250 of 250 Gaussians" "$TMP/r5.txt"
if "$FLEXGS" render "$TMP/synth.flexgs" --ratio 1.5 --orbit 2 --out "$TMP/x.png" 2> "$TMP/err5.txt"; then
  check "ratio > 1 fails" false
else
  check "ratio > 1 fails" true
fi
check "ratio message" grep -q -- "--ratio: Value 1.5 not in range" "$TMP/err5.txt"
if "$FLEXGS" render "$TMP/synth.ply" --ratio 0.1 --orbit 2 --out "$TMP/x.png" 2> "$TMP/err6.txt"; then
  check "ratio on a PLY fails" false
else
  check "ratio on a PLY fails" true
fi
check "ratio on PLY message" grep -q "elasticize" "$TMP/err6.txt"

# Merged levels: the options land in the manifest; without --levels merged, or out of
# range, they are refused by name.
"$FLEXGS" elasticize "$TMP/synth.ply" --out "$TMP/merged.flexgs" --orbit 4 --width 64 --height 64 \
  --coverage-share 1 --levels merged --replacement-tolerance 3 --merge-passes 1 > /dev/null 2>&1
check "merged manifest" grep -q '"level_attributes": "merged"' "$TMP/merged.flexgs/manifest.json"
check "merged tolerance" grep -q '"replacement_tolerance": 3' "$TMP/merged.flexgs/manifest.json"
check "merged passes" grep -q '"merge_refine_passes": 1' "$TMP/merged.flexgs/manifest.json"
"$FLEXGS" plan "$TMP/merged.flexgs" --budget-ratio 0.12 --json > "$TMP/mplan.json"
check "merged plan replaces earlier Gaussians" python3 -c "
import json, sys
j = json.load(open('$TMP/mplan.json'))
sys.exit(0 if sum(l['patched'] for l in j['levels']) > 0 else 1)"
for bad in "--merge-passes 1|--merge-passes" "--replacement-tolerance 1|--replacement-tolerance" \
  "--levels merged --merge-passes 9|--merge-passes" \
  "--levels merged --replacement-tolerance 17|--replacement-tolerance" "--levels blended|--levels"; do
  args=${bad%|*} name=${bad#*|}
  # shellcheck disable=SC2086
  if "$FLEXGS" elasticize "$TMP/synth.ply" --out "$TMP/bad.flexgs" --orbit 2 --width 32 --height 32 $args \
    > /dev/null 2> "$TMP/err-m.txt"; then
    check "elasticize $args fails" false
  else
    check "elasticize $args fails naming $name" grep -q -- "$name" "$TMP/err-m.txt"
  fi
done

# Refined levels: `flexgs refine` trains the merged model's rungs, records them in the
# manifest, and the plan then serves them; bad options and unmerged models are refused.
"$FLEXGS" refine "$TMP/merged.flexgs" --out "$TMP/refined.flexgs" --iters 5 --views 3 --width 48 --threads 2 \
  > "$TMP/refine.txt" 2>&1
check "refine reports each rung" test "$(grep -c '^  rung ' "$TMP/refine.txt")" -eq 4
check "refined manifest" python3 -c "
import json, sys
m = json.load(open('$TMP/refined.flexgs/manifest.json'))
r = m['refined_rungs']
sys.exit(0 if [x['ratio'] for x in r] == [0.01, 0.05, 0.1, 0.15] and m['training']['refine']['iterations'] == 5
         else 1)"
"$FLEXGS" plan "$TMP/refined.flexgs" --budget-ratio 0.12 --json > "$TMP/rplan.json"
check "refined plan has the merged plan's levels" test "$(grep -c '"ratio"' "$TMP/rplan.json")" -eq \
  "$(grep -c '"ratio"' "$TMP/mplan.json")"
check "refined plan says so" grep -q '"mode": "merged, refined"' "$TMP/rplan.json"
expect_exit1 "refine --additions-only --replacement-share" "excludes" \
  "$FLEXGS" refine "$TMP/merged.flexgs" --out "$TMP/x.flexgs" --additions-only --replacement-share 0.5
expect_exit1 "refine of an unmerged model" "does not have merged levels" \
  "$FLEXGS" refine "$TMP/synth.flexgs" --out "$TMP/x.flexgs" --iters 1
expect_exit1 "refine --iters 0" "refine iterations 0" "$FLEXGS" refine "$TMP/merged.flexgs" --out "$TMP/x.flexgs" --iters 0
expect_exit1 "refine --view-fov 10:200" "field of view" \
  "$FLEXGS" refine "$TMP/merged.flexgs" --out "$TMP/x.flexgs" --view-fov 10:200
expect_exit1 "refine --replacement-share 2" "replacement share 2" \
  "$FLEXGS" refine "$TMP/merged.flexgs" --out "$TMP/x.flexgs" --replacement-share 2
expect_exit1 "refine --directions" "hemisphere" \
  "$FLEXGS" refine "$TMP/merged.flexgs" --out "$TMP/x.flexgs" --directions down
expect_exit1 "refine of a missing model" "no-such.flexgs" \
  "$FLEXGS" refine "$TMP/no-such.flexgs" --out "$TMP/x.flexgs"

# Bad input: non-zero exit and a message naming the problem.
printf 'ply\nformat binary_little_endian 1.0\nelement vertex 100\nproperty float x\nend_header\n' > "$TMP/bad.ply"
if "$FLEXGS" inspect "$TMP/bad.ply" 2> "$TMP/err.txt"; then
  check "bad PLY exits non-zero" false
else
  check "bad PLY exits non-zero" true
fi
check "bad PLY message names a property" grep -qi "property\|missing" "$TMP/err.txt"
if "$FLEXGS" render "$TMP/synth.ply" --orbit 4 --index 9 --out "$TMP/x.png" 2> "$TMP/err2.txt"; then
  check "index out of range fails" false
else
  check "index out of range fails" true
fi
check "index message" grep -q "index" "$TMP/err2.txt"
if "$FLEXGS" render "$TMP/synth.ply" --orbit 2 --out "$TMP/x.png" --device tpu 2> "$TMP/err3.txt"; then
  check "bad device fails" false
else
  check "bad device fails" true
fi
check "bad device message" grep -q "tpu" "$TMP/err3.txt"

if [ -f "$DATA/guitar.ply" ]; then
  "$FLEXGS" inspect "$DATA/guitar.ply" --json > "$TMP/guitar.json"
  check "guitar count" grep -q '"gaussians": 90854' "$TMP/guitar.json"
  check "guitar clamped 667" grep -q '"opacity_clamped": 667' "$TMP/guitar.json"
  "$FLEXGS" render "$DATA/guitar.ply" --orbit 8 --index 0 --width 200 --height 200 --out "$TMP/guitar.png" >/dev/null
  check "guitar render" test -s "$TMP/guitar.png"
  head -c 1000000 "$DATA/guitar.ply" > "$TMP/truncated.ply"
  if "$FLEXGS" inspect "$TMP/truncated.ply" 2> "$TMP/err4.txt"; then
    check "truncated exits non-zero" false
  else
    check "truncated exits non-zero" true
  fi
  check "truncated message" grep -qi "truncated" "$TMP/err4.txt"
else
  echo "SKIP: guitar.ply not found in $DATA"
fi

checks_done

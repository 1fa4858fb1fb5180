#!/usr/bin/env bash
# `flexgs train` end to end on a tiny synthetic scene: a run writes a servable trained
# bundle; a run resumed from its checkpoint ends bit-identical to an uninterrupted one;
# SIGINT leaves a valid checkpoint (exit 130) that --resume continues; dataset mode
# (--images + --cameras, every 8th view held out) trains; and every bad input fails
# with exit 1 and a message before a single step is taken.
#   usage: train_cli_test.sh <path-to-flexgs>
set -u
FLEXGS="$1"
source "$(dirname "$0")/lib.sh"
flexgs_tmpdir train-cli
TMP=$WORK
# Runs flexgs train with the given args, expecting exit 1, `pattern` in stderr and no step taken.
expect_error() { # name, pattern, args...
  expect_exit1 "$1" "$2" "$FLEXGS" train "${@:3}"
  check "$1 fails before training" bash -c "! grep -q '^step ' '$TMP/err.txt'"
}
digest() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["digest"])' "$1/manifest.json"; }

"$FLEXGS" generate --out "$TMP/s.ply" --count 3000 > /dev/null
# --device cpu: bit-identical resume is a CPU guarantee (CUDA gradients use atomics).
COMMON=(--orbit 4 --width 40 --threads 2 --seed 3 --device cpu)

# 1. A run, and the same run resumed half way: identical bundles (digest covers every byte).
"$FLEXGS" train "$TMP/s.ply" --out "$TMP/a.flexgs" --iters 6 "${COMMON[@]}" > "$TMP/a.out" 2> "$TMP/a.err"
rc=$?
check "train exits 0 (got $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat "$TMP/a.err"
check "train writes a bundle" test -s "$TMP/a.flexgs/manifest.json"
check "train writes a checkpoint" test -s "$TMP/a.flexgs.ckpt"
check "progress shows step, loss, PSNR, steps/s and ETA" \
  grep -qE '^step 6/6 .*loss .*PSNR\(sel\) .*steps/s +ETA' "$TMP/a.err"
"$FLEXGS" train "$TMP/s.ply" --out "$TMP/b.flexgs" --iters 3 "${COMMON[@]}" > /dev/null 2>&1
"$FLEXGS" train "$TMP/s.ply" --out "$TMP/b.flexgs" --iters 6 --resume "${COMMON[@]}" > /dev/null 2> "$TMP/b.err"
check "resume continues from iteration 3" grep -q "resumed at iteration 3 of 6" "$TMP/b.err"
check "resumed run is bit-identical to the uninterrupted one" \
  test "$(digest "$TMP/a.flexgs")" = "$(digest "$TMP/b.flexgs")"
"$FLEXGS" plan "$TMP/a.flexgs" --budget-ratio 0.15 > "$TMP/plan.txt" 2>&1
check "the trained bundle plans" test $? -eq 0
check "the bundle records the served selection" grep -q '"served-independent"' "$TMP/a.flexgs/manifest.json"

# Frozen base (the default): the trained bundle's Gaussians are the input's, byte for byte
# (the same PLY bytes as an untrained bundle of the scene).
ply_sha() {
  python3 -c 'import json,sys
print(json.load(open(sys.argv[1]+"/manifest.json"))["files"]["gaussians.ply"]["sha256"])' "$1"
}
"$FLEXGS" elasticize "$TMP/s.ply" --out "$TMP/h.flexgs" --orbit 2 --width 16 --height 16 --threads 2 > /dev/null 2>&1
check "the trained bundle keeps the input Gaussians bit for bit" \
  test "$(ply_sha "$TMP/a.flexgs")" = "$(ply_sha "$TMP/h.flexgs")"
check "the progress line says the Gaussians are frozen" grep -q "PSNR(full) frozen" "$TMP/a.err"
check "training samples a fresh view per step by default" grep -q "a fresh sphere view per step" "$TMP/a.err"
check "the bundle records the view sampling" grep -q '"view_sampling"' "$TMP/a.flexgs/manifest.json"
# Poses fixed at insertion: no level below 100% carries patches; 100% restores the input.
"$FLEXGS" train "$TMP/s.ply" --out "$TMP/p.flexgs" --iters 4 --nested --pose insertion "${COMMON[@]}" \
  > /dev/null 2> "$TMP/p.err"
check "--pose insertion trains (exit 0)" test $? -eq 0
check "--pose insertion is recorded in the manifest" grep -q '"field_pose": "insertion"' "$TMP/p.flexgs/manifest.json"
"$FLEXGS" plan "$TMP/p.flexgs" --budget-ratio 0.15 --json > "$TMP/p.json" 2> /dev/null
check "insertion poses stream without patches" python3 -c '
import json,sys; j=json.load(open(sys.argv[1]))
sys.exit(0 if all(l["patched"]==0 for l in j["levels"]) and len(j["levels"])==16 else 1)' "$TMP/p.json"
"$FLEXGS" plan "$TMP/a.flexgs" --budget-ratio 0.15 --json > "$TMP/a.json" 2> /dev/null
check "per-level poses re-send earlier Gaussians as patches" python3 -c '
import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["levels"][1]["patched"]>0 else 1)' "$TMP/a.json"

# Evaluating a trained model against the scene it came from.
"$FLEXGS" eval "$TMP/a.flexgs" --original "$TMP/s.ply" --orbit 1 --width 32 --height 32 --ratios 0.05 \
  --methods full,elastic-independent,gi-topk --background 0,0,0 --threads 2 --out "$TMP/R" > /dev/null 2> "$TMP/r.err"
check "eval --original exits 0" test $? -eq 0
check "eval --original is recorded" grep -q "\"original\": \"$TMP/s.ply\"" "$TMP/R/report.json"
"$FLEXGS" generate --out "$TMP/other.ply" --count 2000 > /dev/null
"$FLEXGS" eval "$TMP/a.flexgs" --original "$TMP/other.ply" --orbit 1 --width 32 --height 32 --out "$TMP/R2" \
  > /dev/null 2> "$TMP/r2.err"
check "eval --original of another scene exits 1" test $? -eq 1
check "eval --original of another scene says why" grep -q "not the scene it was trained from" "$TMP/r2.err"

# 2. Nested selection trains too.
"$FLEXGS" train "$TMP/s.ply" --out "$TMP/n.flexgs" --iters 4 --nested "${COMMON[@]}" > /dev/null 2> "$TMP/n.err"
check "nested train exits 0" test $? -eq 0
check "the bundle records nested selection" grep -q '"served-nested"' "$TMP/n.flexgs/manifest.json"

# 3. SIGINT: exit 130, checkpoint valid, --resume continues it.
"$FLEXGS" train "$TMP/s.ply" --out "$TMP/c.flexgs" --iters 100000 --checkpoint-every 1 "${COMMON[@]}" \
  > /dev/null 2> "$TMP/c.err" &
PID=$!
PIDS+=("$PID")
for _ in $(seq 1 600); do grep -q '^step 2/' "$TMP/c.err" 2>/dev/null && break; sleep 0.1; done
kill -INT "$PID"
wait "$PID"; rc=$?; PID=
check "SIGINT exits 130 (got $rc)" test "$rc" -eq 130
check "SIGINT says how to continue" grep -q "continue with --resume" "$TMP/c.err"
"$FLEXGS" train "$TMP/s.ply" --out "$TMP/c.flexgs" --iters 3 --resume "${COMMON[@]}" > /dev/null 2> "$TMP/c2.err"
rc=$?
if grep -q "resumed at iteration [3-9]\|resumed at iteration [1-9][0-9]" "$TMP/c2.err"; then
  # Interrupted past iteration 3: nothing left to do, still a valid bundle.
  check "resume after SIGINT exits 0 (got $rc)" test "$rc" -eq 0
else
  check "resume after SIGINT exits 0 (got $rc)" test "$rc" -eq 0
  check "resume after SIGINT starts from the checkpoint" grep -q "resumed at iteration [12] of 3" "$TMP/c2.err"
fi
[ "$rc" -eq 0 ] || cat "$TMP/c2.err"
check "resume after SIGINT writes the bundle" test -s "$TMP/c.flexgs/manifest.json"

# 4. Dataset mode: 9 cameras (INRIA cameras.json), PNGs rendered from the scene; 0 and 8 are held out.
python3 - "$TMP/cams.json" << 'EOF'
import json, math, sys
cams = []
for i in range(9):
    a = 2 * math.pi * i / 9
    p = [6 * math.cos(a), -2.5, 6 * math.sin(a)]
    t = [0.0, -0.8, 0.0]
    f = [t[k] - p[k] for k in range(3)]; n = math.sqrt(sum(v * v for v in f)); f = [v / n for v in f]
    d = [0.0, 1.0, 0.0]; dot = sum(d[k] * f[k] for k in range(3)); d = [d[k] - dot * f[k] for k in range(3)]
    n = math.sqrt(sum(v * v for v in d)); d = [v / n for v in d]
    r = [d[1] * f[2] - d[2] * f[1], d[2] * f[0] - d[0] * f[2], d[0] * f[1] - d[1] * f[0]]
    rot = [[r[k], d[k], f[k]] for k in range(3)]  # camera-to-world, rows
    cams.append({"id": i, "img_name": "view_%02d" % i, "width": 48, "height": 36, "position": p,
                 "rotation": rot, "fx": 50.0, "fy": 50.0})
json.dump(cams, open(sys.argv[1], "w"))
EOF
mkdir -p "$TMP/images"
for i in $(seq 0 8); do
  "$FLEXGS" render "$TMP/s.ply" --cameras "$TMP/cams.json" --index "$i" --out "$TMP/images/view_0$i.png" \
    --threads 2 > /dev/null 2>&1
done
"$FLEXGS" train "$TMP/s.ply" --out "$TMP/d.flexgs" --iters 3 --images "$TMP/images" --cameras "$TMP/cams.json" \
  --threads 2 > /dev/null 2> "$TMP/d.err"
rc=$?
check "dataset train exits 0 (got $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat "$TMP/d.err"
check "dataset train uses the 7 training views (2 of 9 held out) at their own size" \
  grep -q "7 dataset-images views of 48x36" "$TMP/d.err"
check "the bundle records the dataset split" grep -q '"dataset-images"' "$TMP/d.flexgs/manifest.json"
"$FLEXGS" train "$TMP/s.ply" --out "$TMP/e.flexgs" --iters 2 --cameras "$TMP/cams.json" --width 32 \
  --threads 2 > /dev/null 2> "$TMP/e.err"
check "dataset cameras without images distil (exit 0)" test $? -eq 0
check "distilled dataset views are resampled with the aspect kept" \
  grep -q "7 dataset-cameras views of 32x24" "$TMP/e.err"
check "dataset training adds renders of the input near the dataset views" \
  grep -q "every second step a render of the input near one" "$TMP/e.err"

# 5. Bad inputs: exit 1, a message naming what is wrong, no step taken.
expect_error "missing scene" "nope.ply" "$TMP/nope.ply" --out "$TMP/x.flexgs" --iters 2
printf 'ply\nformat ascii 1.0\nelement vertex 2\nend_header\n' > "$TMP/bad.ply"
expect_error "unreadable scene" "bad.ply" "$TMP/bad.ply" --out "$TMP/x.flexgs" --iters 2
expect_error "images without cameras" "needs --cameras" "$TMP/s.ply" --out "$TMP/x.flexgs" --images "$TMP/images"
expect_error "missing images folder" "does not exist" "$TMP/s.ply" --out "$TMP/x.flexgs" \
  --images "$TMP/noimages" --cameras "$TMP/cams.json"
mkdir -p "$TMP/partial"; cp "$TMP/images/view_01.png" "$TMP/partial/"
expect_error "missing image" "no PNG image for camera 'view_02'" "$TMP/s.ply" --out "$TMP/x.flexgs" \
  --images "$TMP/partial" --cameras "$TMP/cams.json"
mkdir -p "$TMP/wrong"; cp "$TMP/images/"*.png "$TMP/wrong/"
"$FLEXGS" render "$TMP/s.ply" --orbit 1 --width 40 --height 40 --out "$TMP/wrong/view_03.png" --threads 2 \
  > /dev/null 2>&1
expect_error "camera/image mismatch" "aspect ratios differ" "$TMP/s.ply" --out "$TMP/x.flexgs" \
  --images "$TMP/wrong" --cameras "$TMP/cams.json"
cp "$TMP/images/"*.png "$TMP/wrong/"; echo "not a png" > "$TMP/wrong/view_04.png"
expect_error "unreadable image" "view_04.png" "$TMP/s.ply" --out "$TMP/x.flexgs" \
  --images "$TMP/wrong" --cameras "$TMP/cams.json"
expect_error "missing cameras" "nocams.json" "$TMP/s.ply" --out "$TMP/x.flexgs" --cameras "$TMP/nocams.json"
expect_error "resume without checkpoint" "no checkpoint" "$TMP/s.ply" --out "$TMP/none.flexgs" --resume
expect_error "bad selection" "--selection: magic not in {served,reference}" "$TMP/s.ply" --out "$TMP/x.flexgs" \
  --selection magic
expect_error "nested with reference selection" "nested training needs" "$TMP/s.ply" --out "$TMP/x.flexgs" \
  --nested --selection reference
expect_error "unknown device" "--device: gpu not in {auto,cpu,cuda}" "$TMP/s.ply" --out "$TMP/x.flexgs" --device gpu
# --device cuda: without a usable GPU it fails before any step, naming why; with one it trains.
"$FLEXGS" train "$TMP/s.ply" --out "$TMP/g.flexgs" --iters 2 --orbit 4 --width 40 --threads 2 --device cuda \
  > /dev/null 2> "$TMP/g.err"
rc=$?
if grep -q "CUDA was requested but is unavailable" "$TMP/g.err"; then
  echo "  (no usable GPU: $(grep -o 'unavailable: .*' "$TMP/g.err"))"
  check "cuda without a GPU exits 1 before training" test "$rc" -eq 1
  check "cuda without a GPU takes no step" bash -c "! grep -q '^step ' '$TMP/g.err'"
  check "cuda without a GPU writes nothing" test ! -e "$TMP/g.flexgs"
else
  check "cuda training exits 0 (got $rc)" test "$rc" -eq 0
  check "cuda training says so" grep -q " on cuda, " "$TMP/g.err"
  check "cuda training writes a bundle" test -s "$TMP/g.flexgs/manifest.json"
fi
expect_error "bad ladder" "ladder" "$TMP/s.ply" --out "$TMP/x.flexgs" --ladder 0.05,2
# Values outside a fixed set are CLI11's to refuse (its own exit code, the flag named).
for bad in "--views ring" "--pose magic"; do
  "$FLEXGS" train "$TMP/s.ply" --out "$TMP/x.flexgs" $bad > /dev/null 2> "$TMP/err.txt"
  rc=$?
  check "$bad exits non-zero (got $rc)" test "$rc" -ne 0
  check "$bad names the flag" grep -q -- "${bad%% *}" "$TMP/err.txt"
done
expect_error "malformed --view-distance" "--view-distance" "$TMP/s.ply" --out "$TMP/x.flexgs" --view-distance 0.5:x
expect_error "inverted distance range" "inverted" "$TMP/s.ply" --out "$TMP/x.flexgs" --view-distance 2:1
expect_error "empty distance range" "positive" "$TMP/s.ply" --out "$TMP/x.flexgs" --view-distance 0:1
expect_error "field of view of 180 degrees" "(0, 180)" "$TMP/s.ply" --out "$TMP/x.flexgs" --view-fov 40:180
expect_error "field of view of 0 degrees" "(0, 180)" "$TMP/s.ply" --out "$TMP/x.flexgs" --view-fov 0
expect_error "insertion poses without --nested" "need nested" "$TMP/s.ply" --out "$TMP/x.flexgs" --pose insertion
# Tuned Gaussians with sampled views: the input renders the targets (a teacher copy).
"$FLEXGS" train "$TMP/s.ply" --out "$TMP/t.flexgs" --iters 3 --tune-gaussians --views sphere "${COMMON[@]}" \
  > /dev/null 2> "$TMP/t.err"
check "--tune-gaussians --views sphere trains (exit 0)" test $? -eq 0
check "... with tuned Gaussians" grep -q "tuned Gaussians" "$TMP/t.err"
expect_error "--views dataset without a dataset" "needs --images" "$TMP/s.ply" --out "$TMP/x.flexgs" --views dataset
expect_error "sampled views with dataset cameras" "--views auto" "$TMP/s.ply" --out "$TMP/x.flexgs" \
  --views sphere --cameras "$TMP/cams.json"
expect_error "resume with other options" "made with seed 3, not 4" "$TMP/s.ply" --out "$TMP/a.flexgs" \
  --iters 8 --resume --orbit 4 --width 40 --threads 2 --seed 4
check "no bundle was written by a failed run" test ! -e "$TMP/x.flexgs"

checks_done train_cli_test

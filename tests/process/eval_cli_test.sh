#!/usr/bin/env bash
# `flexgs eval` end to end on a small synthetic scene: the report covers every method x
# ratio, scores behave, the contact sheet has the size it claims, images mode works,
# --views sphere:N scores views over the sphere with close-ups, bytes on the wire are
# reported per format with rd.png, and bad input fails with exit 1 and a message.
# splat-transform (and with it the SOG, SPZ and LOD-pyramid bytes) is part of the runs
# when it is on PATH; the "skipped" note is checked with a PATH that lacks it.
#   usage: eval_cli_test.sh <path-to-flexgs>
set -u
FLEXGS="$1"
source "$(dirname "$0")/lib.sh"
flexgs_tmpdir eval-cli
TMP=$WORK
expect_error() { expect_exit1 "$1" "$2" "$FLEXGS" "${@:3}"; }  # name, pattern, args...: exit 1, pattern in stderr

"$FLEXGS" generate --out "$TMP/s.ply" --count 20000 > /dev/null
"$FLEXGS" elasticize "$TMP/s.ply" --out "$TMP/s.flexgs" --orbit 8 --width 64 --height 64 > /dev/null 2>&1
check "elasticize writes a bundle" test -s "$TMP/s.flexgs/manifest.json"

HAVE_ST=0; command -v splat-transform > /dev/null && HAVE_ST=1
"$FLEXGS" eval "$TMP/s.flexgs" --orbit 2 --width 96 --height 96 --ratios 0.05,0.15 --threads 2 --out "$TMP/R" \
  > "$TMP/eval.txt" 2> "$TMP/eval.err"
rc=$?
check "eval exits 0 (got $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || { cat "$TMP/eval.err"; }
for f in report.json report.md contact.png; do check "eval writes $f" test -s "$TMP/R/$f"; done
if [ -s "$TMP/R/report.json" ]; then
  python3 - "$TMP/R/report.json" "$HAVE_ST" << 'EOF' > "$TMP/check.txt" 2>&1
import json, math, struct, sys, os
j = json.load(open(sys.argv[1]))
have_st = sys.argv[2] == "1"
methods = ["elastic-independent", "elastic-nested", "gi-topk", "lightgaussian", "opacity-topk", "random", "gi-merge",
           "nested-merge", "elastic-stream"]
if have_st:
    methods.append("splat-transform")
errors = []
cells = {(r["method"], r["ratio"]): r for r in j["results"]}
for m in methods:
    for e in (0.05, 0.15):
        c = cells.get((m, e))
        if c is None:
            errors.append(f"missing {m} at {e}")
        elif not (isinstance(c["psnr"], float) and math.isfinite(c["psnr"])):
            errors.append(f"{m} at {e}: psnr {c['psnr']}")
        elif m not in ("splat-transform", "elastic-stream") and c["count"] != int(e * 20000):
            errors.append(f"{m} at {e}: count {c['count']}")
        elif m == "elastic-stream" and not int(e * 20000) / 2 ** 0.375 < c["count"] <= int(e * 20000):
            errors.append(f"{m} at {e}: count {c['count']}, not the stream's last stop within the budget")
if not have_st and "splat-transform" in {r["method"] for r in j["results"]}:
    errors.append("splat-transform ran although it is not on PATH")
if have_st != (("splat-transform", 0.05) in cells):
    errors.append("splat-transform presence does not match PATH")
if j["full"]["psnr"] is not None or j["full"]["ssim"] != 1.0 or not j["full"]["identical"]:
    errors.append(f"full vs itself: {j['full']['psnr']} / {j['full']['ssim']}")
if not cells[("gi-topk", 0.05)]["psnr"] < cells[("gi-topk", 0.15)]["psnr"]:
    errors.append("gi-topk PSNR does not increase with the ratio")
if j["mode"] != "heuristic" or j["protocol"] != "distillation" or len(j["views"]["cameras"]) != 2:
    errors.append(f"mode/protocol/views: {j['mode']} {j['protocol']} {len(j['views']['cameras'])}")
# Held-out views: half the GI orbit's 45-degree spacing, not its elevation.
if j["views"]["azimuth_offset_deg"] != 22.5 or j["views"]["elevation_deg"] == 20.0:
    errors.append(f"eval views: {j['views']}")
# contact.png has the size the report claims, big enough for (1 + ratios) x rows cells.
png = open(os.path.join(os.path.dirname(sys.argv[1]), "contact.png"), "rb").read(32)
w, h = struct.unpack(">II", png[16:24])
c = j["contact"]
if (w, h) != (c["width"], c["height"]) or w < 3 * 96 or h < len(c["rows"]) * 96 or len(c["rows"]) != len(methods):
    errors.append(f"contact.png {w}x{h} vs {c}")
print("\n".join(errors) if errors else "ok")
sys.exit(1 if errors else 0)
EOF
  check "report.json: every method x ratio, finite PSNR, sizes ($(tr '\n' ';' < "$TMP/check.txt"))" \
    grep -qx ok "$TMP/check.txt"
  check "report.md says heuristic model" grep -q "heuristic model" "$TMP/R/report.md"
  check "report.md has the PSNR table" grep -q "^| gi-topk |" "$TMP/R/report.md"
  check "stdout prints the table" grep -q "gi-topk" "$TMP/eval.txt"
  check "report.md has the bytes table" grep -q "^| elastic-nested | 5% |" "$TMP/R/report.md"
  check "orbit run writes rd.png" test -s "$TMP/R/rd.png"
fi

# Views over the sphere (every third a close-up), bytes on the wire for every format, rd.png.
SPHERE_METHODS=elastic-nested,elastic-independent,gi-topk
[ "$HAVE_ST" -eq 1 ] && SPHERE_METHODS="$SPHERE_METHODS,splat-transform"
"$FLEXGS" eval "$TMP/s.flexgs" --views sphere:3 --width 48 --height 48 --ratios 0.05,0.15 --threads 2 \
  --methods "$SPHERE_METHODS" --out "$TMP/RS" > "$TMP/rs.txt" 2>&1
rc=$?
check "eval --views sphere:3 exits 0 (got $rc)" test "$rc" -eq 0
[ "$rc" -eq 0 ] || cat "$TMP/rs.txt"
for f in report.json report.md contact.png rd.png; do check "sphere eval writes $f" test -s "$TMP/RS/$f"; done
if [ -s "$TMP/RS/report.json" ]; then
  python3 - "$TMP/RS" "$HAVE_ST" << 'EOF' > "$TMP/check.txt" 2>&1
import json, os, struct, sys
d, have_st = sys.argv[1], sys.argv[2] == "1"
j = json.load(open(os.path.join(d, "report.json")))
errors = []
v = j["views"]
names = [c["name"] for c in v["cameras"]]
if v["kind"] != "sphere" or v["count"] != 3 or names != ["sphere_000", "sphere_001", "sphere_002"]:
    errors.append(f"views: {v['kind']} {v['count']} {names}")
if [c["distance_factor"] for c in v["cameras"]] != [1.0, 0.7, 0.5]:
    errors.append(f"distance factors: {v['cameras']}")
if j["contact"]["views"] != ["sphere_000", "sphere_002"]:
    errors.append(f"contact views (framed + close-up): {j['contact']['views']}")
cell = next(r for r in j["results"] if r["method"] == "elastic-nested")
if sorted(cell["psnr_by_distance"]) != ["0.5", "0.7", "1"]:
    errors.append(f"psnr_by_distance: {cell['psnr_by_distance']}")
# rd.png is a PNG of the size the chart is drawn at.
png = open(os.path.join(d, "rd.png"), "rb").read(32)
if png[:8] != b"\x89PNG\r\n\x1a\n" or struct.unpack(">II", png[16:24]) != (760, 440):
    errors.append("rd.png is not a 760x440 PNG")
wire = {w["name"]: w for w in j["wire"]}
expected = ["elastic-nested", "elastic-independent"]
if have_st:
    expected += ["decimation-sog", "decimation-spz", "lod-pyramid"]
if sorted(wire) != sorted(expected):
    errors.append(f"wire series {sorted(wire)}, expected {sorted(expected)}")
for name, w in wire.items():
    pts = w["points"]
    if [p["ratio"] for p in pts] != [0.05, 0.15] or any(p["level_bytes"] <= 0 for p in pts):
        errors.append(f"{name}: points {pts}")
    if any(p["bytes"] != p[w["bytes_are"]] for p in pts):
        errors.append(f"{name}: bytes is not {w['bytes_are']}")
nested = wire.get("elastic-nested", {"points": []})["points"]
if len(nested) == 2:
    n0, n1 = nested
    if not (n0["bytes"] < n1["bytes"] and n1["bytes"] == n0["level_bytes"] + n1["level_bytes"]):
        errors.append(f"elastic-nested bytes are not cumulative: {nested}")
    if n0["count"] != 1000 or n1["count"] != 3000:
        errors.append(f"elastic-nested counts {nested}")
    # Heuristic bundle: the first nested level is the one-level stream of its ratio.
    if n0["bytes"] != wire["elastic-independent"]["points"][0]["bytes"]:
        errors.append("nested level 1 differs from the one-level stream")
if have_st:
    lod = wire["lod-pyramid"]["points"]
    if not lod[0]["bytes"] < lod[1]["bytes"] or j["lod_pyramid"]["files"] < 3:
        errors.append(f"lod pyramid: {lod} {j['lod_pyramid']}")
s = j["rd_summary"]
if len(s["levels"]) != 2 or s["levels"][1]["bytes"] != nested[1]["bytes"] or "margin_db" not in s["levels"][0]:
    errors.append(f"rd_summary: {s}")
if have_st and (s["baselines"] != ["decimation-sog", "lod-pyramid"] or "decimation-sog_psnr" not in s["levels"][0]):
    errors.append(f"rd_summary baselines: {s}")
print("\n".join(errors) if errors else "ok")
sys.exit(1 if errors else 0)
EOF
  check "sphere report.json: views, contact close-up, bytes per format ($(tr '\n' ';' < "$TMP/check.txt"))" \
    grep -qx ok "$TMP/check.txt"
  check "report.md describes the sphere views" grep -q "every third view" "$TMP/RS/report.md"
  check "report.md has the bytes table" grep -q "^| elastic-nested | 15% | 3000 |" "$TMP/RS/report.md"
  check "report.md has the equal-bytes summary" grep -q "at equal bytes" "$TMP/RS/report.md"
fi

# Without splat-transform on PATH: a note, and the run still succeeds.
env PATH=/nonexistent "$FLEXGS" eval "$TMP/s.flexgs" --orbit 1 --width 32 --height 32 --ratios 0.05 \
  --methods all --out "$TMP/R2" > "$TMP/r2.txt" 2>&1
check "eval without splat-transform exits 0" test $? -eq 0
check "note about skipped splat-transform" grep -q "splat-transform is not on PATH" "$TMP/r2.txt"
check "note in report.md" grep -q "splat-transform is not on PATH" "$TMP/R2/report.md"
EVAL=(eval "$TMP/s.flexgs" --orbit 1 --width 32 --height 32)
env PATH=/nonexistent "$FLEXGS" "${EVAL[@]}" --methods gi-topk,splat-transform --out "$TMP/x" 2> "$TMP/e.txt"
check "explicit splat-transform without it exits 1" test $? -eq 1
check "explicit splat-transform without it: message" grep -q "splat-transform but it is not on PATH" "$TMP/e.txt"

# Ground-truth images: every 8th camera (by name) is a test view, matched by name.
mkdir -p "$TMP/imgs"
python3 - "$TMP/cams.json" 64 64 << 'EOF'
import json, sys
w, h = int(sys.argv[2]), int(sys.argv[3])
cams = [{"id": i, "img_name": f"view_{i:02d}", "width": w, "height": h, "position": [0.0, -0.5, -7.0 - 0.1 * i],
         "rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "fx": 60.0, "fy": 60.0} for i in range(9)]
json.dump(cams, open(sys.argv[1], "w"))
EOF
sed 's/"height": 64/"height": 48/g' "$TMP/cams.json" > "$TMP/cams_wide.json"
for i in 00 08; do
  "$FLEXGS" render "$TMP/s.ply" --orbit 9 --index "${i#0}" --width 64 --height 64 --out "$TMP/imgs/view_$i.png" \
    --background 1,1,1 > /dev/null 2>&1
done
"$FLEXGS" eval "$TMP/s.flexgs" --images "$TMP/imgs" --cameras "$TMP/cams.json" --ratios 0.05 \
  --methods full,gi-topk,random --out "$TMP/R3" > "$TMP/r3.txt" 2>&1
check "eval with images exits 0" test $? -eq 0
if [ -s "$TMP/R3/report.json" ]; then
  views=$(json "$TMP/R3/report.json" 'j["protocol"], len(j["views"]["cameras"]), j["views"]["cameras"][1]["name"]')
  check "images protocol, 2 test views ($views)" test "$views" = "('images', 2, 'view_08')"
  check "full vs images is finite" test "$(json "$TMP/R3/report.json" 'j["full"]["psnr"] is not None')" = True
  check "contact columns with images" test "$(json "$TMP/R3/report.json" '",".join(j["contact"]["columns"])')" \
    = "ground truth,full,5%"
fi

# Bad input: exit 1 and a message naming the problem, before any rendering.
expect_error "unknown method" "unknown method 'gi-topp'" "${EVAL[@]}" --methods gi-topp --out "$TMP/x"
expect_error "non-numeric ratio" "not a number" "${EVAL[@]}" --ratios 0.05,abc --out "$TMP/x"
expect_error "ratio above 1" "outside (0, 1\]" "${EVAL[@]}" --ratios 0.05,1.5 --out "$TMP/x"
expect_error "zero ratio" "outside (0, 1\]" "${EVAL[@]}" --ratios 0,0.1 --out "$TMP/x"
expect_error "repeated ratio" "repeated" "${EVAL[@]}" --ratios 0.1,0.1 --out "$TMP/x"
expect_error "missing images dir" "Directory does not exist" eval "$TMP/s.flexgs" --images "$TMP/none" \
  --cameras "$TMP/cams.json" --out "$TMP/x"
expect_error "images without cameras" "needs --cameras" eval "$TMP/s.flexgs" --images "$TMP/imgs" --out "$TMP/x"
expect_error "image/camera aspect mismatch" "aspect" eval "$TMP/s.flexgs" --images "$TMP/imgs" \
  --cameras "$TMP/cams_wide.json" --out "$TMP/x"
rm "$TMP/imgs/view_08.png"
expect_error "missing image" "no PNG image for camera 'view_08'" eval "$TMP/s.flexgs" --images "$TMP/imgs" \
  --cameras "$TMP/cams.json" --out "$TMP/x"
expect_error "plain PLY" "elasticize" eval "$TMP/s.ply" --orbit 1 --out "$TMP/x"
VIEWS=(eval "$TMP/s.flexgs" --width 32 --height 32 --out "$TMP/x" --views)
expect_error "views without a count" "--views 'sphere:': missing the view count" "${VIEWS[@]}" sphere:
expect_error "views count 0" "--views 'sphere:0': view count 0 is outside 1..100000" "${VIEWS[@]}" sphere:0
expect_error "views count -3" "--views 'sphere:-3': view count -3 is outside" "${VIEWS[@]}" sphere:-3
expect_error "views count abc" "--views 'sphere:abc': view count 'abc' is not a whole number" "${VIEWS[@]}" sphere:abc
expect_error "unknown view set" "--views 'ring:5': unknown view set 'ring'" "${VIEWS[@]}" ring:5
"$FLEXGS" eval "$TMP/s.flexgs" --views sphere:3 --orbit 2 --out "$TMP/x" > /dev/null 2> "$TMP/e.txt"
check "--views with --orbit fails" test $? -ne 0
check "--views with --orbit: message" grep -qE -- "--(views|orbit) excludes --(orbit|views)" "$TMP/e.txt"
check "no report for failed runs" test ! -e "$TMP/x/report.json"

checks_done

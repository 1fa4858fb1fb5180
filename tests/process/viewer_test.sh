#!/usr/bin/env bash
# flexgs-view against a real flexgs-server on loopback:
#   - headless: a camera script's frames show the scene after the first level, change
#     as levels arrive (same camera) and as the camera moves (same level);
#   - the real window under Xvfb (Mesa's software OpenGL), driven with xdotool: P writes
#     screenshots, a mouse drag changes the view, ] raises the budget (a new stream,
#     shown once it holds more), Esc quits with exit 0;
#   - bad input: unreachable server, unknown scene, a budget too small for the first
#     level, a bad script, no display: one clear line and the documented exit code.
#   viewer_test.sh FLEXGS FLEXGS_SERVER FLEXGS_VIEW
set -euo pipefail
FLEXGS=$1 SERVER=$2 VIEW=$3
source "$(dirname "$0")/lib.sh"
flexgs_tmpdir viewer

# Mean absolute difference of two PNGs (0..255) and the share of pixels of the first
# that are not the background (black): python3's zlib reads the 8-bit RGB PNGs WritePng
# makes, so the test needs no imaging library.
png_stats() {  # png_stats A [B] -> "nonblack_share [mean_abs_diff]"
  python3 - "$@" << 'PY'
import struct, sys, zlib
def read(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color == 2, "8-bit RGB expected"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, rows, prev, stride = zlib.decompress(idat), [], bytearray(w * 3), w * 3
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - 3] if i >= 3 else 0
            b = prev[i]
            c = prev[i - 3] if i >= 3 else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, rows
w, h, a = read(sys.argv[1])
lit = sum(1 for r in a for x in range(w) if r[3 * x] + r[3 * x + 1] + r[3 * x + 2] > 30)
out = [f"{lit / (w * h):.4f}"]
if len(sys.argv) > 2:
    w2, h2, b = read(sys.argv[2])
    assert (w, h) == (w2, h2)
    out.append(f"{sum(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)) / (w * h * 3):.3f}")
print(" ".join(out))
PY
}

mkdir -p "$WORK/scenes"
"$FLEXGS" generate --out "$WORK/s.ply" --count 20000 --sh-degree 1 > /dev/null
"$FLEXGS" elasticize "$WORK/s.ply" --out "$WORK/scenes/synth.flexgs" --orbit 8 --width 96 --height 96 > /dev/null
start_server server --host 127.0.0.1 --port 0 --scenes "$WORK/scenes" --metrics-port 0
ADDR=127.0.0.1:$PORT
COMMON=(--server "$ADDR" --scene synth --width 160 --height 120 --threads 2)

# --- 1. Headless: frames as levels land and as the camera moves. ------------------------
cat > "$WORK/path.txt" << 'EOF'
wait-level 0
frame first.png
wait-level last
frame last.png
compare on
frame previous.png
compare off
drag 150 0
frame turned.png
zoom 3
frame closer.png
EOF
"$VIEW" "${COMMON[@]}" --budget-ratio 0.15 --headless --script "$WORK/path.txt" --out "$WORK/frames" \
  > "$WORK/headless.log" 2>&1 || fail "headless run: $(tail -3 "$WORK/headless.log")"
for f in first last previous turned closer; do [[ -f $WORK/frames/$f.png ]] || fail "no $f.png"; done
read -r lit_first diff_levels <<< "$(png_stats "$WORK/frames/first.png" "$WORK/frames/last.png")"
read -r lit_last diff_turn <<< "$(png_stats "$WORK/frames/last.png" "$WORK/frames/turned.png")"
read -r _ diff_prev <<< "$(png_stats "$WORK/frames/last.png" "$WORK/frames/previous.png")"
read -r _ diff_zoom <<< "$(png_stats "$WORK/frames/turned.png" "$WORK/frames/closer.png")"
echo "headless: lit first $lit_first last $lit_last; mean |diff| levels $diff_levels," \
  "previous $diff_prev, turned $diff_turn, zoomed $diff_zoom"
python3 -c "import sys; sys.exit(0 if $lit_first > 0.02 else 1)" || fail "first level not visible ($lit_first lit)"
python3 -c "import sys; sys.exit(0 if $diff_levels > 0.5 else 1)" || fail "levels do not change the picture"
python3 -c "import sys; sys.exit(0 if $diff_prev > 0.1 else 1)" || fail "compare shows the same level"
python3 -c "import sys; sys.exit(0 if $diff_turn > 0.5 else 1)" || fail "turning the camera changes nothing"
python3 -c "import sys; sys.exit(0 if $diff_zoom > 0.5 else 1)" || fail "zooming changes nothing"
grep -q "level 16/16" "$WORK/headless.log" || fail "no 'level 16/16' progress line (1/5/10/15% and the stops between)"

# --- 2. Bad input. -------------------------------------------------------------------------
expect() {  # expect CODE PATTERN COMMAND...
  local code=$1 pattern=$2 rc=0
  shift 2
  timeout 60 "$@" > "$WORK/bad.out" 2> "$WORK/bad.err" || rc=$?
  [[ $rc == "$code" ]] || fail "'$*': exit $rc, want $code ($(cat "$WORK/bad.err"))"
  grep -q -- "$pattern" "$WORK/bad.err" || fail "'$*': stderr lacks '$pattern': $(cat "$WORK/bad.err")"
  (($(wc -l < "$WORK/bad.err") <= 2)) || fail "'$*': more than one error line: $(cat "$WORK/bad.err")"
}
echo "frame x.png" > "$WORK/early.txt"
printf 'wait-level 0\njump 3\n' > "$WORK/bad.txt"
expect 2 "NOT_FOUND" "$VIEW" "${COMMON[@]/synth/nope}" --budget-ratio 0.1 --headless --script "$WORK/path.txt" \
  --out "$WORK/bad"
expect 1 "does not cover the 160x120 window's framebuffer" "$VIEW" "${COMMON[@]}" --budget 200KiB --headless \
  --script "$WORK/path.txt" --out "$WORK/bad"
expect 2 "the smallest level (1% = 200 Gaussians) needs" "$VIEW" "${COMMON[@]}" --budget 616KiB --headless \
  --script "$WORK/path.txt" --out "$WORK/bad"
expect 1 "line 2: unknown command 'jump'" "$VIEW" "${COMMON[@]}" --budget-ratio 0.1 --headless \
  --script "$WORK/bad.txt" \
  --out "$WORK/bad"
expect 1 "no complete level to show yet" "$VIEW" "${COMMON[@]}" --budget-ratio 0.1 --headless \
  --script "$WORK/early.txt" \
  --out "$WORK/bad"
expect 1 "requires --script" "$VIEW" "${COMMON[@]}" --budget-ratio 0.1 --headless
expect 1 "must be a ratio in (0, 1]" "$VIEW" "${COMMON[@]}" --budget-ratio 0 --headless --script "$WORK/path.txt"
expect 1 "cannot open a display" env -u DISPLAY -u WAYLAND_DISPLAY "$VIEW" "${COMMON[@]}" --budget-ratio 0.1 \
  --out "$WORK/bad"
PORT2=$(free_port)
expect 2 "UNAVAILABLE\|DEADLINE" "$VIEW" --server "127.0.0.1:$PORT2" --scene synth --budget-ratio 0.1 \
  --give-up-after 2 --headless --script "$WORK/path.txt" --out "$WORK/bad"
echo "bad input: one clear line and the documented exit code each"

# --- 3. The window under Xvfb, driven with xdotool. -------------------------------------
if ! command -v Xvfb > /dev/null || ! command -v xdotool > /dev/null; then
  echo "SKIP window part: Xvfb or xdotool not installed (deploy/install-deps.sh)"
  echo "PASS"
  exit 0
fi
# Xvfb picks a free display itself and writes its number once it accepts clients.
Xvfb -displayfd 3 -screen 0 640x480x24 -nolisten tcp 3> "$WORK/display" > "$WORK/xvfb.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 $((100 * SCALE))); do [[ -s $WORK/display ]] && break; sleep 0.1; done
[[ -s $WORK/display ]] || fail "Xvfb did not start: $(cat "$WORK/xvfb.log")"
export DISPLAY=":$(head -1 "$WORK/display")"
# 400x300, so that the drag below (y = 260) runs clear of the overlay at the top left.
# Under AddressSanitizer (tests/sanitize_and_fuzz.sh) leak checking is off for the window
# only: Mesa's DRI driver is dlopen'ed by libGL and unloaded at exit, so what it keeps
# shows as leaks from an "<unknown module>" that no suppression can name. The headless
# runs above keep it on.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
  "$VIEW" --server "$ADDR" --scene synth --width 400 --height 300 --threads 2 --budget-ratio 0.15 \
  --out "$WORK/window" > "$WORK/window.log" 2>&1 &
VIEW_PID=$!
PIDS+=("$VIEW_PID")
win=""
for _ in $(seq 1 $((100 * SCALE))); do
  win=$(xdotool search --name '^flexgs-view$' 2> /dev/null | head -1 || true)
  [[ -n $win ]] && grep -q "first level shown" "$WORK/window.log" && break
  kill -0 "$VIEW_PID" 2> /dev/null || fail "flexgs-view exited: $(tail -3 "$WORK/window.log")"
  sleep 0.2
done
[[ -n $win ]] || fail "no flexgs-view window appeared"
grep -q "first level shown" "$WORK/window.log" || fail "the first level was not shown in time"
sleep 2  # let the last levels land and a full-resolution frame render
shot() {  # shot N: press P and wait for screenshot-00N.png
  xdotool key --window "$win" p
  for _ in $(seq 1 $((50 * SCALE))); do
    [[ -f $WORK/window/screenshot-00$1.png ]] && return 0
    sleep 0.1
  done
  fail "P did not write screenshot-00$1.png: $(tail -3 "$WORK/window.log")"
}
shot 0
# A left-button drag across the lower part of the window.
xdotool mousemove --window "$win" 100 260 mousedown 1
for x in 140 180 220 260; do xdotool mousemove --window "$win" $x 260; sleep 0.1; done
xdotool mouseup 1
sleep 1.5
shot 1
read -r lit_window diff_drag <<< "$(png_stats "$WORK/window/screenshot-000.png" "$WORK/window/screenshot-001.png")"
echo "window: screenshot lit $lit_window, mean |diff| after the drag $diff_drag"
python3 -c "import sys; sys.exit(0 if $lit_window > 0.02 else 1)" || fail "window screenshot shows no scene"
python3 -c "import sys; sys.exit(0 if $diff_drag > 0.5 else 1)" || fail "dragging did not move the view"
# ] raises the budget a step (15% -> 25%): the stream held is extended in place, up to
# the canonical stream's last level within 25% (0.15 x 2^(2/4) = 21.2%: 4242 Gaussians).
xdotool key --window "$win" bracketright
for _ in $(seq 1 $((100 * SCALE))); do
  grep -q "extended stream complete" "$WORK/window.log" && break
  sleep 0.1
done
grep -q "budget 25% of the scene: extending the stream held" "$WORK/window.log" ||
  fail "] did not raise the budget to 25%"
grep -q "extended stream complete: 4242 Gaussians held" "$WORK/window.log" ||
  fail "the stream was not extended to 25% (4242 Gaussians): $(tail -3 "$WORK/window.log")"
sleep 1
shot 2
read -r _ diff_budget <<< "$(png_stats "$WORK/window/screenshot-001.png" "$WORK/window/screenshot-002.png")"
echo "window: mean |diff| after raising the budget to 25% $diff_budget"
python3 -c "import sys; sys.exit(0 if $diff_budget > 0.1 else 1)" || fail "a larger budget changed nothing"
# The window may be gone before xdotool sends the key release (BadWindow): fine.
xdotool key --window "$win" Escape 2> /dev/null || true
rc=0
wait_exit "$VIEW_PID" $((20 * SCALE)) || rc=$?
((rc == 0)) || fail "flexgs-view did not exit 0 after Esc (exit $rc; 137: killed): $(tail -3 "$WORK/window.log")"
echo "PASS"

#!/usr/bin/env bash
# Hot reload under load, with the real binaries on loopback (no root, no GPU, ~10 s):
#   1. a model bundle replaced on disk while a rate-limited stream runs, then SIGHUP:
#      the running stream finishes on the old model (its last level is the old plan's,
#      byte for byte); new clients get the new digest and the new model's content; a
#      resume token of the old version is refused with FAILED_PRECONDITION;
#   2. a half-written replacement (truncated elastic.safetensors) moved in: rejected
#      with a logged reason, the previous version keeps serving, not retried;
#   3. --rescan-interval: a bundle copied in appears, a removed one goes (NOT_FOUND),
#      without any signal.
# The server killed mid-stream and restarted is client_process_test's part 5.
#   fault_reload_test.sh FLEXGS FLEXGS_SERVER FLEXGS_CLIENT STREAM_CLIENT
set -euo pipefail
FLEXGS=$1 SERVER=$2 CLIENT=$3 STREAM_CLIENT=$4
source "$(dirname "$0")/lib.sh"
flexgs_tmpdir fault-reload
# serve NAME EXTRA-FLAGS...: a server of $WORK/scenes on a free port, SERVING; sets PORT.
serve() {
  start_server "$1" --host 127.0.0.1 --port 0 --scenes "$WORK/scenes" --metrics-port 0 "${@:2}"
}
wait_log() {  # wait_log LOGFILE PATTERN [COUNT]: up to 30 s (x SCALE) for COUNT lines matching
  local want=${3:-1}
  for _ in $(seq 1 $((300 * SCALE))); do
    (( $(grep -c -- "$2" "$1" || true) >= want )) && return 0
    sleep 0.1
  done
  fail "no '$2' in $1 after $((30 * SCALE)) s"
}
fetch() {  # fetch OUTDIR EXTRA-FLAGS...: a lossless full-model stream, levels saved
  local out=$1
  shift
  "$CLIENT" --server "127.0.0.1:$PORT" --scene synth --budget-ratio 1.0 --encoding lossless --no-render --json \
    --quiet --save-levels --out "$WORK/$out" "$@"
}
digest_of() { json "$1/manifest.json" 'j["digest"]'; }

# Two versions of one scene: v1 served, v2 (another random scene) staged outside.
mkdir -p "$WORK/scenes"
for v in 1 2 3; do
  "$FLEXGS" generate --out "$WORK/s$v.ply" --count 30000 --sh-degree 0 --seed $v > /dev/null
done
GI=(--orbit 4 --width 64 --height 64)
"$FLEXGS" elasticize "$WORK/s1.ply" --out "$WORK/scenes/synth.flexgs" "${GI[@]}" > /dev/null
"$FLEXGS" elasticize "$WORK/s2.ply" --out "$WORK/v2.flexgs" "${GI[@]}" > /dev/null
V1=$(digest_of "$WORK/scenes/synth.flexgs") V2=$(digest_of "$WORK/v2.flexgs")
[[ $V1 != "$V2" ]] || fail "the two versions have the same digest"
# What a client must hold at the end, per version: the planner's last level.
"$FLEXGS" plan "$WORK/scenes/synth.flexgs" --budget-ratio 1.0 --export-levels "$WORK/plan1" > /dev/null
"$FLEXGS" plan "$WORK/v2.flexgs" --budget-ratio 1.0 --export-levels "$WORK/plan2" > /dev/null
LAST=$(( $(ls "$WORK/plan1" | grep -c '^level-.*\.ply$') - 1 ))

serve server --rescan-interval 0

# --- 1. Replaced while a stream runs. ----------------------------------------------
set +e
"$STREAM_CLIENT" --addr "127.0.0.1:$PORT" --scene synth --ratio 0.5 --stop-after 3 --token-out "$WORK/v1.token" \
  > /dev/null 2> "$WORK/token.err"
rc=$?
set -e
[[ $rc == 4 ]] || fail "stream-client --stop-after 3: exit $rc, want 4 (stopped early)"
# ~1.2 MB lossless at 1 Mbit/s: about 10 s, far longer than the swap below.
fetch old --max-bandwidth "$((1000 / SCALE))kbit" > /dev/null 2> "$WORK/old.err" &
CLIENT_PID=$!
PIDS+=("$CLIENT_PID")
wait_log "$WORK/server.log" "stream start: scene=synth budget=ratio=1"
sleep 0.5
kill -0 "$CLIENT_PID" 2> /dev/null || fail "the rate-limited client finished before the swap"
# The writer stages and exchanges atomically: replace in place, as an operator would.
"$FLEXGS" elasticize "$WORK/s2.ply" --out "$WORK/scenes/synth.flexgs" "${GI[@]}" > /dev/null
[[ $(digest_of "$WORK/scenes/synth.flexgs") == "$V2" ]] || fail "re-elasticized digest differs from v2's"
kill -HUP "$SERVER_PID"
wait_log "$WORK/server.log" "replaced scene 'synth'.*-> $V2"
kill -0 "$CLIENT_PID" 2> /dev/null || fail "the old stream ended before the swap was done"
fetch new 2> "$WORK/new.err" || fail "new stream after the swap"
[[ $(json "$WORK/new/stats.json" 'j["model_digest"]') == "$V2" ]] || fail "new stream: not the new digest"
cmp -s "$WORK/new/level-$LAST.ply" "$WORK/plan2/level-$LAST.ply" || fail "new stream: content is not v2's plan"
wait "$CLIENT_PID" || fail "the stream running during the swap failed (exit $?)"
CLIENT_PID=""
[[ $(json "$WORK/old/stats.json" 'j["model_digest"]') == "$V1" ]] || fail "old stream: digest changed mid-stream"
[[ $(json "$WORK/old/stats.json" 'j["retries"]') == 0 ]] || fail "old stream: needed a retry"
cmp -s "$WORK/old/level-$LAST.ply" "$WORK/plan1/level-$LAST.ply" || fail "old stream: final state is not v1's plan"
set +e
"$STREAM_CLIENT" --addr "127.0.0.1:$PORT" --scene synth --resume-token "$WORK/v1.token" --resume-from 3 \
  > "$WORK/resume.out" 2>&1
rc=$?
set -e
[[ $rc == 2 ]] && grep -q FAILED_PRECONDITION "$WORK/resume.out" ||
  fail "v1 resume token after the swap: exit $rc, want 2 FAILED_PRECONDITION: $(cat "$WORK/resume.out")"
echo "replaced under load: running stream finished on v1 (= v1 plan), new stream got v2 (= v2 plan)," \
     "v1 resume token FAILED_PRECONDITION"

# --- 2. A half-written replacement is rejected; v2 keeps serving. --------------------
"$FLEXGS" elasticize "$WORK/s3.ply" --out "$WORK/v3.flexgs" "${GI[@]}" > /dev/null
truncate -s 1000 "$WORK/v3.flexgs/elastic.safetensors"
rm -rf "$WORK/scenes/synth.flexgs"
mv "$WORK/v3.flexgs" "$WORK/scenes/synth.flexgs"
kill -HUP "$SERVER_PID"
wait_log "$WORK/server.log" "scene 'synth': .* did not load; still serving digest $V2"
grep "did not load" "$WORK/server.log" | grep -q "elastic.safetensors" || fail "the reason does not name the file"
fetch still 2> "$WORK/still.err" || fail "stream after the broken replacement"
[[ $(json "$WORK/still/stats.json" 'j["model_digest"]') == "$V2" ]] || fail "broken replacement: not serving v2"
cmp -s "$WORK/still/level-$LAST.ply" "$WORK/plan2/level-$LAST.ply" || fail "broken replacement: content not v2's"
kill -HUP "$SERVER_PID"
wait_log "$WORK/server.log" "SIGHUP: rescanning" 3
sleep 0.5
(( $(grep -c "did not load" "$WORK/server.log") == 1 )) || fail "the same broken files were retried"
echo "half-written replacement: rejected, v2 still served; logged once:"
grep "did not load" "$WORK/server.log" | sed 's/^.*\] //' | cut -c1-300
stop_server KILL

# --- 3. Periodic rescans: added and removed without a signal. -------------------------
rm -rf "$WORK/scenes/synth.flexgs"
serve periodic --rescan-interval 0.5
# Copy next to the directory, then rename in: what the writer itself does.
cp -r "$WORK/v2.flexgs" "$WORK/.staged"
mv "$WORK/.staged" "$WORK/scenes/synth.flexgs"
wait_log "$WORK/periodic.log" "loaded scene 'synth'.*digest $V2"
fetch periodic 2> "$WORK/periodic.err" || fail "stream of the scene added by a periodic rescan"
[[ $(json "$WORK/periodic/stats.json" 'j["model_digest"]') == "$V2" ]] || fail "periodic: wrong digest"
rm -rf "$WORK/scenes/synth.flexgs"
wait_log "$WORK/periodic.log" "removed scene 'synth'"
set +e
fetch gone > /dev/null 2> "$WORK/gone.err"
rc=$?
set -e
[[ $rc == 2 ]] && grep -q NOT_FOUND "$WORK/gone.err" || fail "removed scene: exit $rc, want 2 NOT_FOUND"
echo "periodic rescan: scene added, streamed, removed (NOT_FOUND) without a signal"
echo "PASS"

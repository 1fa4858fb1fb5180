#!/usr/bin/env bash
# A client that opens many streams and stops reading them (flexgs-loadgen
# --stuck-readers), against a server with small limits (no root, no GPU, ~15 s):
#   - at most --max-streams are admitted, the rest get RESOURCE_EXHAUSTED at once;
#   - payload bytes in flight stay under --max-inflight-bytes (Prometheus gauge);
#   - the stall watchdog cancels every stuck stream after --stall-timeout (the
#     counter rises by exactly their number, they end CANCELLED);
#   - meanwhile a normal client gets through (retrying RESOURCE_EXHAUSTED as the
#     server's hint says) and ends in the same state as an undisturbed run;
#   - afterwards no stream is active and nothing is in flight.
#   fault_limits_test.sh FLEXGS FLEXGS_SERVER FLEXGS_CLIENT FLEXGS_LOADGEN
set -euo pipefail
FLEXGS=$1 SERVER=$2 CLIENT=$3 LOADGEN=$4
source "$(dirname "$0")/lib.sh"
MAX_STREAMS=4 STUCK=10 STALL_S=$((5 * SCALE)) CAP=$((1 << 20))
flexgs_tmpdir fault-limits

# 60k Gaussians at SH 3, lossless at ratio 1: ~14 MB per stream, far more than the
# 64 KiB window a stuck reader grants.
mkdir -p "$WORK/scenes"
"$FLEXGS" generate --out "$WORK/big.ply" --count 60000 --sh-degree 3 --seed 5 > /dev/null
"$FLEXGS" elasticize "$WORK/big.ply" --out "$WORK/scenes/big.flexgs" --orbit 4 --width 64 --height 64 > /dev/null
METRICS_PORT=$(free_port)
start_server server --host 127.0.0.1 --port 0 --scenes "$WORK/scenes" --metrics-host 127.0.0.1 \
  --metrics-port "$METRICS_PORT" --max-streams $MAX_STREAMS --max-inflight-bytes $CAP --stall-timeout $STALL_S \
  --rescan-interval 0
NORMAL=(--server "127.0.0.1:$PORT" --scene big --budget-ratio 0.2 --no-render --json --quiet --give-up-after 60)
"$CLIENT" "${NORMAL[@]}" --out "$WORK/reference" 2> "$WORK/reference.err" || fail "reference stream"
WANT=$(json "$WORK/reference/stats.json" 'j["final_state_sha256"]')

# Ten streams at once that read their header and then nothing for STALL_S + 5 s.
"$LOADGEN" --target "127.0.0.1:$PORT" --scene big --concurrency $STUCK --total $STUCK --stuck-readers 1 \
  --stuck-seconds $((STALL_S + 5)) --budgets ratio:1 --encoding lossless --timeout-s 60 --progress-s 0 --json \
  > "$WORK/loadgen.json" 2> "$WORK/loadgen.err" &
LOADGEN_PID=$!
PIDS+=("$LOADGEN_PID")
for _ in $(seq 1 $((100 * SCALE))); do
  (( $(metric 'flexgs_streams_rejected_total\{reason="max_streams"\}') == STUCK - MAX_STREAMS )) && break
  sleep 0.1
done
active=$(metric flexgs_streams_active)
rejected=$(metric 'flexgs_streams_rejected_total\{reason="max_streams"\}')
[[ $active == "$MAX_STREAMS" && $rejected == $((STUCK - MAX_STREAMS)) ]] ||
  fail "admitted $active (want $MAX_STREAMS), rejected $rejected (want $((STUCK - MAX_STREAMS)))"
# A normal client meanwhile: refused while the slots are held (STALL_S is ample time
# for it to ask), admitted once the watchdog frees them, same final state.
"$CLIENT" "${NORMAL[@]}" --out "$WORK/normal" 2> "$WORK/normal.err" &
NORMAL_PID=$!
PIDS+=("$NORMAL_PID")
peak=0
for _ in $(seq 1 10); do
  b=$(metric flexgs_stream_bytes_in_flight)
  (( b > peak )) && peak=$b
  sleep 0.1
done
(( peak > 0 && peak <= CAP )) || fail "bytes in flight peaked at $peak (cap $CAP)"
echo "stuck readers: $active admitted, $rejected RESOURCE_EXHAUSTED, bytes in flight <= $peak (cap $CAP)"

wait "$NORMAL_PID" || fail "normal client during the stuck streams"
[[ $(json "$WORK/normal/stats.json" 'j["final_state_sha256"]') == "$WANT" ]] ||
  fail "normal client: final state differs"
retries=$(json "$WORK/normal/stats.json" 'j["retries"]')
(( retries >= 1 )) || fail "the normal client was never refused: the stuck streams did not hold the slots"
grep -q "at its limit of $MAX_STREAMS concurrent streams" "$WORK/normal.err" ||
  fail "normal client: no RESOURCE_EXHAUSTED seen"
echo "normal client: refused $retries time(s) while the slots were held, then completed; identical final state"

set +e
wait "$LOADGEN_PID"
rc=$?
set -e
LOADGEN_PID=""
[[ $rc == 2 ]] || fail "loadgen exit $rc, want 2 (the refused streams count as failed)"
read -r stuck cancelled exhausted <<< "$(json "$WORK/loadgen.json" \
  '"%d %d %d" % (j["counts"]["stuck"], j["counts"]["stuck_by_code"].get("CANCELLED", 0),
                 j["counts"]["failed_by_code"].get("RESOURCE_EXHAUSTED", 0))')"
[[ $stuck == "$MAX_STREAMS" && $cancelled == "$MAX_STREAMS" && $exhausted == $((STUCK - MAX_STREAMS)) ]] ||
  fail "loadgen: stuck $stuck (CANCELLED $cancelled), RESOURCE_EXHAUSTED $exhausted:" \
    "$(json "$WORK/loadgen.json" 'j["counts"]')"
stalls=$(metric flexgs_stream_stalls_cancelled_total)
[[ $stalls == "$MAX_STREAMS" ]] || fail "stall watchdog cancelled $stalls streams, want $MAX_STREAMS"
for _ in $(seq 1 $((50 * SCALE))); do
  (( $(metric flexgs_streams_active) == 0 )) && break
  sleep 0.1
done
[[ $(metric flexgs_streams_active) == 0 && $(metric flexgs_stream_bytes_in_flight) == 0 ]] ||
  fail "after the run: $(metric flexgs_streams_active) active, $(metric flexgs_stream_bytes_in_flight) bytes in flight"
grep -q "stream stalled: scene=big" "$WORK/server.log" || fail "no stall logged"
echo "watchdog: $stalls stuck streams cancelled after ${STALL_S} s (CANCELLED at the client);" \
  "0 active, 0 bytes in flight"
echo "PASS"

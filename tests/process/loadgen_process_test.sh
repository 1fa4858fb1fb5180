#!/usr/bin/env bash
# flexgs-loadgen against the real flexgs-server: 64 verified streams with a budget mix
# (JSON counts and ordered percentiles), deliberate cancellations with slow readers
# (exit 0), --duration and the text report, a closed port (exit 2, UNAVAILABLE
# counted), bad flags (exit 1), and a client at its per-client cap never refused.
#   loadgen_process_test.sh FLEXGS FLEXGS_SERVER FLEXGS_LOADGEN
set -euo pipefail
FLEXGS=$1 SERVER=$2 LOADGEN=$3
source "$(dirname "$0")/lib.sh"
flexgs_tmpdir loadgen-process

# A small scene keeps the run short on two slow cores: streams are a few hundred KB.
mkdir -p "$WORK/scenes"
"$FLEXGS" generate --out "$WORK/synth.ply" --count 20000 --sh-degree 3 > /dev/null
"$FLEXGS" elasticize "$WORK/synth.ply" --out "$WORK/scenes/synth.flexgs" --orbit 4 --width 64 --height 64 > /dev/null

start_server server --host 127.0.0.1 --port 0 --scenes "$WORK/scenes" --metrics-port 0 --max-streams 256
ADDR=127.0.0.1:$PORT
echo "server SERVING on $ADDR"

# 1. 64 streams, 16 at a time, four budget kinds (one weighted): all complete and decode.
set +e
"$LOADGEN" --target "$ADDR" --scene synth --concurrency 16 --total 64 \
  --budgets ratio:0.05,ratio:0.15,bytes:2MiB,gaussians:2000@2 --json --progress-s 0 > "$WORK/mix.json"
rc=$?
set -e
[[ $rc == 0 ]] || fail "mixed budgets: exit $rc, want 0: $(cat "$WORK/mix.json")"
check_report "$WORK/mix.json" \
  'r["counts"]["started"] == 64 and r["counts"]["completed"] == 64' \
  'r["counts"]["failed"] == 0 and r["counts"]["failed_by_code"] == {} and r["counts"]["verification_failures"] == 0' \
  'r["counts"]["cancelled"] == 0 and r["verify"] is True' \
  'ordered(r["latency_ms"]["first_chunk"]) and ordered(r["latency_ms"]["completion"])' \
  'len(r["latency_ms"]["level_end"]) >= 2 and all(ordered(l) for l in r["latency_ms"]["level_end"])' \
  'r["latency_ms"]["level_end"][0]["n"] == 64' \
  'r["latency_ms"]["first_chunk"]["p50"] <= r["latency_ms"]["completion"]["p50"]' \
  'r["throughput"]["streams_per_s"] > 0 and r["throughput"]["mb_per_s"] > 0 and r["throughput"]["payload_bytes"] > 0' \
  'r["channels"]["fast"] == 1 and r["exit_code"] == 0'
echo "mixed budgets: 64/64 completed and verified"

# 2. Half the streams cancelled at a random message, a quarter reading at 16 Mbit,
#    lossless: cancellations are counted, not failures, so exit 0.
set +e
"$LOADGEN" --target "$ADDR" --scene synth,synth --concurrency 8 --total 32 --budgets ratio:0.15,bytes:2MiB \
  --cancel-fraction 0.5 --slow-readers 0.25 --slow-read-rate 16Mbit --encoding lossless --seed 7 --json \
  --progress-s 0 > "$WORK/cancel.json"
rc=$?
set -e
[[ $rc == 0 ]] || fail "cancel run: exit $rc, want 0: $(cat "$WORK/cancel.json")"
check_report "$WORK/cancel.json" \
  'r["counts"]["started"] == 32 and r["counts"]["cancelled"] > 0' \
  'r["counts"]["completed"] + r["counts"]["cancelled"] == 32 and r["counts"]["failed"] == 0' \
  'r["counts"]["verification_failures"] == 0 and r["counts"]["slow_readers"] > 0' \
  'r["channels"]["slow"] >= 1 and "latency_ms_slow_readers" in r'
echo "cancellations: $(python3 -c 'import json, sys; c = json.load(open(sys.argv[1]))["counts"]
print(c["cancelled"], "cancelled,", c["completed"], "completed")' "$WORK/cancel.json")"

# 3. --duration, --no-verify and the text report.
set +e
"$LOADGEN" --target "$ADDR" --scene synth --concurrency 4 --duration 1 --no-verify --progress-s 0 > "$WORK/text.out"
rc=$?
set -e
[[ $rc == 0 ]] || fail "duration run: exit $rc: $(cat "$WORK/text.out")"
grep -q "verify off" "$WORK/text.out" || fail "text report: no 'verify off': $(cat "$WORK/text.out")"
grep -Eq "^streams +started [1-9][0-9]* +completed [1-9]" "$WORK/text.out" ||
  fail "text report counts: $(cat "$WORK/text.out")"
grep -q "first chunk (header)" "$WORK/text.out" || fail "text report latency table: $(cat "$WORK/text.out")"
echo "duration + text report OK"

# 4. Nothing listening: every stream fails with UNAVAILABLE, counted; exit 2.
CLOSED=$(free_port)
set +e
"$LOADGEN" --target "127.0.0.1:$CLOSED" --scene synth --concurrency 4 --total 8 --connect-timeout-s 2 --json \
  --progress-s 0 > "$WORK/closed.json" 2> "$WORK/closed.err"
rc=$?
set -e
[[ $rc == 2 ]] || fail "closed port: exit $rc, want 2: $(cat "$WORK/closed.json" "$WORK/closed.err")"
check_report "$WORK/closed.json" \
  'r["counts"]["started"] == 8 and r["counts"]["completed"] == 0' \
  'r["counts"]["failed_by_code"].get("UNAVAILABLE", 0) == 8 and r["counts"]["failed"] == 8' \
  'r["latency_ms"]["first_chunk"]["n"] == 0 and r["latency_ms"]["first_chunk"]["p50"] is None'
echo "closed port: exit 2, UNAVAILABLE counted"

# 5. Bad flags: exit 1 with a message, before connecting anywhere.
bad() {
  set +e
  "$LOADGEN" "$@" > "$WORK/bad.out" 2> "$WORK/bad.err"
  local rc=$?
  set -e
  [[ $rc == 1 ]] || fail "flags '$*': exit $rc, want 1"
  grep -q "error" "$WORK/bad.err" || fail "flags '$*': no error message: $(cat "$WORK/bad.err")"
}
bad --target "$ADDR" --scene synth --total 4 --no-such-flag
bad --target "$ADDR" --scene synth --total 4 --concurrency 0
bad --target "$ADDR" --scene synth --total 4 --budgets ratio:1.5
bad --target "$ADDR" --scene synth --total 4 --budgets ratio:0.1@0
bad --target "$ADDR" --scene synth --total 4 --duration 3
bad --target "$ADDR" --scene synth
bad --target "$ADDR" --total 4
bad --target "$ADDR" --scene synth --total 4 --slow-readers 0.5 --slow-read-rate fast
bad --target "$ADDR" --scene synth --total 4 --encoding zip
bad --target "$ADDR" --scene synth --total 4 --cancel-fraction 2
echo "bad flags: exit 1"

# 6. A client at exactly its per-client cap that starts each stream as another ends is
#    never refused: the server frees the slot before the client can see the status
#    (it used to free it after, and ~2.5% of such streams got RESOURCE_EXHAUSTED).
stop_server
start_server server --host 127.0.0.1 --port 0 --scenes "$WORK/scenes" --metrics-port 0 --max-streams-per-peer 4
set +e
"$LOADGEN" --target "127.0.0.1:$PORT" --scene synth --concurrency 4 --channels 1 --total 200 --no-verify --json \
  --progress-s 0 > "$WORK/cap.json"
rc=$?
set -e
[[ $rc == 0 ]] || fail "at the per-client cap: exit $rc, want 0: $(cat "$WORK/cap.json")"
check_report "$WORK/cap.json" 'r["counts"]["completed"] == 200 and r["counts"]["failed"] == 0'
echo "at the per-client cap: 200/200 completed"

stop_server
echo "PASS"

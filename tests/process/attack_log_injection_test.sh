#!/usr/bin/env bash
# Attack 3: log injection and amplification through client strings (issue
# "Hardening, second round", 3). A raw HTTP/2 client sends StreamScene and GetScene
# requests whose scene_id carries a newline and a complete fake log line, ESC and
# NUL bytes; then floods the server with rejected requests. Asserted:
#   - no forged "SERVING 0 scene(s)" line, no ESC or NUL byte in the log; the id
#     appears escaped ("\n", "\x1b", "\x00");
#   - 300 rejected requests with 60 KB ids add less than 300 x 1 KiB to the log
#     (each id is cut to a short escaped prefix with its length, and repeated
#     rejection lines are rate-limited with a count of the suppressed ones);
#   - a normal client is served during the flood and its stream is logged.
#   attack_log_injection_test.sh FLEXGS FLEXGS_SERVER FLEXGS_CLIENT
FLEXGS=$1 SERVER=$2 CLIENT=$3
source "$(dirname "$0")/attack_common.sh"

make_synth_scene
serve server --scenes "$WORK/scenes"
RSS0=$(rss_mib "$SERVER_PID")
LOG=$WORK/server.log

python3 - "$PORT" > "$WORK/inject.json" 2> "$WORK/inject.err" << 'EOF'
import json, sys
from h2_raw import H2Conn, stream_request, grpc_message, pb_bytes
c = H2Conn("127.0.0.1", int(sys.argv[1]), timeout=30)
evil = b"\x1b[2J\x00\x07\nnope\n[2030-01-01 00:00:00.000] [flexgs-server] [info] SERVING 0 scene(s)\n\x1b]0;pwned\x07"
out = {}
s = c.call("StreamScene", grpc_message(stream_request(evil)), timeout=20)
out["stream"] = [s.grpc_status, s.grpc_message]
s = c.call("GetScene", grpc_message(pb_bytes(1, evil)), timeout=20)
out["get"] = [s.grpc_status, s.grpc_message]
print(json.dumps(out))
EOF
echo "injection: $(cat "$WORK/inject.json")"
sleep 0.5
if grep -qE '^\[[^]]*\] \[flexgs-server\] \[info\] SERVING 0 scene' "$LOG" || grep -q '^\[2030-01-01' "$LOG"; then
  fail "a forged SERVING line is in the log: $(grep -n 'SERVING 0' "$LOG" | cut -c1-200)"
fi
python3 - "$LOG" << 'EOF' || fail "ESC or NUL bytes reached the log"
import sys
data = open(sys.argv[1], "rb").read()
sys.exit(1 if b"\x1b[2J" in data or b"\x00" in data or b"\x07" in data else 0)
EOF
grep -qF 'nope\n[2030-01-01' "$LOG" || fail "the scene id is not logged escaped"
grep -qF '\x1b[2J\x00\x07\nnope' "$LOG" || fail "ESC, NUL, BEL not escaped in the log"
# The client sees NOT_FOUND, with the id escaped in the message too.
[[ $(json "$WORK/inject.json" "j['stream'][0]") == 5 && $(json "$WORK/inject.json" "j['get'][0]") == 5 ]] ||
  fail "status codes: $(cat "$WORK/inject.json")"
json "$WORK/inject.json" "j['get'][1]" | grep -qF 'nope\n[2030' || fail "status message not escaped"

# Amplification: 300 rejected requests with 60 KB scene ids, a normal client meanwhile.
BEFORE=$(stat -c %s "$LOG")
python3 - "$PORT" > "$WORK/flood.json" 2> "$WORK/flood.err" << 'EOF' &
import json, sys
from h2_raw import H2Conn, stream_request, grpc_message
c = H2Conn("127.0.0.1", int(sys.argv[1]), timeout=60)
codes = {}
for i in range(300):
    sid, _ = c.open_stream("StreamScene", grpc_message(stream_request(b"\n" * 10 + b"A" * 60000 + str(i).encode())))
    if i % 20 == 19:
        c.wait(lambda: all(s.done for s in c.streams.values()), 30)
c.wait(lambda: all(s.done for s in c.streams.values()), 30)
for s in c.streams.values():
    codes[s.grpc_status] = codes.get(s.grpc_status, 0) + 1
print(json.dumps({"codes": codes}))
EOF
FLOOD=$!
PIDS+=("$FLOOD")
t=$(normal_client normal synth)
wait "$FLOOD" || fatal "flood client failed: $(tail -5 "$WORK/flood.err")"
sleep 0.5
AFTER=$(stat -c %s "$LOG")
GROWTH=$((AFTER - BEFORE))
echo "flood: $(cat "$WORK/flood.json"); log grew by $GROWTH bytes for 300 rejected 60 KB requests" \
  "($((GROWTH / 300)) B each); normal client served in ${t} s"
[[ $(json "$WORK/flood.json" "sum(j['codes'].values())") == 300 ]] || fail "not every flood request was answered"
# The next rejection line written after the flood reports how many were left out.
sleep 1
python3 - "$PORT" << 'EOF'
import sys
from h2_raw import H2Conn, stream_request, grpc_message
H2Conn("127.0.0.1", int(sys.argv[1]), timeout=30).call(
    "StreamScene", grpc_message(stream_request("no-such")), timeout=20)
EOF
sleep 0.5
(( GROWTH < 300 * 1024 )) || fail "log grew by $GROWTH bytes"
grep -q "similar lines suppressed" "$LOG" || fail "no count of suppressed rejection lines"
# The server writes its "stream end" line in OnDone, after the client has its status:
# under a sanitizer and a loaded machine that can come later than the sleeps above.
logged=0
for _ in $(seq 1 $((100 * SCALE))); do
  grep -q "stream end: scene=synth .*status=OK" "$LOG" && { logged=1; break; }
  sleep 0.1
done
[[ $logged == 1 ]] ||
  fail "the normal client's stream was not logged as OK: $(grep 'stream end: scene=synth' "$LOG" | head -3)"
awk 'length($0) > 2048 {bad = 1} END {exit bad}' "$LOG" || fail "a log line is longer than 2 KiB"
RSS1=$(rss_mib "$SERVER_PID")
rss_bound $((RSS1 - RSS0)) 32 "the server under attack"
pass

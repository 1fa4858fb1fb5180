#!/usr/bin/env bash
# Attack 6: one client takes every stream slot (issue "Hardening, second round", 6).
# With the default limits (--max-streams 256, --max-streams-per-peer 64), a raw HTTP/2
# client opens 256 StreamScene calls that never read (a zero flow-control window),
# over 4 connections:
#   a) from 127.0.0.2 without authentication: 64 admitted, 192 refused at once with
#      RESOURCE_EXHAUSTED and flexgs-retry-after-ms (reason="peer_limit"); a normal
#      client from 127.0.0.1 is served at once (no retry), well before the stall
#      watchdog would free anything;
#   b) with bearer tokens, from the same address as the normal client but with
#      another token: the cap is per (address, token), so the normal client is
#      served at once and the hog still gets only 64.
#   attack_slot_hogging_test.sh FLEXGS FLEXGS_SERVER FLEXGS_CLIENT
FLEXGS=$1 SERVER=$2 CLIENT=$3
source "$(dirname "$0")/attack_common.sh"
need_second_loopback
PER_PEER=64 HOG=256

make_synth_scene

# hog ADDR SOURCE [TOKEN]: holds HOG calls until "$WORK/release" exists; writes hog.json
# once every call is either refused or still open, then waits.
hog() {
  rm -f "$WORK/release" "$WORK/hog.json"
  python3 - "$PORT" "$1" "$HOG" "$WORK" "$SCALE" "${2:-}" > "$WORK/hog.out" 2> "$WORK/hog.err" << 'EOF' &
import json, os, sys, time
from h2_raw import H2Conn, stream_request, grpc_message
port, source, n, work, scale, token = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]),
                                       sys.argv[6])
meta = [("authorization", "Bearer " + token)] if token else []
conns = [H2Conn("127.0.0.1", port, source=source, window=0, read_data=False, timeout=30) for _ in range(4)]
for c in conns:
    c.wait(lambda: c.server_settings, 10)
    c.pump(0.1)
body = grpc_message(stream_request("synth", ratio=1.0))
for i in range(n):
    conns[i % 4].open_stream("StreamScene", body, metadata=meta)
for c in conns:
    c.pump(0.01)
deadline = time.monotonic() + 20 * scale
refused = lambda: sum(s.grpc_status == 8 for c in conns for s in c.streams.values())
while time.monotonic() < deadline and refused() < n - 64:
    for c in conns:
        c.pump(0.01)
for c in conns:
    c.pump(0.2)
streams = [s for c in conns for s in c.streams.values()]
codes = {}
for s in streams:
    key = "open" if not s.done else str(s.grpc_status if s.grpc_status is not None else "rst%s" % s.rst)
    codes[key] = codes.get(key, 0) + 1
msgs = sorted({s.grpc_message for s in streams if s.grpc_status == 8})
retry = sorted({s.field("flexgs-retry-after-ms") for s in streams if s.grpc_status == 8})
with open(os.path.join(work, "hog.json.tmp"), "w") as f:
    json.dump({"codes": codes, "messages": msgs, "retry_after_ms": retry}, f)
os.rename(os.path.join(work, "hog.json.tmp"), os.path.join(work, "hog.json"))
while not os.path.exists(os.path.join(work, "release")):
    for c in conns:
        c.pump(0.05)
for c in conns:
    c.close()
EOF
  HOG_PID=$!
  PIDS+=("$HOG_PID")
  for _ in $(seq 1 $((600 * SCALE))); do
    [[ -f $WORK/hog.json ]] && return 0
    kill -0 "$HOG_PID" 2> /dev/null || fatal "hog died: $(tail -5 "$WORK/hog.err")"
    sleep 0.05
  done
  fatal "hog did not settle"
}
check_hog() {  # check_hog NAME
  echo "$1: hog's calls: $(cat "$WORK/hog.json")"
  local open refused
  read -r open refused <<< "$(json "$WORK/hog.json" "'%d %d' % (j['codes'].get('open', 0), j['codes'].get('8', 0))")"
  [[ $open == "$PER_PEER" ]] || fail "$1: $open of the hog's calls admitted, want $PER_PEER"
  [[ $refused == $((HOG - PER_PEER)) ]] || fail "$1: $refused refused, want $((HOG - PER_PEER))"
  grep -q "too many concurrent streams from this client" "$WORK/hog.json" || fail "$1: per-peer refusal message"
  grep -q '"1000"' "$WORK/hog.json" || fail "$1: no flexgs-retry-after-ms on the refusals"
}
normal_no_retry() {  # normal_no_retry NAME ARGS...: served at once, no RESOURCE_EXHAUSTED seen
  local name=$1
  shift
  local t
  t=$(normal_client "$name" synth "$@")
  local retries
  retries=$(json "$WORK/$name/stats.json" 'j["retries"]')
  echo "$name: normal client served in ${t} s after $retries retries while the hog held its slots"
  [[ $retries == 0 ]] || fail "$name: the normal client had to retry"
  (( t <= 10 * SCALE )) || fail "$name: the normal client took $t s"
}

# a) no authentication, the hog on 127.0.0.2
serve plain --scenes "$WORK/scenes"
RSS0=$(rss_mib "$SERVER_PID")
hog 127.0.0.2
active=$(metric flexgs_streams_active)
[[ $active == "$PER_PEER" ]] || fail "a: $active streams active, want $PER_PEER"
check_hog a
normal_no_retry a_normal
(( $(metric 'flexgs_streams_rejected_total\{reason="peer_limit"\}') == HOG - PER_PEER )) || fail "a: peer_limit count"
RSS1=$(rss_mib "$SERVER_PID")
rss_bound $((RSS1 - RSS0)) 64 "a: the server holding the hog's streams"
echo "a: RSS $RSS0 -> $RSS1 MiB"
touch "$WORK/release"
wait "$HOG_PID" || true
kill -TERM "$SERVER_PID"

# b) tokens: the hog and the normal client share 127.0.0.1, with different tokens
TOKEN_HOG=tok-hog-4f1c9a7e2b6d8035 TOKEN_OK=tok-ok-9e2d7b4c1a8f6053
printf '%s *\n%s *\n' "$TOKEN_HOG" "$TOKEN_OK" > "$WORK/tokens.txt"
printf '%s\n' "$TOKEN_OK" > "$WORK/ok.token"
serve auth --scenes "$WORK/scenes" --tokens-file "$WORK/tokens.txt"
hog 127.0.0.1 "$TOKEN_HOG"
check_hog b
normal_no_retry b_normal --token-file "$WORK/ok.token"
touch "$WORK/release"
wait "$HOG_PID" || true
pass

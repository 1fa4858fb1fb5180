#!/usr/bin/env bash
# Attack 4: long scene ids (issue "Hardening, second round", 4). Ids above ~8 KB used
# to be echoed whole in the status message, so C++ clients failed with "received
# initial metadata size exceeds limit" (RESOURCE_EXHAUSTED) instead of NOT_FOUND.
# Asserted, with a raw HTTP/2 client and with flexgs-client:
#   - scene_id over 256 bytes (GetScene and StreamScene; 9 KB and 60 KB) and a
#     resume_token over 2048 bytes: INVALID_ARGUMENT naming the limit, with a status
#     message under 512 bytes that shows only an escaped prefix and the length;
#   - a 256-byte unknown id: NOT_FOUND with a short message;
#   - flexgs-client with a 9000-byte id exits 2 with INVALID_ARGUMENT;
#   - a normal client is served meanwhile; RSS stays flat.
#   attack_long_ids_test.sh FLEXGS FLEXGS_SERVER FLEXGS_CLIENT
FLEXGS=$1 SERVER=$2 CLIENT=$3
source "$(dirname "$0")/attack_common.sh"

make_synth_scene
serve server --scenes "$WORK/scenes"
RSS0=$(rss_mib "$SERVER_PID")

python3 - "$PORT" > "$WORK/long.json" 2> "$WORK/long.err" << 'EOF'
import json, sys
from h2_raw import H2Conn, stream_request, grpc_message, pb_bytes, pb_double
c = H2Conn("127.0.0.1", int(sys.argv[1]), timeout=30)
out = {}
for n in (256, 257, 9000, 60000):
    scene = b"\x1b" + b"y" * (n - 1)
    for method, body in (("GetScene", pb_bytes(1, scene)), ("StreamScene", stream_request(scene))):
        s = c.call(method, grpc_message(body), timeout=20)
        out[f"{method}_{n}"] = [s.grpc_status, s.grpc_message]
token = b"t" * 2049
s = c.call("StreamScene", grpc_message(pb_bytes(1, "synth") + pb_double(3, 0.5) + pb_bytes(9, token)), timeout=20)
out["StreamScene_token_2049"] = [s.grpc_status, s.grpc_message]
print(json.dumps(out))
EOF
python3 - "$WORK/long.json" << 'EOF' || fail "long ids: see above"
import json, sys
j = json.load(open(sys.argv[1]))
bad = False
for key, (code, msg) in sorted(j.items()):
    n = key.rsplit("_", 1)[1]
    want = 5 if n == "256" else 3  # NOT_FOUND at the limit, INVALID_ARGUMENT above it
    ok = code == want and msg is not None and len(msg.encode()) < 512 and "\x1b" not in msg
    if want == 3:
        ok = ok and ("at most 256 bytes" in msg or "at most 2048 bytes" in msg) and f"({n} bytes)" in msg
    print(f"{key}: code {code}, message {len(msg or '')} B: {(msg or '')[:100]!r}{'' if ok else '  <-- WRONG'}")
    bad |= not ok
sys.exit(1 if bad else 0)
EOF

# The project's own C++ client with a 9000-byte id: INVALID_ARGUMENT, not a metadata error.
set +e
"$CLIENT" --server "127.0.0.1:$PORT" --scene "$(head -c 9000 /dev/zero | tr '\0' z)" --budget-ratio 0.3 --no-render \
  --quiet --give-up-after 10 --out "$WORK/longclient" > /dev/null 2> "$WORK/longclient.err"
rc=$?
set -e
echo "flexgs-client, 9000-byte id: exit $rc: $(head -c 300 "$WORK/longclient.err")"
[[ $rc == 2 ]] || fail "flexgs-client exit $rc, want 2"
grep -q INVALID_ARGUMENT "$WORK/longclient.err" || fail "flexgs-client did not get INVALID_ARGUMENT"
grep -q "metadata size exceeds" "$WORK/longclient.err" && fail "flexgs-client hit the metadata size limit"

t=$(normal_client normal synth)
RSS1=$(rss_mib "$SERVER_PID")
rss_bound $((RSS1 - RSS0)) 32 "the server under attack"
echo "normal client served in ${t} s; RSS $RSS0 -> $RSS1 MiB"
pass

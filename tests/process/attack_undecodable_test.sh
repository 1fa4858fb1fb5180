#!/usr/bin/env bash
# Attack 5: undecodable requests (issue "Hardening, second round", 5). They used to
# end in UNIMPLEMENTED with an empty message and were counted nowhere. A raw HTTP/2
# client sends, to StreamScene, GetScene and ListScenes: a string field that is not
# UTF-8, garbage bytes, and no message at all before END_STREAM. Asserted:
#   - each gets INVALID_ARGUMENT "request message could not be decoded" (or "no
#     request message before the end of the stream");
#   - flexgs_requests_undecodable_total{grpc_method} counts exactly these;
#   - a scene that fails to reload counts in flexgs_scene_reload_failures_total;
#   - the metrics carry no exposer_* series (their latency unit was not in the name);
#   - a normal client is served meanwhile; RSS stays flat.
#   attack_undecodable_test.sh FLEXGS FLEXGS_SERVER FLEXGS_CLIENT
FLEXGS=$1 SERVER=$2 CLIENT=$3
source "$(dirname "$0")/attack_common.sh"

make_synth_scene
serve server --scenes "$WORK/scenes"
RSS0=$(rss_mib "$SERVER_PID")

python3 - "$PORT" > "$WORK/bad.json" 2> "$WORK/bad.err" << 'EOF'
import json, sys
from h2_raw import H2Conn, grpc_message, pb_bytes, pb_double
c = H2Conn("127.0.0.1", int(sys.argv[1]), timeout=30)
bodies = {
    "not_utf8": grpc_message(pb_bytes(1, b"\xff\xfe\xc3") + pb_double(3, 0.5)),
    "garbage": grpc_message(b"\xff\xff\xff\xff\xff\xff\x07"),
    "no_message": None,
}
out = {}
for method in ("StreamScene", "GetScene", "ListScenes"):
    for name, body in bodies.items():
        if method == "ListScenes" and name == "not_utf8":
            continue  # ListScenesRequest has no string field
        if body is None:
            sid, _ = c.open_stream(method, None, end_stream=True)
            c.wait(lambda: c.streams[sid].done, 20)
            s = c.streams[sid]
        else:
            s = c.call(method, body, timeout=20)
        out[f"{method}/{name}"] = [s.grpc_status, s.grpc_message]
print(json.dumps(out))
EOF
python3 - "$WORK/bad.json" << 'EOF' || fail "undecodable requests: see above"
import json, sys
j = json.load(open(sys.argv[1]))
bad = False
for key, (code, msg) in sorted(j.items()):
    want = "no request message" if key.endswith("no_message") else "could not be decoded"
    ok = code == 3 and msg is not None and want in msg
    print(f"{key}: code {code} {msg!r}{'' if ok else '  <-- WRONG'}")
    bad |= not ok
sys.exit(1 if bad else 0)
EOF
for m in StreamScene:3 GetScene:3 ListScenes:2; do
  n=$(metric "flexgs_requests_undecodable_total\\{grpc_method=\"${m%%:*}\"\\}")
  [[ $n == "${m##*:}" ]] || fail "flexgs_requests_undecodable_total{grpc_method=\"${m%%:*}\"} = $n, want ${m##*:}"
done
echo "undecodable requests: all INVALID_ARGUMENT and counted per method"

# A scene that fails to reload.
echo "not a ply" > "$WORK/scenes/broken.ply"
[[ $(metric flexgs_scene_reload_failures_total) == 0 ]] || fail "reload failures before any reload"
kill -HUP "$SERVER_PID"
for _ in $(seq 1 $((100 * SCALE))); do
  (( $(metric flexgs_scene_reload_failures_total) == 1 )) && break
  sleep 0.1
done
[[ $(metric flexgs_scene_reload_failures_total) == 1 ]] || fail "flexgs_scene_reload_failures_total is not 1"
python3 -c "
import sys, urllib.request
t = urllib.request.urlopen('http://127.0.0.1:$METRICS_PORT/metrics', timeout=20).read().decode()
sys.exit(1 if 'exposer_' in t else 0)" || fail "exposer_* series are still served"
echo "reload failure counted; no exposer_* series"

t=$(normal_client normal synth)
RSS1=$(rss_mib "$SERVER_PID")
rss_bound $((RSS1 - RSS0)) 32 "the server under attack"
echo "normal client served in ${t} s; RSS $RSS0 -> $RSS1 MiB"
pass

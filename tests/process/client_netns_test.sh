#!/usr/bin/env bash
# Progressive delivery over a real throttled link: the server runs in its own network
# namespace behind a veth pair whose egress is shaped to RATE by tc (token bucket
# filter); the client runs outside. The first level must arrive long before the
# stream ends, and the stream must take as long as the link says (it is not buffered
# away somewhere). Needs root and iproute2; skips (77) with the reason otherwise.
#   client_netns_test.sh FLEXGS FLEXGS_SERVER FLEXGS_CLIENT
set -euo pipefail
FLEXGS=$1 SERVER=$2 CLIENT=$3
RATE_MBIT=${RATE_MBIT:-10}
source "$(dirname "$0")/lib.sh"
flexgs_tmpdir netns
netns_setup "flexgs-ns-$$" "fgc$$" "fgs$$" 198.18
# Shape both directions; the server -> client one carries the scene.
for where in "" "ip netns exec $NS"; do
  dev=$VC; [[ -n $where ]] && dev=$VS
  $where tc qdisc add dev "$dev" root tbf rate "${RATE_MBIT}mbit" burst 32kbit latency 100ms ||
    skip "tc cannot shape $dev"
done

mkdir -p "$WORK/scenes"
"$FLEXGS" generate --out "$WORK/synth.ply" --count 200000 > /dev/null
"$FLEXGS" elasticize "$WORK/synth.ply" --out "$WORK/scenes/synth.flexgs" --orbit 4 --width 64 --height 64 > /dev/null
SERVER_WRAP=(ip netns exec "$NS")
launch_server server --host "$SERVER_IP" --port 0 --scenes "$WORK/scenes" --metrics-port 0
wait_listening server

# Warm the plan cache (planning time is not what this test measures), then measure.
"$CLIENT" --server "$SERVER_IP:$PORT" --scene synth --budget-ratio 1.0 --no-render --quiet --out "$WORK/warm" \
  2> "$WORK/client.err" || fail "warm-up stream"
"$CLIENT" --server "$SERVER_IP:$PORT" --scene synth --budget-ratio 1.0 --orbit 1 --width 128 --height 128 --json \
  --quiet --out "$WORK/run" 2> "$WORK/client.err" || fail "stream over the shaped link"
read -r bytes total first levels <<< "$(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(j["payload_bytes"], j["total_s"], j["time_to_first_frame_s"], len(j["levels"]))' "$WORK/run/stats.json")"
link_s=$(python3 -c "print($bytes * 8 / ($RATE_MBIT * 1e6))")
echo "link ${RATE_MBIT} Mbit/s: $bytes payload bytes (link time $link_s s) in $total s over $levels levels;" \
     "first level rendered after $first s"
python3 - "$bytes" "$total" "$first" "$link_s" << 'EOF' || fail "not progressive over the shaped link"
import sys
bytes_, total, first, link = map(float, sys.argv[1:])
# The link really throttles: the stream cannot beat the shaped rate (10% slack for the burst).
assert total >= 0.9 * link, f"stream took {total:.2f} s, the link needs {link:.2f} s"
# ...and the first level is on screen early: within a quarter of the stream.
assert first <= 0.25 * total, f"first frame at {first:.2f} s of {total:.2f} s"
print(f"ok: first frame at {100 * first / total:.0f}% of the stream time, throughput "
      f"{bytes_ * 8 / total / 1e6:.2f} Mbit/s")
EOF
echo "PASS"

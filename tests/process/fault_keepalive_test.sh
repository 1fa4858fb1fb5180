#!/usr/bin/env bash
# The network silently dropping everything for longer than keepalive, mid-stream: the
# server runs in its own network namespace behind a veth pair (as client_netns_test),
# the link drops every packet for DROP_S seconds (see link() below), then comes back.
#   - the server notices through its keepalive pings (--keepalive-time/-timeout 1 s;
#     the stall watchdog is set far out so it is not what notices): no stream active,
#     the stream counted CANCELLED in grpc_server_handled_total;
#   - the client notices through its own keepalive (flexgs-client --keepalive-time 1
#     --keepalive-timeout 1): "stream interrupted", reconnect attempts;
#   - once the link is back it resumes with its token and ends in the same state as an
#     undisturbed run, having kept exactly as many payload bytes (none twice).
# Needs root and iproute2; skips (77) with the reason otherwise.
#   fault_keepalive_test.sh FLEXGS FLEXGS_SERVER FLEXGS_CLIENT
set -euo pipefail
FLEXGS=$1 SERVER=$2 CLIENT=$3
source "$(dirname "$0")/lib.sh"
DROP_S=${DROP_S:-$((6 * SCALE))}
flexgs_tmpdir keepalive
# A /30 from a different block from client_netns_test's.
netns_setup "flexgs-ka-$$" "fkc$$" "fks$$" 198.19
# The metrics are read inside the namespace: that works while the link is down.
METRICS_WRAP=(ip netns exec "$NS")
now() { python3 -c 'import time; print(f"{time.monotonic():.3f}")'; }
since() { python3 -c "import time; print(f'{time.monotonic() - $1:.1f}')"; }

# link down|up. Preferably `tc netem loss 100%` on both ends: every packet silently
# dropped, the case only keepalive can detect. Without sch_netem, both veth ends set
# down: an established TCP connection loses its route and retransmits into the void
# just the same (no error reaches the sockets), new connections fail at once.
if tc qdisc add dev "$VC" root netem loss 100% 2> /dev/null; then
  tc qdisc del dev "$VC" root
  HOW="tc netem loss 100% both ways"
  link() {
    local op=add
    [[ $1 == up ]] && op=del
    tc qdisc $op dev "$VC" root netem loss 100% && ip netns exec "$NS" tc qdisc $op dev "$VS" root netem loss 100%
  }
else
  HOW="both veth ends down (no sch_netem here)"
  link() { ip link set "$VC" "$1" && ip netns exec "$NS" ip link set "$VS" "$1"; }
fi

mkdir -p "$WORK/scenes"
"$FLEXGS" generate --out "$WORK/synth.ply" --count 30000 --sh-degree 0 --seed 7 > /dev/null
"$FLEXGS" elasticize "$WORK/synth.ply" --out "$WORK/scenes/synth.flexgs" --orbit 4 --width 64 --height 64 > /dev/null
METRICS_PORT=9465
SERVER_WRAP=(ip netns exec "$NS")
start_server server --host "$SERVER_IP" --port 0 --scenes "$WORK/scenes" --metrics-host 127.0.0.1 \
  --metrics-port $METRICS_PORT --keepalive-time 1 --keepalive-timeout 1 --stall-timeout 600 --rescan-interval 0

COMMON=(--server "$SERVER_IP:$PORT" --scene synth --budget-ratio 1.0 --encoding lossless --no-render --json
        --keepalive-time 1 --keepalive-timeout 1 --give-up-after 60)
"$CLIENT" "${COMMON[@]}" --quiet --out "$WORK/reference" 2> "$WORK/reference.err" || fail "reference stream"

# ~1.2 MB at 1 Mbit/s: ~10 s of stream, cut after ~1.5 s for DROP_S seconds.
"$CLIENT" "${COMMON[@]}" --max-bandwidth "$((1000 / SCALE))kbit" --out "$WORK/cut" > /dev/null 2> "$WORK/cut.err" &
CLIENT_PID=$!
PIDS+=("$CLIENT_PID")
for _ in $(seq 1 $((100 * SCALE))); do
  (( $(metric flexgs_streams_active) == 1 )) && break
  sleep 0.1
done
sleep 1.5
kill -0 "$CLIENT_PID" 2> /dev/null || fail "the client finished before the link dropped"
link down
T0=$(now)
echo "link down ($HOW) for ${DROP_S} s"
server_s="" client_s=""
for _ in $(seq 1 $((DROP_S * 10))); do
  if [[ -z $server_s ]] && (( $(metric flexgs_streams_active) == 0 )); then server_s=$(since "$T0"); fi
  if [[ -z $client_s ]] && grep -q "stream interrupted" "$WORK/cut.err"; then client_s=$(since "$T0"); fi
  python3 -c "import sys, time; sys.exit(0 if time.monotonic() - $T0 >= $DROP_S else 1)" && break
  sleep 0.1
done
[[ -n $server_s ]] || fail "the server did not drop the stream within ${DROP_S} s (keepalive 1 s + 1 s)"
[[ -n $client_s ]] || fail "the client did not notice the dead link within ${DROP_S} s (keepalive 1 s + 1 s)"
cancelled=$(metric 'grpc_server_handled_total\{grpc_code="CANCELLED",grpc_method="StreamScene".*\}')
[[ $cancelled == 1 ]] || fail "server: $cancelled StreamScene calls counted CANCELLED, want 1"
echo "server noticed after $server_s s (stream counted CANCELLED), client after $client_s s:"
grep -m1 "stream interrupted" "$WORK/cut.err" | cut -c1-200
link up
wait "$CLIENT_PID" || fail "the client did not resume after the link came back"
CLIENT_PID=""
read -r retries state bytes <<< "$(json "$WORK/cut/stats.json" \
  '"%d %s %d" % (j["retries"], j["final_state_sha256"], j["payload_bytes"])')"
(( retries >= 1 )) || fail "no reconnect recorded"
[[ $state == $(json "$WORK/reference/stats.json" 'j["final_state_sha256"]') ]] ||
  fail "final state differs after the resume"
[[ $bytes == $(json "$WORK/reference/stats.json" 'j["payload_bytes"]') ]] ||
  fail "kept $bytes payload bytes, undisturbed run kept a different amount"
echo "link back: resumed after $retries reconnect attempt(s), identical final state, $bytes payload bytes (none twice)"
echo "PASS"

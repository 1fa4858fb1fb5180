#!/usr/bin/env bash
# Attack 2: HTTP/2 streams whose request never completes (issue "Hardening, second
# round", 2). A raw HTTP/2 client from 127.0.0.2 opens ATTACK_CONNS connections
# (half of them never acknowledge the server's SETTINGS) with ATTACK_STREAMS streams
# each, every one a StreamScene call whose request message announces 65,000 bytes
# and sends 64,000 of them. Asserted:
#   - pending calls count in the admission limit: flexgs_streams_active reaches and
#     never passes --max-streams-per-peer (64) while the attacker holds them; the rest
#     are refused at once (RESOURCE_EXHAUSTED, reason="peer_limit");
#   - every pending call is ended by --request-timeout (DEADLINE_EXCEEDED);
#   - a normal client (flexgs-client from 127.0.0.1) completes during the attack;
#   - RSS: growth during the attack < RSS_DURING_MIB, and after the attacker leaves
#     the server is back within RSS_AFTER_MIB of where it started;
#   - the per-connection cap (--max-streams-per-connection, SETTINGS_MAX_CONCURRENT_
#     STREAMS = 100) with the other limits off: 150 pending streams on one connection
#     that acknowledged SETTINGS -> 100 admitted, then the connection is dropped (gRPC
#     1.51; newer versions refuse the 50 with REFUSED_STREAM).
#   attack_pending_streams_test.sh FLEXGS FLEXGS_SERVER FLEXGS_CLIENT
FLEXGS=$1 SERVER=$2 CLIENT=$3
source "$(dirname "$0")/attack_common.sh"
need_second_loopback
ATTACK_CONNS=${ATTACK_CONNS:-10} ATTACK_STREAMS=${ATTACK_STREAMS:-1500}
REQUEST_TIMEOUT_S=$((4 * SCALE)) PER_PEER=64
RSS_DURING_MIB=${RSS_DURING_MIB:-96} RSS_AFTER_MIB=${RSS_AFTER_MIB:-24}

make_synth_scene
serve server --scenes "$WORK/scenes" --request-timeout $REQUEST_TIMEOUT_S
"$CLIENT" --server "127.0.0.1:$PORT" --scene synth --budget-ratio 0.3 --no-render --quiet --out "$WORK/warm" \
  > /dev/null 2>&1 || fatal "warm-up stream"
sleep 1
RSS0=$(rss_mib "$SERVER_PID")

# The attacker: writes its phases to attack.json; holds its connections until the
# file "release" appears, then closes them.
python3 - "$PORT" "$ATTACK_CONNS" "$ATTACK_STREAMS" "$WORK" > "$WORK/attack.json" 2> "$WORK/attack.err" << 'EOF' &
import json, os, sys, threading, time
from h2_raw import H2Conn, grpc_message, REFUSED_STREAM, SETTINGS_MAX_CONCURRENT_STREAMS
port, nconn, nstreams, work = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
DECLARED, SENT = 65000, 64000
payload = grpc_message(b"\x0a" + b"x" * (SENT - 1), declared_length=DECLARED)[:5 + SENT]

def attack(conn, stats):
    for start in range(0, nstreams, 100):
        ids = []
        out = bytearray()
        for _ in range(min(100, nstreams - start)):
            sid = conn.new_stream()
            out += conn.headers_frame(sid, conn.grpc_headers("StreamScene"))
            ids.append(sid)
            stats["opened_at"][sid] = time.monotonic()
        try:
            conn.send(out)
        except OSError:
            break
        conn.wait(lambda: False, 0.05)
        for sid in ids:
            if not conn.streams[sid].done:
                stats["bytes"] += conn.send_data_flow_controlled(sid, payload, patience=0.5)
        conn.pump(0.001)
        if conn.closed:  # the server dropped the connection (see the per-connection cap)
            stats["dropped_at"] = start
            break

conns, stats = [], []
t0 = time.monotonic()
for i in range(nconn):
    c = H2Conn("127.0.0.1", port, source="127.0.0.2", ack_settings=(i % 2 == 0), timeout=30)
    st = {"bytes": 0, "opened_at": {}}
    attack(c, st)
    conns.append(c)
    stats.append(st)
attack_s = time.monotonic() - t0

def summary():
    pending = rst_refused = other = dropped = 0
    codes = {}
    for c in conns:
        for sid, s in c.streams.items():
            if not s.done and c.closed:
                dropped += 1
            elif not s.done:
                pending += 1
            elif s.rst == REFUSED_STREAM:
                rst_refused += 1
            elif s.grpc_status is not None:
                codes[s.grpc_status] = codes.get(s.grpc_status, 0) + 1
            else:
                other += 1
    return {"pending": pending, "rst_refused": rst_refused, "grpc_codes": codes, "other": other,
            "on_dropped_connections": dropped, "dropped_connections": sum(c.closed for c in conns)}

held = summary()
open(os.path.join(work, "holding"), "w").close()
# Hold (reading) until the server has ended every pending call or 3x the timeout.
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not os.path.exists(os.path.join(work, "release")):
    for c in conns:
        c.pump(0.01)
ended = summary()
lifetimes = []
for c, st in zip(conns, stats):
    for sid, s in c.streams.items():
        if s.done and s.closed_at and s.grpc_status == 4:
            lifetimes.append(s.closed_at - st["opened_at"][sid])
deadline_msgs = sorted({s.grpc_message for c in conns for s in c.streams.values() if s.grpc_status == 4})
for c in conns:
    c.close()
print(json.dumps({"attack_s": round(attack_s, 2), "bytes_sent": sum(st["bytes"] for st in stats),
                  "max_concurrent_streams": conns[0].server_settings.get(SETTINGS_MAX_CONCURRENT_STREAMS),
                  "while_held": held, "at_end": ended,
                  "deadline_lifetime_s": [round(min(lifetimes), 2), round(max(lifetimes), 2)] if lifetimes else [],
                  "deadline_messages": deadline_msgs}))
EOF
ATTACKER=$!
PIDS+=("$ATTACKER")
# While the attacker opens its streams: the peak of active streams and of RSS, and a
# normal client from 127.0.0.1 once the attacker holds its share.
RSS1=$RSS0 ACTIVE_MAX=0 NORMAL_PID=""
for _ in $(seq 1 $((2400 * SCALE))); do
  [[ -f $WORK/holding ]] && break
  kill -0 "$ATTACKER" 2> /dev/null || fatal "attacker died: $(tail -5 "$WORK/attack.err")"
  r=$(rss_mib "$SERVER_PID")
  (( r > RSS1 )) && RSS1=$r
  a=$(metric flexgs_streams_active)
  (( a > ACTIVE_MAX )) && ACTIVE_MAX=$a
  if [[ -z $NORMAL_PID ]] && (( a >= PER_PEER )); then
    normal_client during synth > "$WORK/during.time" &
    NORMAL_PID=$!
  fi
  sleep 0.05
done
[[ -f $WORK/holding ]] || fatal "attacker did not finish opening its streams"
r=$(rss_mib "$SERVER_PID")
(( r > RSS1 )) && RSS1=$r
peer_refused=$(metric 'flexgs_streams_rejected_total\{reason="peer_limit"\}')
if [[ -n $NORMAL_PID ]]; then
  wait "$NORMAL_PID" || fail "normal client during the attack"
  t=$(cat "$WORK/during.time")
else
  t=$(normal_client during synth)
  fail "the attacker never held $PER_PEER streams (peak $ACTIVE_MAX active)"
fi
echo "during the attack: RSS $RSS0 -> peak $RSS1 MiB, peak $ACTIVE_MAX streams active, $peer_refused refused by" \
  "the per-peer cap, normal client done in ${t} s"
(( ACTIVE_MAX <= PER_PEER + 1 )) ||
  fail "active streams peaked at $ACTIVE_MAX (per-peer cap $PER_PEER, +1 normal client)"
(( peer_refused > 0 )) || fail "no stream refused by the per-peer cap"
rss_bound $((RSS1 - RSS0)) "$RSS_DURING_MIB" "during the attack"

# Every pending call ends at the request timeout; then the attacker leaves.
for _ in $(seq 1 $(((REQUEST_TIMEOUT_S + 10) * 10))); do
  (( $(metric flexgs_streams_active) == 0 )) && break
  sleep 0.1
done
(( $(metric flexgs_streams_active) == 0 )) || fail "pending calls still active after the request timeout"
touch "$WORK/release"
wait "$ATTACKER" || fatal "attacker failed: $(tail -5 "$WORK/attack.err")"
echo "attack: $(cat "$WORK/attack.json")"
read -r pending deadline_n lifetime_min <<< "$(json "$WORK/attack.json" \
  "'%d %d %s' % (j['at_end']['pending'], j['at_end']['grpc_codes'].get('4', 0),
                 (j['deadline_lifetime_s'] or [99])[0])")"
[[ $pending == 0 ]] || fail "$pending streams still pending at the end"
(( deadline_n >= PER_PEER )) || fail "$deadline_n calls ended with DEADLINE_EXCEEDED, want >= $PER_PEER"
timed_out=$(metric 'flexgs_streams_rejected_total\{reason="request_timeout"\}')
[[ $timed_out == "$deadline_n" ]] || fail "reason=\"request_timeout\" counted $timed_out, the client saw $deadline_n"
# The first calls admitted are timed from (about) when they were sent; later ones may
# have waited in a busy server before it saw their headers.
python3 -c "import sys; t = float(sys.argv[1])
sys.exit(0 if $REQUEST_TIMEOUT_S - 0.2 <= t <= $REQUEST_TIMEOUT_S + 2 * $SCALE else 1)" \
  "$lifetime_min" || fail "the first pending calls ended after ${lifetime_min} s (request timeout $REQUEST_TIMEOUT_S s)"
[[ $(json "$WORK/attack.json" "j['max_concurrent_streams']") == 100 ]] ||
  fail "SETTINGS_MAX_CONCURRENT_STREAMS: $(json "$WORK/attack.json" "j['max_concurrent_streams']"), want 100"
for _ in $(seq 1 $((50 * SCALE))); do
  RSS2=$(rss_mib "$SERVER_PID")
  (( RSS2 - RSS0 < RSS_AFTER_MIB )) && break
  sleep 0.1
done
echo "after the attacker left: RSS $RSS2 MiB (started at $RSS0, peak seen $RSS1)"
rss_bound $((RSS2 - RSS0)) "$RSS_AFTER_MIB" "after the attacker left (growth that stayed)"
normal_client after synth > /dev/null

# The per-connection cap alone: no per-peer cap, a large --max-streams. A client that
# acknowledged SETTINGS_MAX_CONCURRENT_STREAMS and opens more: gRPC 1.51 treats it as a
# connection error (newer versions refuse the extra streams with REFUSED_STREAM); either
# way at most 100 of its calls are ever admitted, and after a drop none is left.
kill -TERM "$SERVER_PID"
serve percon --scenes "$WORK/scenes" --request-timeout 30 --max-streams-per-peer 0 --max-streams 100000
python3 - "$PORT" "$METRICS_PORT" > "$WORK/percon.json" 2> "$WORK/percon.err" << 'EOF'
import json, re, sys, time, urllib.request
from h2_raw import H2Conn, grpc_message, REFUSED_STREAM
port, metrics_port = int(sys.argv[1]), int(sys.argv[2])
def active():
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=20).read().decode()
    return int(float(re.search(r"^flexgs_streams_active (\S+)", text, re.M).group(1)))
c = H2Conn("127.0.0.1", port, ack_settings=True, timeout=30)
c.wait(lambda: c.server_settings, 10)
c.pump(0.2)  # our ACK is out; the server's limit is in force from here
def batch(n):
    out = bytearray()
    for _ in range(n):
        sid = c.new_stream()
        out += c.headers_frame(sid, c.grpc_headers("StreamScene")) + c.data_frames(sid, grpc_message(b"", 100))
    c.send(out)
batch(100)
c.wait(lambda: False, 1.0)
first = active()
batch(50)
c.wait(lambda: c.closed or sum(s.rst == REFUSED_STREAM for s in c.streams.values()) >= 50, 10)
time.sleep(1.0)
print(json.dumps({"active_after_100": first, "refused": sum(s.rst == REFUSED_STREAM for s in c.streams.values()),
                  "connection_dropped": c.closed, "active_after_150": active()}))
EOF
echo "one connection, 100 then 50 more pending streams: $(cat "$WORK/percon.json")"
read -r first refused dropped after <<< "$(json "$WORK/percon.json" \
  "'%d %d %s %d' % (j['active_after_100'], j['refused'], j['connection_dropped'], j['active_after_150'])")"
[[ $first == 100 ]] || fail "per-connection cap: $first calls active after 100 streams, want 100"
if [[ $dropped == True ]]; then
  [[ $after == 0 ]] || fail "per-connection cap: connection dropped but $after calls still active"
else
  [[ $refused == 50 && $after == 100 ]] || fail "per-connection cap: $refused refused, $after active; want 50 and 100"
fi
pass

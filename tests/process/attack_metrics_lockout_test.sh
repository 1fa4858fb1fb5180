#!/usr/bin/env bash
# Attack 1: idle and half-open connections to /metrics (issue "Hardening, second
# round", 1). A raw-socket client holds connections that send nothing and
# connections that send half a request head, re-opening any the server closes;
# meanwhile plain scrapes (a fresh connection each) must succeed within 1 s:
#   a) 2 idle + 4 half-open connections (what locked out the old 2-thread exposer);
#   b) a flood of 3 x --metrics-max-connections idle connections;
#   c) the server closes an idle and a half-open connection after
#      --metrics-request-timeout; the metrics port is on 127.0.0.1 unless told
#      otherwise; the exposer's own metrics (no unit in their names) are gone;
#   d) gRPC is served meanwhile (health probe, a stream); RSS stays flat.
#   attack_metrics_lockout_test.sh FLEXGS FLEXGS_SERVER FLEXGS_CLIENT HEALTH_PROBE
FLEXGS=$1 SERVER=$2 CLIENT=$3 PROBE=$4
source "$(dirname "$0")/attack_common.sh"

make_synth_scene
MAX_CONN=16 REQ_TIMEOUT_S=$((2 * SCALE))
serve server --scenes "$WORK/scenes" --metrics-max-connections $MAX_CONN \
  --metrics-request-timeout $REQ_TIMEOUT_S
grep -q "metrics on http://127.0.0.1:$METRICS_PORT/metrics" "$WORK/server.log" ||
  fail "metrics not on 127.0.0.1 by default: $(grep metrics "$WORK/server.log")"
RSS0=$(rss_mib "$SERVER_PID")

python3 - "$METRICS_PORT" "$MAX_CONN" "$REQ_TIMEOUT_S" "$SCALE" > "$WORK/attack.json" 2> "$WORK/attack.err" << 'EOF'
import json, socket, sys, threading, time
port, max_conn, req_timeout, scale = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
LIMIT = 1.0 * scale  # a scrape must be answered within 1 s (scaled for sanitizer builds)

def connect(half=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if half:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
    return s

class Holder:
    """Keeps `idle` silent and `half` half-sent connections open, re-opening closed ones."""
    def __init__(self, idle, half):
        self.want = [False] * idle + [True] * half
        self.socks = [None] * len(self.want)
        self.reopened = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop:
            for i, half in enumerate(self.want):
                s = self.socks[i]
                if s is not None:
                    s.setblocking(False)
                    try:
                        alive = s.recv(1 << 16) != b""
                    except BlockingIOError:
                        alive = True
                    except OSError:
                        alive = False
                    if alive:
                        continue
                    s.close()
                    self.reopened += 1
                try:
                    self.socks[i] = connect(half)
                except OSError:
                    self.socks[i] = None
            time.sleep(0.05)

    def __enter__(self):
        for i, half in enumerate(self.want):
            self.socks[i] = connect(half)
        self.thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        for s in self.socks:
            if s is not None:
                s.close()

def scrape():
    t0 = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=LIMIT)
        s.settimeout(max(0.01, LIMIT - (time.monotonic() - t0)))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
        s.close()
        ok = data.startswith(b"HTTP/1.1 200") and b"flexgs_streams_active" in data
    except OSError:
        ok, data = False, b""
    return ok, time.monotonic() - t0, data

out = {}
for phase, (idle, half) in {"two_idle_four_half_open": (2, 4), "flood": (3 * max_conn, 0)}.items():
    with Holder(idle, half) as h:
        results = []
        for _ in range(8):
            ok, dt, _ = scrape()
            results.append((ok, round(dt, 3)))
            time.sleep(0.1)
        out[phase] = {"held": idle + half, "ok": sum(r[0] for r in results), "tries": len(results),
                      "max_s": max(r[1] for r in results), "reopened": h.reopened}

# c) one idle and one half-open connection: closed by the server after the timeout.
t0 = time.monotonic()
socks = [connect(False), connect(True)]
closed_after = []
for s in socks:
    s.settimeout(req_timeout + 5)
    try:
        s.recv(1 << 16)
    except OSError:
        pass
    closed_after.append(round(time.monotonic() - t0, 2))
    s.close()
out["closed_after_s"] = closed_after
ok, dt, data = scrape()
out["final"] = {"ok": ok, "s": round(dt, 3)}
out["exposer_metrics"] = b"exposer_" in data
print(json.dumps(out))
EOF
echo "attack: $(cat "$WORK/attack.json")"
for phase in two_idle_four_half_open flood; do
  read -r ok tries max_s <<< "$(json "$WORK/attack.json" \
    "'%d %d %s' % (j['$phase']['ok'], j['$phase']['tries'], j['$phase']['max_s'])")"
  [[ $ok == "$tries" ]] || fail "$phase: only $ok of $tries scrapes answered within $SCALE s (slowest ${max_s} s)"
done
python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['closed_after_s']
sys.exit(0 if all(x <= $REQ_TIMEOUT_S + 2 * $SCALE for x in c) else 1)" \
  "$WORK/attack.json" ||
  fail "idle/half-open connections not closed after the request timeout:" \
    "$(json "$WORK/attack.json" "j['closed_after_s']")"
[[ $(json "$WORK/attack.json" "j['final']['ok']") == True ]] || fail "scrape after the attack"
[[ $(json "$WORK/attack.json" "j['exposer_metrics']") == False ]] ||
  fail "exposer_* metrics (unit not in the name) are still served"

# d) gRPC meanwhile: unaffected by design, checked anyway; RSS flat.
"$PROBE" --addr "127.0.0.1:$PORT" --timeout-ms 20000 > /dev/null || fail "health probe"
t=$(normal_client normal synth)
RSS1=$(rss_mib "$SERVER_PID")
rss_bound $((RSS1 - RSS0)) 32 "the server under the /metrics attack"
echo "RSS $RSS0 -> $RSS1 MiB; stream after the attack in ${t} s"
pass

#!/usr/bin/env bash
# Soak: flexgs-server on loopback under steady flexgs-loadgen load for a bounded time,
# its memory sampled every second. Prints the RSS curve (a sample every
# SOAK_REPORT_EVERY s), min/max/growth after the warm-up, and the streams completed,
# cancelled and failed. Every stream is decoded and verified by the load generator
# (--verify), so "verification failures 0" means every completed stream decoded
# correctly; a tenth of the streams (SOAK_CANCEL) are cancelled by the client at a
# random message, which exercises the server's cancellation paths all along.
#
#   bench/soak.sh [BUILD_DIR] [DATA_DIR]
#
# Environment (defaults): SOAK_SECONDS (300) load duration; SOAK_CONCURRENCY (32)
# streams in flight; SOAK_CANCEL (0.1); SOAK_BUDGETS (ratio:0.05,ratio:0.15,ratio:0.3)
# budget mix; SOAK_WARMUP (a fifth of SOAK_SECONDS, at least 10) seconds excluded from
# min/max/growth (plan cache filling, allocator arenas growing); SOAK_REPORT_EVERY (30);
# SOAK_SCENE: a PLY to serve (default DATA_DIR/guitar.ply, else a synthetic 100k scene);
# SOAK_OUT: keep rss.csv, loadgen.json and server.log there; SOAK_MAX_GROWTH_MIB: when
# set, fail (exit 1) if RSS grew more than that after the warm-up. Exit 1 also on any
# failed stream or verification failure. Growth = mean RSS of the last 10% of samples
# minus the mean of the first 10% after the warm-up (robust to single spikes).
set -euo pipefail
BUILD=${1:-build}
DATA=${2:-$(dirname "$0")/../../shared/data}
FLEXGS=$BUILD/tools/flexgs SERVER=$BUILD/server/flexgs-server LOADGEN=$BUILD/loadgen/flexgs-loadgen
SECONDS_=${SOAK_SECONDS:-300}
CONCURRENCY=${SOAK_CONCURRENCY:-32}
CANCEL=${SOAK_CANCEL:-0.1}
BUDGETS=${SOAK_BUDGETS:-ratio:0.05,ratio:0.15,ratio:0.3}
WARMUP=${SOAK_WARMUP:-$(( SECONDS_ / 5 > 10 ? SECONDS_ / 5 : 10 ))}
EVERY=${SOAK_REPORT_EVERY:-30}
for b in "$FLEXGS" "$SERVER" "$LOADGEN"; do [[ -x $b ]] || { echo "soak: $b not built" >&2; exit 2; }; done
(( WARMUP < SECONDS_ )) || { echo "soak: SOAK_WARMUP ($WARMUP) must be below SOAK_SECONDS ($SECONDS_)" >&2; exit 2; }

source "$(dirname "$0")/../tests/process/lib.sh"
flexgs_tmpdir soak
keep_outputs() {
  if [[ -n ${SOAK_OUT:-} ]]; then
    mkdir -p "$SOAK_OUT"
    cp "$WORK"/rss.csv "$WORK"/loadgen.json "$WORK"/server.log "$SOAK_OUT"/ 2> /dev/null || true
  fi
}
at_exit keep_outputs

mkdir -p "$WORK/scenes"
SCENE=${SOAK_SCENE:-}
if [[ -z $SCENE && -f $DATA/guitar.ply ]]; then SCENE=$DATA/guitar.ply; fi
if [[ -z $SCENE ]]; then
  SCENE=$WORK/synthetic.ply
  "$FLEXGS" generate --out "$SCENE" --count 100000 --sh-degree 3 > /dev/null
fi
"$FLEXGS" elasticize "$SCENE" --out "$WORK/scenes/soak.flexgs" --orbit 8 --width 128 --height 128 > /dev/null

launch_server server --host 127.0.0.1 --port 0 --scenes "$WORK/scenes" --metrics-port 0 --rescan-interval 0 \
  --log-level warn
wait_listening server
# Until the scenes are loaded every call is UNAVAILABLE: wait for one good stream.
for _ in $(seq 1 300); do
  "$LOADGEN" --target "127.0.0.1:$PORT" --scene soak --concurrency 1 --total 1 --progress-s 0 > /dev/null 2>&1 && break
  sleep 0.2
done

# RSS (kB) once a second, from before the first stream to after the last.
python3 - "$SERVER_PID" "$WORK/rss.csv" << 'EOF' &
import sys, time
pid, out = sys.argv[1], sys.argv[2]
t0 = time.monotonic()
with open(out, "w", buffering=1) as f:
    f.write("t_s,rss_kib\n")
    while True:
        try:
            with open(f"/proc/{pid}/status") as s:
                rss = next(int(l.split()[1]) for l in s if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            break
        f.write(f"{time.monotonic() - t0:.1f},{rss}\n")
        time.sleep(1.0 - (time.monotonic() - t0) % 1.0)
EOF
SAMPLER_PID=$!
PIDS+=("$SAMPLER_PID")

START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
set +e
"$LOADGEN" --target "127.0.0.1:$PORT" --scene soak --concurrency "$CONCURRENCY" --duration "$SECONDS_" \
  --cancel-fraction "$CANCEL" --budgets "$BUDGETS" --verify --timeout-s 120 --progress-s 0 --json \
  > "$WORK/loadgen.json" 2> "$WORK/loadgen.err"
LOADGEN_RC=$?
set -e
if ! kill -0 "$SERVER_PID" 2> /dev/null; then
  # A server that died under load (a sanitizer report aborts it) fails the soak with its
  # first report lines as well as the log's tail.
  grep -m 5 -A 25 -E "ERROR: |runtime error|terminate called|Check failed|assertion failed" \
    "$WORK/server.log" >&2 || true
  fatal "flexgs-server exited during the soak (loadgen exit $LOADGEN_RC)"
fi
sleep 1.5  # one more sample after the last stream
kill "$SAMPLER_PID" 2> /dev/null || true
wait "$SAMPLER_PID" 2> /dev/null || true
SAMPLER_PID=""

python3 - "$WORK/rss.csv" "$WORK/loadgen.json" "$LOADGEN_RC" "$WARMUP" "$EVERY" "${SOAK_MAX_GROWTH_MIB:-}" \
  "$START" "$SECONDS_" "$CONCURRENCY" "$CANCEL" "$BUDGETS" "$SCENE" << 'EOF'
import csv, json, os, statistics, sys
rss_path, lg_path, rc, warmup, every, max_growth, start, secs, conc, cancel, budgets, scene = sys.argv[1:]
rc, warmup, every, secs = int(rc), float(warmup), float(every), float(secs)
rows = [(float(r["t_s"]), int(r["rss_kib"]) / 1024) for r in csv.DictReader(open(rss_path))]
try:
    lg = json.load(open(lg_path))
except ValueError:
    print(f"soak: flexgs-loadgen exited {rc} without a report", file=sys.stderr)
    sys.exit(1)
c = lg["counts"]
print(f"soak {start}: {secs:.0f} s, concurrency {conc}, cancel fraction {cancel}, budgets {budgets}, scene {scene}")
print(f"streams: started {c['started']}, completed {c['completed']}, cancelled {c['cancelled']}, "
      f"failed {c['failed']} {c['failed_by_code'] or ''}, verification failures {c['verification_failures']}; "
      f"{lg['throughput']['streams_per_s']:.1f} streams/s, {lg['throughput']['mb_per_s']:.1f} MB/s, "
      f"completion p50/p99 {lg['latency_ms']['completion']['p50']:.0f}/{lg['latency_ms']['completion']['p99']:.0f} ms")
print("RSS MiB over time:")
next_t = 0.0
for t, mib in rows:
    if t >= next_t:
        print(f"  t={t:6.0f} s  {mib:7.1f}")
        next_t += every
print(f"  t={rows[-1][0]:6.0f} s  {rows[-1][1]:7.1f}  (last sample)")
after = [m for t, m in rows if warmup <= t <= secs]
if len(after) < 10:
    print(f"soak: only {len(after)} samples after the warm-up", file=sys.stderr)
    sys.exit(1)
k = max(1, len(after) // 10)
growth = statistics.mean(after[-k:]) - statistics.mean(after[:k])
print(f"after the {warmup:.0f} s warm-up ({len(after)} samples): min {min(after):.1f} MiB, max {max(after):.1f} MiB, "
      f"growth {growth:+.2f} MiB (mean of the last {k} samples - mean of the first {k})")
ok = c["failed"] == 0 and c["verification_failures"] == 0 and c["completed"] > 0
if not ok:
    print("soak: FAIL: failed or unverified streams (or none completed)", file=sys.stderr)
if max_growth and os.environ.get("ASAN_OPTIONS"):
    # AddressSanitizer's quarantine and shadow memory grow RSS by design.
    print("soak: RSS growth not asserted under AddressSanitizer")
elif max_growth and growth > float(max_growth):
    print(f"soak: FAIL: RSS grew {growth:.2f} MiB after the warm-up (limit {max_growth} MiB)", file=sys.stderr)
    ok = False
sys.exit(0 if ok else 1)
EOF

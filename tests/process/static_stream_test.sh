#!/usr/bin/env bash
# A canonical stream served from static files (flexgs export-stream, flexgs-client
# --from), against the same stream over gRPC, with the real binaries (~10 s, no GPU):
#   1. for several budgets and both encodings the client reading the files ends with the
#      same levels and the same final state (SHA-256 of what it holds) as a gRPC client;
#   2. a flipped byte in blocks.bin: exit 2 and an error naming the block;
#   3. a damaged index (a level's count changed, a truncated file, blocks.bin cut short):
#      exit 2 and an error naming what is wrong, before any block is applied.
#   static_stream_test.sh FLEXGS FLEXGS_SERVER FLEXGS_CLIENT
set -euo pipefail
FLEXGS=$1 SERVER=$2 CLIENT=$3
source "$(dirname "$0")/lib.sh"
flexgs_tmpdir static-stream

mkdir -p "$WORK/scenes"
"$FLEXGS" generate --out "$WORK/s.ply" --count 20000 --sh-degree 1 --seed 4 > /dev/null
"$FLEXGS" elasticize "$WORK/s.ply" --out "$WORK/scenes/synth.flexgs" --orbit 4 --width 64 --height 64 > /dev/null
for enc in quantized lossless; do
  "$FLEXGS" export-stream "$WORK/scenes/synth.flexgs" --out "$WORK/export-$enc" --encoding $enc \
    --max-chunk-bytes 16384 > /dev/null || fail "export-stream --encoding $enc"
done
start_server server --host 127.0.0.1 --port 0 --scenes "$WORK/scenes" --metrics-port 0 --max-chunk-bytes 16384

# --- 1. Same state from the files as over gRPC. ------------------------------------------
state() { json "$1/stats.json" '"%d %s" % (len(j["levels"]), j["final_state_sha256"])'; }
for enc in quantized lossless; do
  for budget in "--budget-ratio 0.07" "--budget-ratio 0.15" "--budget 3MiB" "--budget-ratio 1"; do
    tag="$enc ${budget// /=}"
    # shellcheck disable=SC2086  # $budget is a flag and its value
    "$CLIENT" --server "127.0.0.1:$PORT" --scene synth $budget --encoding $enc --no-render --json --quiet \
      --out "$WORK/grpc" 2> "$WORK/grpc.err" || fail "$tag: gRPC stream"
    # shellcheck disable=SC2086
    "$CLIENT" --from "$WORK/export-$enc" $budget --encoding $enc --no-render --json --quiet \
      --out "$WORK/static" 2> "$WORK/static.err" || fail "$tag: stream from the export"
    [[ $(state "$WORK/grpc") == "$(state "$WORK/static")" ]] ||
      fail "$tag: from the files $(state "$WORK/static"), over gRPC $(state "$WORK/grpc")"
    echo "$tag: $(state "$WORK/static" | cut -d' ' -f1) levels, identical final state"
  done
done

# --- 2. A flipped byte in a block. --------------------------------------------------------
cp -r "$WORK/export-quantized" "$WORK/bad"
python3 - "$WORK/bad/blocks.bin" << 'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 3] ^= 0x10
open(p, "wb").write(bytes(b))
PY
set +e
"$CLIENT" --from "$WORK/bad" --budget-ratio 1 --no-render --quiet --out "$WORK/x" > /dev/null 2> "$WORK/bad.err"
rc=$?
set -e
[[ $rc == 2 ]] || fail "a damaged block: exit $rc, want 2"
grep -Eq "block [0-9]+ \(sequence [0-9]+, level [0-9]+\) fails its CRC-32C" "$WORK/bad.err" ||
  fail "a damaged block is not named: $(tail -1 "$WORK/bad.err")"
echo "damaged block: $(grep -o 'block [0-9]* (sequence [0-9]*, level [0-9]*)' "$WORK/bad.err")"

# --- 3. A damaged index or blocks file. ---------------------------------------------------
expect_refused() {  # expect_refused WHAT PATTERN: the export in $WORK/bad is refused naming PATTERN
  set +e
  "$CLIENT" --from "$WORK/bad" --budget-ratio 0.15 --no-render --quiet --out "$WORK/x" > /dev/null 2> "$WORK/bad.err"
  local rc=$?
  set -e
  [[ $rc == 2 ]] || fail "$1: exit $rc, want 2"
  grep -q "$2" "$WORK/bad.err" || fail "$1: no '$2' in: $(tail -1 "$WORK/bad.err")"
  echo "$1: refused ($2)"
}
rm -rf "$WORK/bad" && cp -r "$WORK/export-quantized" "$WORK/bad"
python3 - "$WORK/bad/index.json" << 'PY'
import json, sys
p = sys.argv[1]
j = json.load(open(p))
j["levels"][3]["gaussians"] += 1
json.dump(j, open(p, "w"))
PY
expect_refused "a level's count changed" "level 3 contradicts"
rm -rf "$WORK/bad" && cp -r "$WORK/export-quantized" "$WORK/bad"
head -c 2000 "$WORK/export-quantized/index.json" > "$WORK/bad/index.json"
expect_refused "a truncated index" "index.json: invalid JSON"
rm -rf "$WORK/bad" && cp -r "$WORK/export-quantized" "$WORK/bad"
truncate -s -100 "$WORK/bad/blocks.bin"
expect_refused "blocks.bin cut short" "the index says"
echo "static_stream_test: ok"

#!/usr/bin/env bash
# Bad scene directories at start-up and writers on a full disk (no GPU, ~10 s):
#   1. --scenes a regular file, or missing: exit 1 at once, with a message naming it (and
#      --first-level-priority-ms / --yield-between-writes out of range: CLI11's exit and message);
#   2. a directory with one good bundle and bad entries (a bundle with a flipped byte,
#      a FIFO where manifest.json should be, a .flexgs that is a file, a dangling .ply
#      symlink): each bad one is logged with its reason, the good one is served, and
#      nothing blocks on the FIFO;
#   3. as an unprivileged user (setpriv), a scenes directory it may not read: exit 1
#      ("Permission denied"); a bundle file it may not read: that scene is skipped;
#   4. scenes on a read-only tmpfs: served (the server never writes there);
#   5. `flexgs elasticize` (new bundle, and replacing one) and `flexgs train` on a full
#      tmpfs: a clear ENOSPC error, no partial bundle or staging directory left, the
#      replaced bundle intact and still what a server loads.
# Parts 3-5 need root (setpriv, mount); without it they are skipped with a message.
#   fault_startup_test.sh FLEXGS FLEXGS_SERVER FLEXGS_CLIENT
set -euo pipefail
FLEXGS=$1 SERVER=$2 CLIENT=$3
source "$(dirname "$0")/lib.sh"
flexgs_tmpdir fault-startup
chmod 755 "$WORK"  # part 3 runs the server as another user
MNT=""
unmount() { if [[ -n $MNT ]]; then umount "$MNT" 2> /dev/null; fi; }
at_exit unmount
# expect_exit CODE PATTERN LOG CMD...: CMD exits CODE within 20 s (x SCALE), LOG matches PATTERN.
expect_exit() {
  local code=$1 pattern=$2 log=$3
  shift 3
  set +e
  timeout $((20 * SCALE)) "$@" > "$WORK/out.txt" 2> "$log"
  local rc=$?
  set -e
  [[ $rc != 124 ]] || fail "'$*' still running after $((20 * SCALE)) s"
  [[ $rc == "$code" ]] || fail "'$*': exit $rc, want $code"
  grep -q -- "$pattern" "$log" || fail "'$*': no '$pattern' in its log"
  echo "  exit $rc: $(grep -m1 -- "$pattern" "$log" | sed 's/^.*\] //' | cut -c1-160)"
}
serve() {  # serve LOGNAME SCENES [PREFIX...]: a server of SCENES run by PREFIX, SERVING; sets PORT
  local name=$1 scenes=$2
  shift 2
  local SERVER_WRAP=("$@")
  start_server "$name" --host 127.0.0.1 --port 0 --scenes "$scenes" --metrics-port 0 --rescan-interval 0
}
stream_ok() {  # stream_ok OUTDIR SCENE: a small verified stream; prints the model digest
  "$CLIENT" --server "127.0.0.1:$PORT" --scene "$2" --budget-ratio 0.2 --no-render --json --quiet \
    --out "$WORK/$1" 2> "$WORK/$1.err" || fail "stream of '$2'"
  json "$WORK/$1/stats.json" 'j["model_digest"]'
}
digest_of() { json "$1/manifest.json" 'j["digest"]'; }

GI=(--orbit 4 --width 64 --height 64)
"$FLEXGS" generate --out "$WORK/s1.ply" --count 30000 --seed 1 > /dev/null
"$FLEXGS" generate --out "$WORK/s2.ply" --count 30000 --seed 2 > /dev/null
"$FLEXGS" elasticize "$WORK/s1.ply" --out "$WORK/good.flexgs" "${GI[@]}" > /dev/null
GOOD=$(digest_of "$WORK/good.flexgs")

# --- 1. Not a directory / missing. -------------------------------------------------
echo "1. unusable --scenes:"
expect_exit 1 "cannot list scenes directory .*Not a directory" "$WORK/file.log" \
  "$SERVER" --port 0 --metrics-port 0 --scenes "$WORK/s1.ply"
expect_exit 1 "cannot list scenes directory .*No such file or directory" "$WORK/missing.log" \
  "$SERVER" --port 0 --metrics-port 0 --scenes "$WORK/no-such-dir"
# Scheduling flags out of range or of the wrong type: CLI11's error naming the flag.
expect_exit 105 "first-level-priority-ms: Value -1 not in range 0 to 10000" "$WORK/gate.log" \
  "$SERVER" --port 0 --metrics-port 0 --scenes "$WORK" --first-level-priority-ms -1
expect_exit 104 "yield-between-writes" "$WORK/yield.log" \
  "$SERVER" --port 0 --metrics-port 0 --scenes "$WORK" --yield-between-writes maybe

# --- 2. One good scene among bad ones. ------------------------------------------------
echo "2. bad entries skipped, the good scene served:"
S=$WORK/mixed
mkdir -p "$S"
cp -r "$WORK/good.flexgs" "$S/good.flexgs"
cp -r "$WORK/good.flexgs" "$S/flipped.flexgs"
python3 - "$S/flipped.flexgs/gaussians.ply" << 'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0x01
open(p, "wb").write(bytes(b))
EOF
mkdir "$S/fifo.flexgs"
mkfifo "$S/fifo.flexgs/manifest.json"
echo "not a bundle" > "$S/file.flexgs"
ln -s "$WORK/nowhere.ply" "$S/dangling.ply"
serve mixed "$S"
for want in "flipped.flexgs.*gaussians.ply.*SHA-256" "fifo.flexgs.*not a regular file" \
            "file.flexgs: a .flexgs scene must be a bundle directory" "dangling.ply: not a regular file"; do
  grep -q "skipping scene .*$want" "$WORK/mixed.log" || fail "no 'skipping scene ...$want' in the log"
  echo "  $(grep -m1 "skipping scene .*$want" "$WORK/mixed.log" | sed 's/^.*\] //' | cut -c1-160)"
done
grep -q "SERVING 1 scene" "$WORK/mixed.log" || fail "not serving exactly the good scene"
[[ $(stream_ok mixed-stream good) == "$GOOD" ]] || fail "good scene: wrong digest"
stop_server KILL

if [[ $(id -u) != 0 ]]; then
  echo "SKIP parts 3-5 (unreadable as another user, read-only and full tmpfs): need root"
  echo "PASS"
  exit 0
fi

# --- 3. Permissions, as an unprivileged user. ------------------------------------------
AS_NOBODY=(setpriv --reuid 65534 --regid 65534 --clear-groups)
if "${AS_NOBODY[@]}" "$SERVER" --help > /dev/null 2>&1; then
  echo "3. unreadable for the server's user (uid 65534):"
  mkdir -p "$WORK/locked" "$WORK/perm"
  chmod 000 "$WORK/locked"
  expect_exit 1 "cannot list scenes directory .*Permission denied" "$WORK/locked.log" \
    "${AS_NOBODY[@]}" "$SERVER" --port 0 --metrics-port 0 --scenes "$WORK/locked"
  cp -r "$WORK/good.flexgs" "$WORK/perm/good.flexgs"
  cp -r "$WORK/good.flexgs" "$WORK/perm/secret.flexgs"
  chmod 000 "$WORK/perm/secret.flexgs/elastic.safetensors"
  serve perm "$WORK/perm" "${AS_NOBODY[@]}"
  grep -q "skipping scene .*secret.flexgs.*Permission denied" "$WORK/perm.log" || fail "unreadable file not reported"
  echo "  $(grep -m1 "skipping scene .*secret" "$WORK/perm.log" | sed 's/^.*\] //' | cut -c1-160)"
  [[ $(stream_ok perm-stream good) == "$GOOD" ]] || fail "perm: wrong digest"
  stop_server KILL
else
  echo "SKIP part 3: cannot run the server as uid 65534 with setpriv"
fi

# --- 4. and 5. tmpfs mounts. -------------------------------------------------------------
MNT=$WORK/mnt
mkdir -p "$MNT"
if ! mount -t tmpfs -o size=3m tmpfs "$MNT" 2> /dev/null; then
  MNT=""
  echo "SKIP parts 4-5: cannot mount a tmpfs here (no CAP_SYS_ADMIN?)"
  echo "PASS"
  exit 0
fi
echo "4. scenes on a read-only mount:"
cp -r "$WORK/good.flexgs" "$MNT/good.flexgs"
mount -o remount,ro "$MNT"
serve ro "$MNT"
[[ $(stream_ok ro-stream good) == "$GOOD" ]] || fail "read-only mount: wrong digest"
echo "  served $GOOD"
stop_server KILL
mount -o remount,rw "$MNT"

echo "5. writers on a full disk (3 MiB tmpfs holding a 2.1 MB bundle):"
no_leftovers() {
  local left
  left=$(find "$MNT" -mindepth 1 -maxdepth 1 ! -name good.flexgs -printf '%f ')
  [[ -z $left ]] || fail "$1 left behind: $left"
}
# A new bundle that does not fit.
expect_exit 1 "No space left on device" "$WORK/enospc-new.log" \
  "$FLEXGS" elasticize "$WORK/s2.ply" --out "$MNT/new.flexgs" "${GI[@]}"
no_leftovers "a failed new bundle"
# Replacing the existing bundle: the staging copy does not fit; the old one stays whole.
expect_exit 1 "No space left on device" "$WORK/enospc-replace.log" \
  "$FLEXGS" elasticize "$WORK/s2.ply" --out "$MNT/good.flexgs" "${GI[@]}"
no_leftovers "a failed replacement"
[[ $(digest_of "$MNT/good.flexgs") == "$GOOD" ]] || fail "the replaced bundle's manifest changed"
"$FLEXGS" plan "$MNT/good.flexgs" --budget-ratio 0.2 > /dev/null 2> "$WORK/plan.err" ||
  fail "the bundle that survived the failed replacement does not load"
serve full "$MNT"
[[ $(stream_ok full-stream good) == "$GOOD" ]] || fail "full disk: wrong digest served"
stop_server KILL
# Training: the checkpoint or the bundle hits the full disk.
dd if=/dev/zero of="$MNT/filler" bs=64k 2> /dev/null || true  # until ENOSPC
"$FLEXGS" generate --out "$WORK/small.ply" --count 3000 --seed 3 > /dev/null
expect_exit 1 "No space left on device" "$WORK/enospc-train.log" \
  "$FLEXGS" train "$WORK/small.ply" --out "$MNT/trained.flexgs" --iters 2 --orbit 2 --width 32 --threads 1
rm -f "$MNT/filler"
no_leftovers "a failed training run"
echo "PASS"

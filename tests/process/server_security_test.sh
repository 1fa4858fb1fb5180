#!/usr/bin/env bash
# flexgs-server security and request limits with the real binaries (no GPU needed):
#   - openssl makes a CA, a server certificate (SAN localhost, 127.0.0.1), a client
#     certificate and a rogue self-signed one;
#   - TLS: flexgs-client, flexgs-loadgen and flexgs-health-probe work and end in the
#     plaintext run's state; a plaintext client is refused;
#   - mutual TLS (set by FLEXGS_TLS_* variables): no or a foreign client certificate is
#     refused, the CA's one works;
#   - bearer tokens: none / wrong -> UNAUTHENTICATED; a token without the scene ->
#     PERMISSION_DENIED with the same message for an existing and a missing scene;
#     health and metrics open; no token in any log;
#   - limits: a burst over --stream-rate -> RESOURCE_EXHAUSTED, a chunk size over
#     --max-client-chunk-bytes -> INVALID_ARGUMENT, a request over --max-request-bytes
#     -> RESOURCE_EXHAUSTED, a scene id over 256 bytes -> INVALID_ARGUMENT;
#   - bad TLS/token/limit settings: exit 1 with the reason, before listening.
#   server_security_test.sh FLEXGS FLEXGS_SERVER FLEXGS_CLIENT FLEXGS_LOADGEN HEALTH_PROBE
set -euo pipefail
FLEXGS=$1 SERVER=$2 CLIENT=$3 LOADGEN=$4 PROBE=$5
if ! command -v openssl > /dev/null; then
  echo "SKIP: openssl not found (needed to make test certificates)"
  exit 77
fi
source "$(dirname "$0")/lib.sh"
flexgs_tmpdir server-security

# --- Certificates (EC P-256: fast to make) -------------------------------------------
cd "$WORK"
EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${EC[@]}" -days 2 -subj "/CN=flexgs test CA" -keyout ca.key -out ca.pem 2> /dev/null
sign() {  # sign NAME SUBJECT EXTENSIONS
  openssl req "${EC[@]}" -subj "$2" -keyout "$1.key" -out "$1.csr" 2> /dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile "$1.ext" \
    -out "$1.pem" 2> /dev/null
}
sign server "/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
sign client "/CN=flexgs test client" "extendedKeyUsage=clientAuth"
openssl req -x509 "${EC[@]}" -days 2 -subj "/CN=rogue client" -keyout rogue.key -out rogue.pem 2> /dev/null
echo "not a certificate" > garbage.pem
cd - > /dev/null

# Two small plain PLY scenes (Global Importance at load): 'synth' and 'other'.
mkdir -p "$WORK/scenes"
"$FLEXGS" generate --out "$WORK/scenes/synth.ply" --count 3000 --sh-degree 1 > /dev/null
"$FLEXGS" generate --out "$WORK/scenes/other.ply" --count 1000 > /dev/null

TOKEN_SYNTH=tok-synth-4f1c9a7e2b6d8035
TOKEN_ALL=tok-all-9e2d7b4c1a8f6053
TOKEN_WRONG=tok-wrong-000000000000000
printf '# test tokens\n%s synth\n%s *\n' "$TOKEN_SYNTH" "$TOKEN_ALL" > "$WORK/tokens.txt"
for t in SYNTH ALL WRONG; do v=TOKEN_$t; printf '%s\n' "${!v}" > "$WORK/$t.token"; done

# All servers: same chunk size, so every stream of a scene ends in the same state.
SERVER_ARGS=(--host 127.0.0.1 --port 0 --scenes "$WORK/scenes" --gi-views 4 --gi-size 64 --max-chunk-bytes 65536
             --drain-seconds 0)
serve() {  # serve NAME ARGS...: a server with SERVER_ARGS (and --metrics-port 0 unless ARGS set one), SERVING
  local name=$1
  shift
  local metrics=(--metrics-port 0)
  [[ " $* " == *" --metrics-port "* ]] && metrics=()
  start_server "$name" "${SERVER_ARGS[@]}" "${metrics[@]}" "$@"
}
# run_client NAME SCENE ARGS...: flexgs-client, exit code in RC, stderr in $WORK/NAME.err.
# Transport failures are retried for GIVE_UP seconds: generous for runs that must work
# on a loaded machine, short (GIVE_UP=2) where a refused handshake is expected.
run_client() {
  local name=$1 scene=$2
  shift 2
  set +e
  "$CLIENT" --scene "$scene" --budget-ratio 0.5 --no-render --json --quiet --give-up-after "${GIVE_UP:-30}" \
    --out "$WORK/$name" "$@" > /dev/null 2> "$WORK/$name.err"
  RC=$?
  set -e
}
state() { json "$WORK/$1/stats.json" 'j["final_state_sha256"]'; }
# Probes that must succeed get a generous deadline: a TLS handshake on a loaded 2-core
# machine can take longer than the probe's 1 s default.
PROBE_MS=20000
wait_for_log() {  # wait_for_log FILE PATTERN: the server may log a refused handshake after the client gave up
  for _ in $(seq 1 100); do
    grep -q -- "$2" "$1" && return 0
    sleep 0.1
  done
  return 1
}
expect_refused() {  # expect_refused NAME CODE: the last run_client failed with CODE
  [[ $RC == 2 ]] || fail "$1: client exit $RC, want 2"
  grep -q "$2" "$WORK/$1.err" || fail "$1: no $2 in: $(cat "$WORK/$1.err")"
}
error_message() { sed -n 's/^flexgs-client: error: [A-Za-z]*([^)]*): //p' "$WORK/$1.err"; }

# --- Plaintext: reference state and request limits -----------------------------------
serve plain --max-request-bytes 4096 --max-client-chunk-bytes 65536
ADDR=127.0.0.1:$PORT
grep -q "transport: plaintext" "$WORK/plain.log" || fail "no plaintext transport log line"
run_client ref synth --server "$ADDR"
[[ $RC == 0 ]] || fail "plaintext stream: exit $RC: $(cat "$WORK/ref.err")"
REF=$(state ref)
[[ ${#REF} == 64 ]] || fail "no final state digest in the plaintext run"
run_client chunk synth --server "$ADDR" --max-chunk-bytes 131072
expect_refused chunk INVALID_ARGUMENT
grep -q "limit of 65536 bytes" "$WORK/chunk.err" || fail "chunk limit not named: $(cat "$WORK/chunk.err")"
LONG_ID=$(head -c 5000 /dev/zero | tr '\0' x)
run_client big "$LONG_ID" --server "$ADDR"
expect_refused big RESOURCE_EXHAUSTED
grep -q "larger than max (5[0-9]* vs. 4096)" "$WORK/big.err" || fail "request size limit not named"
run_client under "${LONG_ID:0:3000}" --server "$ADDR"  # below 4096 bytes: decoded, over the scene id limit
expect_refused under INVALID_ARGUMENT
grep -q "at most 256 bytes" "$WORK/under.err" || fail "scene id limit not named: $(cat "$WORK/under.err")"
run_client at_limit "${LONG_ID:0:256}" --server "$ADDR"  # at the scene id limit: looked up
expect_refused at_limit NOT_FOUND
echo "plaintext: state ${REF:0:16}...; chunk 131072 > 65536 INVALID_ARGUMENT; 5000-byte request RESOURCE_EXHAUSTED;" \
  "3000-byte scene id INVALID_ARGUMENT, 256-byte NOT_FOUND"

# --- TLS ------------------------------------------------------------------------------
serve tls --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key"
ADDR=127.0.0.1:$PORT
grep -q "transport: TLS" "$WORK/tls.log" || fail "no TLS transport log line"
run_client tls_ok synth --server "$ADDR" --tls-ca "$WORK/ca.pem"
[[ $RC == 0 ]] || fail "TLS stream: exit $RC: $(cat "$WORK/tls_ok.err")"
[[ $(state tls_ok) == "$REF" ]] || fail "TLS stream state differs from the plaintext one"
GIVE_UP=2 run_client tls_plain synth --server "$ADDR"
expect_refused tls_plain UNAVAILABLE
wait_for_log "$WORK/tls.log" "Handshake failed" || fail "the TLS server did not log the failed handshake"
"$PROBE" --addr "$ADDR" --tls-ca "$WORK/ca.pem" --timeout-ms "$PROBE_MS" > /dev/null || fail "probe over TLS"
"$PROBE" --addr "$ADDR" --tls-ca "$WORK/ca.pem" --tls-server-name localhost --timeout-ms "$PROBE_MS" > /dev/null ||
  fail "probe over TLS with --tls-server-name"
set +e
"$PROBE" --addr "$ADDR" --timeout-ms 500 > /dev/null 2>&1; rc=$?
set -e
[[ $rc == 2 ]] || fail "plaintext probe against TLS: exit $rc, want 2"
"$LOADGEN" --target "$ADDR" --scene synth --total 2 --concurrency 2 --progress-s 0 --json \
  --tls-ca "$WORK/ca.pem" > "$WORK/tls_load.json" 2> "$WORK/tls_load.err" || fail "loadgen over TLS"
[[ $(json "$WORK/tls_load.json" 'j["counts"]["completed"]') == 2 ]] || fail "loadgen over TLS: not 2 completed"
echo "TLS: client, loadgen and probe OK, same state; plaintext client refused (UNAVAILABLE)"

# --- Mutual TLS, configured by environment variables ----------------------------------
FLEXGS_TLS_CERT=$WORK/server.pem FLEXGS_TLS_KEY=$WORK/server.key FLEXGS_TLS_CA=$WORK/ca.pem serve mtls
ADDR=127.0.0.1:$PORT
grep -q "transport: mutual TLS" "$WORK/mtls.log" || fail "no mutual TLS transport log line"
GIVE_UP=2 run_client mtls_nocert synth --server "$ADDR" --tls-ca "$WORK/ca.pem"
expect_refused mtls_nocert UNAVAILABLE
GIVE_UP=2 run_client mtls_rogue synth --server "$ADDR" --tls-ca "$WORK/ca.pem" --tls-cert "$WORK/rogue.pem" \
  --tls-key "$WORK/rogue.key"
expect_refused mtls_rogue UNAVAILABLE
wait_for_log "$WORK/mtls.log" "peer did not return a certificate" || fail "no 'peer did not return a certificate'"
wait_for_log "$WORK/mtls.log" "certificate verify failed" || fail "no 'certificate verify failed' for the rogue one"
run_client mtls_ok synth --server "$ADDR" --tls-ca "$WORK/ca.pem" --tls-cert "$WORK/client.pem" \
  --tls-key "$WORK/client.key"
[[ $RC == 0 ]] || fail "mutual TLS stream: exit $RC: $(cat "$WORK/mtls_ok.err")"
[[ $(state mtls_ok) == "$REF" ]] || fail "mutual TLS stream state differs from the plaintext one"
"$PROBE" --addr "$ADDR" --tls-ca "$WORK/ca.pem" --tls-cert "$WORK/client.pem" --tls-key "$WORK/client.key" \
  --timeout-ms "$PROBE_MS" > /dev/null || fail "probe with a client certificate"
set +e
"$PROBE" --addr "$ADDR" --tls-ca "$WORK/ca.pem" --timeout-ms 500 > /dev/null 2>&1; rc=$?
set -e
[[ $rc == 2 ]] || fail "probe without a client certificate: exit $rc, want 2"
echo "mutual TLS: no or rogue client certificate refused, the CA's accepted"

# --- Bearer tokens ----------------------------------------------------------------------
METRICS_PORT=$(free_port)
serve auth --tokens-file "$WORK/tokens.txt" --metrics-host 127.0.0.1 --metrics-port "$METRICS_PORT"
ADDR=127.0.0.1:$PORT
grep -q "authentication: bearer tokens, 2 loaded from $WORK/tokens.txt" "$WORK/auth.log" ||
  fail "no token count in the startup log"
run_client no_token synth --server "$ADDR"
expect_refused no_token UNAUTHENTICATED
run_client wrong_token synth --server "$ADDR" --token-file "$WORK/WRONG.token"
expect_refused wrong_token UNAUTHENTICATED
run_client token_ok synth --server "$ADDR" --token-file "$WORK/SYNTH.token"
[[ $RC == 0 ]] || fail "stream with the right token: exit $RC: $(cat "$WORK/token_ok.err")"
[[ $(state token_ok) == "$REF" ]] || fail "authenticated stream state differs"
run_client denied_existing other --server "$ADDR" --token-file "$WORK/SYNTH.token"
expect_refused denied_existing PERMISSION_DENIED
run_client denied_missing no-such-scene --server "$ADDR" --token-file "$WORK/SYNTH.token"
expect_refused denied_missing PERMISSION_DENIED
m1=$(error_message denied_existing)
m2=$(error_message denied_missing)
[[ -n "$m1" && "$m1" == "$m2" ]] || fail "PERMISSION_DENIED messages differ: '$m1' vs '$m2'"
run_client all_missing no-such-scene --server "$ADDR" --token-file "$WORK/ALL.token"
expect_refused all_missing NOT_FOUND
# StreamScene itself (flexgs-client asks GetScene first): through flexgs-loadgen.
load_code() {  # load_code NAME SCENE [ARGS...]: prints "CODE: message" of the one failed stream
  local name=$1 scene=$2
  shift 2
  set +e
  "$LOADGEN" --target "$ADDR" --scene "$scene" --total 1 --concurrency 1 --progress-s 0 --json "$@" \
    > "$WORK/$name.json" 2> "$WORK/$name.err"
  set -e
  json "$WORK/$name.json" '"%s: %s" % next(iter(j["errors"].items()))'
}
s1=$(load_code load_existing other --token-file "$WORK/SYNTH.token")
s2=$(load_code load_missing no-such-scene --token-file "$WORK/SYNTH.token")
[[ "$s1" == PERMISSION_DENIED:* && "$s1" == "$s2" ]] || fail "StreamScene refusals differ: '$s1' vs '$s2'"
[[ "$s1" == "PERMISSION_DENIED: $m1" ]] || fail "StreamScene and GetScene refusals differ: '$s1' vs '$m1'"
s3=$(load_code load_none synth)
[[ "$s3" == UNAUTHENTICATED:* ]] || fail "StreamScene without a token: $s3"
"$PROBE" --addr "$ADDR" --timeout-ms "$PROBE_MS" > /dev/null || fail "health needs no token"
exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT"
printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
METRICS=$(cat <&3)
exec 3<&-
grep -q '^flexgs_auth_failures_total{code="UNAUTHENTICATED"} 3$' <<< "$METRICS" ||
  fail "UNAUTHENTICATED count: $(grep flexgs_auth_failures <<< "$METRICS")"
grep -q '^flexgs_auth_failures_total{code="PERMISSION_DENIED"} 4$' <<< "$METRICS" ||
  fail "PERMISSION_DENIED count: $(grep flexgs_auth_failures <<< "$METRICS")"
echo "tokens: none/wrong UNAUTHENTICATED, other/missing scene PERMISSION_DENIED ('$m1'), health and metrics open"

# --- Stream rate per address, tokens from FLEXGS_TOKENS ------------------------------
FLEXGS_TOKENS="$TOKEN_SYNTH synth; $TOKEN_ALL *" serve rate --stream-rate 0.01 --stream-burst 2
ADDR=127.0.0.1:$PORT
grep -q "authentication: bearer tokens, 2 loaded from FLEXGS_TOKENS" "$WORK/rate.log" ||
  fail "FLEXGS_TOKENS not loaded"
set +e
"$LOADGEN" --target "$ADDR" --scene synth --total 6 --concurrency 6 --progress-s 0 --json \
  --token-file "$WORK/ALL.token" > "$WORK/burst.json" 2> "$WORK/burst.err"
set -e
read -r completed limited <<< "$(json "$WORK/burst.json" \
  '"%d %d" % (j["counts"]["completed"], j["counts"]["failed_by_code"].get("RESOURCE_EXHAUSTED", 0))')"
[[ $completed == 2 && $limited == 4 ]] || fail "burst of 6 at burst 2: $completed completed, $limited limited"
grep -q "too many new streams from this address" "$WORK/burst.json" || fail "rate-limit message missing"
echo "stream rate: 6 at once with burst 2 -> 2 completed, 4 RESOURCE_EXHAUSTED"

# No token value in any server log or output.
for t in "$TOKEN_SYNTH" "$TOKEN_ALL" "$TOKEN_WRONG"; do
  if grep -l -- "$t" "$WORK"/*.log "$WORK"/*.out; then fail "a token appears in the files above"; fi
done

# --- Bad settings: exit 1 with the reason, before listening ---------------------------
bad_start() {  # bad_start NAME EXPECTED-MESSAGE ARGS...
  local name=$1 want=$2
  shift 2
  set +e
  "$SERVER" "${SERVER_ARGS[@]}" --metrics-port 0 "$@" > "$WORK/$name.out" 2> "$WORK/$name.log"
  local rc=$?
  set -e
  [[ $rc == 1 ]] || fail "$name: exit $rc, want 1"
  grep -q -- "$want" "$WORK/$name.log" || fail "$name: no '$want' in the log"
  if grep -q "^listening" "$WORK/$name.out"; then fail "$name: listened before failing"; fi
}
bad_start bad_nokey "TLS needs both --tls-cert and --tls-key" --tls-cert "$WORK/server.pem"
bad_start bad_mismatch "is not the key of the first certificate" --tls-cert "$WORK/server.pem" \
  --tls-key "$WORK/client.key"
bad_start bad_cert "holds no PEM certificate" --tls-cert "$WORK/garbage.pem" --tls-key "$WORK/server.key"
bad_start bad_ca "--tls-ca: " --tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key" --tls-ca "$WORK/nope.pem"
printf '%s synth\nsecret-short x\n' "$TOKEN_ALL" > "$WORK/bad_tokens.txt"
bad_start bad_tokens "bad_tokens.txt:2: token is 12 characters" --tokens-file "$WORK/bad_tokens.txt"
grep -q "secret-short" "$WORK/bad_tokens.log" && fail "a bad token was echoed"
FLEXGS_TOKENS="$TOKEN_ALL *" bad_start bad_both "not both" --tokens-file "$WORK/tokens.txt"
bad_start bad_chunk "--max-client-chunk-bytes 1000 is outside" --max-client-chunk-bytes 1000
echo "bad TLS files, tokens and limits: exit 1 with the reason, nothing listening"
echo "PASS"

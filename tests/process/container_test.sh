#!/usr/bin/env bash
# The Docker images for real, built and run with podman (no Docker engine needed; see
# /work/shared/docs/CONTAINERS.md): docker/server.Dockerfile and docker/client.Dockerfile
# on a local Debian bookworm base (debootstrap, cached as localhost/debian:bookworm),
# the server container on host networking with a scenes volume and FLEXGS_* settings,
# health via the image's HEALTHCHECK (flexgs-health-probe), a whole stream received by
# the client container (stats.json checked), /metrics scraped, SIGTERM stop -> exit 0.
#
#   container_test.sh FLEXGS [HOST_HEALTH_PROBE]
#
# Opt-in (exit 77 otherwise): FLEXGS_CONTAINER_TESTS=1, or CI=true. A cold run
# (debootstrap + two image builds) takes minutes; the base and the images stay cached
# (FLEXGS_CONTAINER_CLEAN=1 removes the two test images afterwards).
# Skips (77) when podman cannot run. Installs nothing but, as root, the one-line
# /etc/containers/containers.conf that CONTAINERS.md requires.
set -euo pipefail
FLEXGS=$1
HOST_PROBE=${2:-}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BASE=localhost/debian:bookworm
SERVER_IMG=localhost/flexgs-server:ctest
CLIENT_IMG=localhost/flexgs-client:ctest
NAME=flexgs-ctest-$$

skip() { echo "SKIP: $*"; exit 77; }
if [[ "${FLEXGS_CONTAINER_TESTS:-0}" != 1 && "${CI:-}" != true ]]; then
  skip "container test is opt-in: set FLEXGS_CONTAINER_TESTS=1 (CI=true runs it too)"
fi
command -v podman > /dev/null || skip "podman not installed (FLEXGS_EXTRAS=1 deploy/install-deps.sh)"
if [[ $(id -u) == 0 && ! -f /etc/containers/containers.conf ]]; then
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = []\n' > /etc/containers/containers.conf
fi
P=(podman --runtime runc --cgroup-manager=cgroupfs)
"${P[@]}" info > /dev/null 2>&1 || skip "podman info fails: $("${P[@]}" info 2>&1 | tail -1)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flexgs-container.XXXXXX")
cleanup() {
  "${P[@]}" rm -f -t 0 "$NAME" > /dev/null 2>&1 || true
  if [[ "${FLEXGS_CONTAINER_CLEAN:-0}" == 1 ]]; then
    "${P[@]}" rmi -f "$SERVER_IMG" "$CLIENT_IMG" > /dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  if "${P[@]}" container exists "$NAME" 2>/dev/null; then
    echo "--- server container log ---" >&2
    "${P[@]}" logs "$NAME" 2>&1 | tail -40 >&2 || true
  fi
  exit 1
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
T0=$(date +%s)
phase() { echo "[$(( $(date +%s) - T0 )) s] $*"; }

# Base image from Debian's own packages (no registry is reachable), cached.
if ! "${P[@]}" image exists "$BASE"; then
  command -v debootstrap > /dev/null || skip "no $BASE image and no debootstrap to make it"
  phase "debootstrap bookworm -> $BASE"
  mkdir "$WORK/rootfs"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
  tar -C "$WORK/rootfs" -c . | "${P[@]}" import - "$BASE" > /dev/null || fail "podman import"
  rm -rf "$WORK/rootfs"
fi

# --format docker keeps HEALTHCHECK (OCI image configs have no such field).
build() {
  local file=$1 tag=$2
  phase "build $file -> $tag"
  "${P[@]}" build --format docker --network host \
    --build-arg BASE_IMAGE="$BASE" --build-arg RUNTIME_IMAGE="$BASE" --build-arg FLEXGS_BUILD_TYPE=None \
    -f "$SRC/$file" -t "$tag" "$SRC" > "$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log" >&2; fail "build $file"; }
}
build docker/server.Dockerfile "$SERVER_IMG"
build docker/client.Dockerfile "$CLIENT_IMG"
phase "images built"

# Image metadata the manifests rely on.
cfg=$("${P[@]}" image inspect \
  --format '{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.ExposedPorts}}|{{json .Config.Volumes}}' \
  "$SERVER_IMG")
[[ $cfg == 10001:10001\|* ]] || fail "server image user: $cfg"
[[ $cfg == *'["flexgs-server"]'* ]] || fail "server entrypoint: $cfg"
[[ $cfg == *50051/tcp* && $cfg == *9464/tcp* ]] || fail "exposed ports: $cfg"
[[ $cfg == *'"/scenes"'* ]] || fail "scenes volume: $cfg"
hc=$("${P[@]}" image inspect --format '{{json .Config.Healthcheck}}' "$SERVER_IMG")
[[ $hc == *flexgs-health-probe* ]] || fail "no HEALTHCHECK in the server image: $hc"
ccfg=$("${P[@]}" image inspect --format '{{.Config.User}}|{{json .Config.Entrypoint}}' "$CLIENT_IMG")
[[ $ccfg == '10001:10001|["flexgs-client"]' ]] || fail "client image: $ccfg"
for b in flexgs-server flexgs-health-probe flexgs-client; do
  "${P[@]}" run --rm --network host --no-healthcheck --entrypoint test "$SERVER_IMG" -x "/usr/local/bin/$b" \
    || fail "server image lacks /usr/local/bin/$b"
done

# A small elastic scene, made with the host's flexgs, readable by UID 10001.
mkdir -p "$WORK/scenes" "$WORK/out"
"$FLEXGS" generate --out "$WORK/synth.ply" --count 20000 --sh-degree 3 > /dev/null
"$FLEXGS" elasticize "$WORK/synth.ply" --out "$WORK/scenes/synth.flexgs" --orbit 4 --width 64 --height 64 > /dev/null
chmod -R a+rX "$WORK/scenes"
chmod 0777 "$WORK/out"
chmod 0755 "$WORK"

PORT=$(free_port)
METRICS_PORT=$(free_port)
while [[ $METRICS_PORT == "$PORT" ]]; do METRICS_PORT=$(free_port); done
phase "run server container on :$PORT (metrics :$METRICS_PORT)"
"${P[@]}" run -d --network host --name "$NAME" --health-interval disable \
  -v "$WORK/scenes:/scenes:ro" \
  -e FLEXGS_PORT="$PORT" -e FLEXGS_METRICS_PORT="$METRICS_PORT" -e FLEXGS_DRAIN_SECONDS=2 \
  "$SERVER_IMG" > /dev/null 2>> "$WORK/podman.log" || fail "podman run server"

healthy=0
for _ in $(seq 1 120); do
  [[ $("${P[@]}" inspect --format '{{.State.Running}}' "$NAME") == true ]] || fail "server container exited"
  if "${P[@]}" healthcheck run "$NAME" > /dev/null 2>&1; then healthy=1; break; fi
  sleep 1
done
[[ $healthy == 1 ]] || fail "HEALTHCHECK never healthy"
if [[ -n "$HOST_PROBE" ]]; then
  "$HOST_PROBE" --addr "127.0.0.1:$PORT" --service flexgs.v1.SceneService > /dev/null || fail "host probe"
fi
[[ $("${P[@]}" exec "$NAME" id -u) == 10001 ]] || fail "server not running as UID 10001"
phase "server healthy"

"${P[@]}" run --rm --network host -v "$WORK/out:/out" "$CLIENT_IMG" \
  --server "127.0.0.1:$PORT" --scene synth --budget-ratio 0.15 --no-render --json --out /out --quiet \
  > "$WORK/client.log" 2>&1 || { cat "$WORK/client.log" >&2; fail "client container"; }
[[ -f "$WORK/out/stats.json" ]] || fail "no stats.json"
python3 - "$WORK/out/stats.json" <<'PY' || fail "stats.json: $(cat "$WORK/out/stats.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["scene"] == "synth", s["scene"]
assert s["model_gaussians"] == 20000, s["model_gaussians"]
assert s["payload_bytes"] > 0 and s["messages"] > 0
assert s["levels"], "no levels"
assert s["within_budget"] is True
assert s["rejected_messages"] == 0
print(f"client: {len(s['levels'])} levels, {s['payload_bytes']} payload bytes, {s['total_s']:.2f} s")
PY
phase "client container streamed the scene"

exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT" || fail "metrics port"
printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
METRICS=$(cat <&3)
exec 3<&-
[[ $METRICS == "HTTP/1."*" 200"* ]] || fail "metrics status: ${METRICS%%$'\r'*}"
for name in grpc_server_handled_total flexgs_stream_bytes_sent_total flexgs_streams_active; do
  grep -q "^$name" <<< "$METRICS" || fail "metric $name missing"
done
grep -Eq '^grpc_server_handled_total\{.*grpc_method="StreamScene".*\} [1-9]' <<< "$METRICS" \
  || grep -Eq '^grpc_server_handled_total\{.*\} [1-9]' <<< "$METRICS" || fail "no handled call counted"

phase "stop (SIGTERM)"
"${P[@]}" stop -t 20 "$NAME" > /dev/null 2>> "$WORK/podman.log" || fail "podman stop"
rc=$("${P[@]}" inspect --format '{{.State.ExitCode}}' "$NAME")
[[ $rc == 0 ]] || fail "server exit code $rc after SIGTERM"
phase "PASS"

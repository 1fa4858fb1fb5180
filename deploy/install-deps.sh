#!/usr/bin/env bash
# Installs every build and test dependency of flexgs-stream from Debian packages.
# Idempotent: safe to run again; apt-get only (nothing is downloaded by the build).
#
#   sudo deploy/install-deps.sh            # build + test dependencies
#   FLEXGS_DEPS=compile deploy/install-deps.sh   # only what compiling needs (image build stage)
#   FLEXGS_DEPS=runtime deploy/install-deps.sh   # only shared libraries (runtime images)
#   FLEXGS_EXTRAS=1 deploy/install-deps.sh # also independent checkers (torch, grpcio, podman, splat-transform)
#   FLEXGS_CONTAINERS=1 deploy/install-deps.sh   # also podman, runc, debootstrap (tests/process/container_test.sh)
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

COMPILE_PKGS=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libabsl-dev libzstd-dev libeigen3-dev libspdlog-dev libfmt-dev prometheus-cpp-dev
  libcli11-dev nlohmann-json3-dev libpng-dev libssl-dev zlib1g-dev
)
TEST_PKGS=(
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-numpy python3-yaml openssl iproute2 nginx-light yamllint
  clang libclang-rt-14-dev  # tests/sanitize_and_fuzz.sh: ASan/UBSan/libFuzzer runtimes
)
# Shared libraries of the installed binaries (checked with ldd in the image build).
# "a|b": the first name the package index knows -- Debian bookworm names first, then
# Ubuntu 24.04's (64-bit time_t "t64" renames, spdlog 1.12).
RUNTIME_PKGS=(
  "libgrpc++1.51|libgrpc++1.51t64" "libgrpc29|libgrpc29t64" "libprotobuf32|libprotobuf32t64"
  "libabsl20220623|libabsl20220623t64" libzstd1 "libspdlog1.10|libspdlog1.12" libfmt9
  libprometheus-cpp-pull1.0 libprometheus-cpp-core1.0 "libpng16-16|libpng16-16t64"
  "libssl3|libssl3t64" zlib1g ca-certificates
)
# flexgs-view (a window: GLFW, OpenGL through Mesa, Dear ImGui) and its test under a
# virtual display. Not in "compile": the server and client images do not build it.
VIEWER_PKGS=(libglfw3-dev libgl-dev libimgui-dev xvfb xdotool)
EXTRA_PKGS=(python3-torch python3-grpcio python3-protobuf nodejs npm podman runc debootstrap)

mode="${FLEXGS_DEPS:-build}"
case "$mode" in
  runtime) pkgs=("${RUNTIME_PKGS[@]}") ;;
  compile) pkgs=("${COMPILE_PKGS[@]}") ;;
  build)
    pkgs=("${COMPILE_PKGS[@]}" "${TEST_PKGS[@]}" "${VIEWER_PKGS[@]}")
    if [ "${FLEXGS_EXTRAS:-0}" = "1" ]; then pkgs+=("${EXTRA_PKGS[@]}"); fi
    if [ "${FLEXGS_CONTAINERS:-0}" = "1" ]; then pkgs+=(podman runc debootstrap); fi
    ;;
  *) echo "install-deps: FLEXGS_DEPS must be build, compile or runtime (got '$mode')" >&2; exit 2 ;;
esac

# Resolve "a|b" alternatives against the package index (refreshed when one is unknown).
resolve() {
  local alt
  IFS='|' read -r -a alts <<< "$1"
  for alt in "${alts[@]}"; do
    if dpkg-query -W -f='${Status}' "$alt" 2>/dev/null | grep -q "install ok installed" \
       || apt-cache show --no-all-versions "$alt" > /dev/null 2>&1; then
      echo "$alt"; return 0
    fi
  done
  return 1
}
if printf '%s\n' "${pkgs[@]}" | grep -q '|'; then
  updated=0
  for i in "${!pkgs[@]}"; do
    [[ "${pkgs[$i]}" == *"|"* ]] || continue
    if ! r=$(resolve "${pkgs[$i]}"); then
      if [ "$updated" = 0 ]; then $SUDO apt-get update -qq; updated=1; fi
      r=$(resolve "${pkgs[$i]}") || { echo "install-deps: none of ${pkgs[$i]} is known to apt" >&2; exit 1; }
    fi
    pkgs[$i]=$r
  done
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${#missing[@]} package(s): ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#pkgs[@]} packages already installed"
fi

if [ "${FLEXGS_EXTRAS:-0}" = "1" ] && [ "$mode" = "build" ]; then
  if ! command -v splat-transform >/dev/null 2>&1; then
    npm install -g --silent @playcanvas/splat-transform || echo "install-deps: splat-transform unavailable (optional)"
  fi
fi

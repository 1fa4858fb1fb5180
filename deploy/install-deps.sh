#!/usr/bin/env bash
# Installs every build and test dependency of flexgs-stream from Debian packages.
# Idempotent: safe to run again; apt-get only (nothing is downloaded by the build).
#
#   sudo deploy/install-deps.sh            # build + test dependencies
#   FLEXGS_DEPS=runtime deploy/install-deps.sh   # only shared libraries (runtime images)
#   FLEXGS_EXTRAS=1 deploy/install-deps.sh # also independent checkers (torch, grpcio, podman, splat-transform)
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

BUILD_PKGS=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libabsl-dev libzstd-dev libeigen3-dev libspdlog-dev libfmt-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev libpng-dev
  libssl-dev zlib1g-dev
  python3 python3-numpy python3-yaml openssl iproute2 nginx-light yamllint
)
RUNTIME_PKGS=(
  libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 libzstd1 libspdlog1.10 libfmt9
  libprometheus-cpp-pull1.0 libprometheus-cpp-core1.0 libpng16-16 libssl3 zlib1g ca-certificates
)
EXTRA_PKGS=(python3-torch python3-grpcio python3-protobuf nodejs npm podman runc debootstrap clang libclang-rt-14-dev)

mode="${FLEXGS_DEPS:-build}"
if [ "$mode" = "runtime" ]; then
  pkgs=("${RUNTIME_PKGS[@]}")
else
  pkgs=("${BUILD_PKGS[@]}")
  if [ "${FLEXGS_EXTRAS:-0}" = "1" ]; then pkgs+=("${EXTRA_PKGS[@]}"); fi
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

if [ "${FLEXGS_EXTRAS:-0}" = "1" ] && [ "$mode" != "runtime" ]; then
  if ! command -v splat-transform >/dev/null 2>&1; then
    npm install -g --silent @playcanvas/splat-transform || echo "install-deps: splat-transform unavailable (optional)"
  fi
fi

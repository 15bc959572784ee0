#!/usr/bin/env bash
# Installs the build dependencies (Debian 12 packages) and builds moeserve into ./build.
# The CUDA backend is built when nvcc is found (CUDA_ARCHS selects GPU architectures,
# default "90;120": H100/H200 and RTX 50xx).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build pkg-config xz-utils
  libcli11-dev libpcre2-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cuda_args=()
if [ -n "${CUDA_ARCHS:-}" ]; then cuda_args+=("-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHS}"); fi
if [ -n "${MOE_CUDA:-}" ]; then cuda_args+=("-DMOE_CUDA=${MOE_CUDA}"); fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${cuda_args[@]}" >/dev/null
ninja -C build

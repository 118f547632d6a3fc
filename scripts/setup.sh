#!/usr/bin/env bash
# One-time setup on a fresh Debian/Ubuntu machine: system packages (cmake, g++,
# oneDNN, SQLite; clang 14 with its sanitizer and libFuzzer runtimes for `npm run fuzz` and
# the fuzz smoke test; redis-server for the scale-out tests), moto[server] from PyPI (the S3-compatible
# server of the push/pull tests), cuBLAS where nvcc is found (nvidia-cublas from PyPI, for the
# CUDA build), npm dependencies (which builds the native addon), and the real
# all-MiniLM-L6-v2 model into models/. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in cmake g++ libdnnl-dev libsqlite3-dev clang-14 libclang-rt-14-dev redis-server; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
if ((${#need[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Where nvcc is found the build compiles the CUDA code too (ER_CUDA=auto); its GEMMs need
# cuBLAS, which a toolkit without it gets from PyPI's nvidia-cublas wheel (headers and libraries)
if command -v nvcc >/dev/null 2>&1; then
  cuda_inc="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")/include"
  if [ ! -f "$cuda_inc/cublasLt.h" ] && ! python3 -c "import nvidia.cu13, os, sys; sys.exit(not any(os.path.exists(os.path.join(p, 'include', 'cublasLt.h')) for p in nvidia.cu13.__path__))" 2>/dev/null; then
    echo "installing cuBLAS for the CUDA build: nvidia-cublas (PyPI)"
    # not fatal: without it the CUDA build leaves out the GEMMs and the GPU encoder
    python3 -m pip install -q nvidia-cublas ||
      echo "warning: nvidia-cublas did not install; the CUDA build leaves out the GEMMs and the GPU encoder"
  fi
fi
npm ci --no-audit --no-fund
command -v moto_server >/dev/null 2>&1 || python3 -m pip install -q 'moto[server]>=5.2,<6'
# jazzer.js (devDependency, the JS fuzzer) ships only a prebuilt addon linked against glibc 2.38
python3 fuzz/patch-jazzer-glibc.py
python3 scripts/fetch-model.py

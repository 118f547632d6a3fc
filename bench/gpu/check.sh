#!/usr/bin/env bash
# The GPU checks, in one run on a machine with an NVIDIA GPU, nvcc, CMake, ninja and a
# python3 with PyTorch + transformers (no Node.js, no network needed):
#   1. builds bench/gpu (the CUDA kernels, cuBLAS GEMMs, the GPU encoder, their CPU
#      references) for this GPU;
#   2. runs every CUDA kernel against its CPU reference on fresh random inputs, outputs
#      poisoned before each run (native/tests/cuda_kernels_test.cpp);
#   3. runs the GPU encoder against transformers on the same GPU, every layer, fp32, bf16
#      and fp16, through the addon's backend library (embedding_recycler_cuda.so, opened
#      with dlopen as the addon opens it), then times both (bench/gpu/encoder_check.py), on a BERT-base-shaped model
#      and, when bench/.work/gpu-minilm holds it, the real all-MiniLM-L6-v2 (prepare it here
#      first: python3 bench/gpu/encoder_check.py --prepare-minilm models/all-MiniLM-L6-v2
#      bench/.work/gpu-minilm, and carry that folder);
#   4. runs the GPU trainer through the same library: one training step in every mode on small
#      BERT- and MPNet-shaped models, its loss and every trainable tensor's gradient against
#      PyTorch autograd (bench/gpu/encoder_check.py; without a GPU, the same check runs on the
#      CPU through the emulated backend: see --dry-run-cpu there);
# and prints the tables. Writes the logs and gpu-check.md under $OUT (default
# bench/.work/gpu). Exits non-zero when a check fails. On a machine without a GPU it
# builds, then reports SKIP.
#
#   bash bench/gpu/check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-bench/.work/gpu}"
mkdir -p "$out"
build="$(realpath -m "${BUILD_DIR:-build-gpu}")"
arch="${CUDA_ARCH:-}"
if [ -z "$arch" ] && command -v nvidia-smi >/dev/null 2>&1; then
  # this GPU's compute capability (9.0 -> 90), so only its machine code is compiled
  arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
fi
arch="${arch:-90}"
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
start=$(date +%s)
cmake -S bench/gpu -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=${arch}-real" >"$out/configure.log" 2>&1 ||
  { cat "$out/configure.log"; exit 2; }
cmake --build "$build" -j "$(nproc)" >"$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 2; }
echo "built for sm_${arch} in $(( $(date +%s) - start )) s"
{
  echo "# GPU checks, $(date -u +%Y-%m-%d)"
  echo
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  command -v nvidia-smi >/dev/null 2>&1 && echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)"
  echo "- nvcc: $(nvcc --version | tail -1)"
  echo
} >"$out/gpu-check.md"
status=0
"$build/er_cuda_kernels_test" | tee "$out/kernels.log" || status=$?
sed -n '/^| kernel |/,$p' "$out/kernels.log" >>"$out/gpu-check.md"
minilm=()
[ -f bench/.work/gpu-minilm/config.json ] && minilm=(--minilm bench/.work/gpu-minilm)
if python3 -c "import torch, transformers" >/dev/null 2>&1; then
  ER_CUDA_BACKEND="$build/embedding_recycler_cuda.so" python3 bench/gpu/encoder_check.py --bin "$build/er_gpu_encoder" --out "$out" "${minilm[@]}" 2>&1 |
    tee "$out/encoder.log" || status=1
else
  echo "SKIP: no python3 with torch and transformers for the encoder checks"
fi
echo "table: $out/gpu-check.md"
exit $status

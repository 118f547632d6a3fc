// The counter-based generator behind dropout, shared by the CPU (kernels/train_ops.cpp)
// and the GPU (kernels/cuda/cuda_ops.cu), so both keep the same elements for the same
// (seed, stream).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define ER_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define ER_HOST_DEVICE inline
#endif

namespace er {

// 32 random bits for element i of stream `stream`: splitmix64 over a combination of the
// three counters
ER_HOST_DEVICE uint32_t counter_hash(uint64_t seed, uint64_t stream, uint64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull ^ (stream + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full ^ i;
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (uint32_t)(z >> 32);
}

}  // namespace er
